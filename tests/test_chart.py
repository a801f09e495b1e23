"""The Helm chart, rendered by Helm's own Go SDK (helm-python-sdk) with no cluster.

Each values set is rendered once per module; the tests then read the manifests. What is
checked: `helm lint`, the values schema (through the SDK, which applies it on render as
`helm install` does), every manifest against the Kubernetes OpenAPI schemas
(kubernetes-validate, strict), read-only RBAC, the restricted security contexts, and that
the settings file the ConfigMap carries loads with eventtrace's own settings model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

helm = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

from eventtrace.settings import Settings, SettingsError, load_settings  # noqa: E402

CHART_DIR = Path(__file__).resolve().parents[1] / "charts" / "eventtrace"
RELEASE = "et"
NAMESPACE = "observability"
FULLNAME = "et-eventtrace"

# Kubernetes versions whose schemas every manifest must pass: the oldest the chart
# declares (Chart.yaml kubeVersion), a common one, and the newest the package ships.
KUBE_VERSIONS = sorted({"1.25.0", "1.30.0", kubernetes_validate.latest_version()})

READ_VERBS = {"get", "list", "watch"}

# What eventtrace reads (the CLI contract): (apiGroup, resource) pairs.
REQUIRED_READS = {
    ("", "events"),
    ("events.k8s.io", "events"),
    ("", "pods"),
    ("", "nodes"),
    ("apps", "replicasets"),
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "endpoint": {"otlp": {"endpoint": "http://jaeger-collector.observability:4317"}},
    "service-monitor": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}, "interval": "15s"},
    },
    "pdb": {"podDisruptionBudget": {"enabled": True, "minAvailable": 1}},
    "pdb-percent": {"podDisruptionBudget": {"enabled": True, "maxUnavailable": "50%"}},
    "extra-rules": {
        "clusterRole": {
            "extraRules": [
                {
                    "apiGroups": ["argoproj.io"],
                    "resources": ["rollouts"],
                    "verbs": ["get", "list", "watch"],
                },
            ],
        },
    },
    "headers-secret": {
        "otlp": {
            "endpoint": "https://otlp.example.com:443",
            "protocol": "http/protobuf",
            "headers": {"existingSecret": "otlp-auth", "key": "otel-headers"},
            "compression": "gzip",
            "timeout": 15,
        },
    },
    "tls-ca-secret": {
        "jaegerUI": {"service": "jaeger-query", "namespace": "tracing"},
        "otlp": {
            "endpoint": "https://collector.observability:4317",
            "tls": {"ca": {"existingSecret": "collector-ca", "key": "ca.pem"}},
        },
    },
    "tls-ca-configmap": {
        "otlp": {
            "endpoint": "collector.observability:4317",
            "tls": {"ca": {"existingConfigMap": "kube-root-ca.crt"}},
        },
    },
    "namespaces-filters": {
        "clusterName": "prod-eu-1",
        "namespaces": ["shop", "payments"],
        "filters": {
            "includeTypes": ["Normal", "Warning"],
            "excludeReasons": ["Pulled", "Created"],
            "includeKinds": ["Pod", "Deployment", "ReplicaSet"],
            "excludeKinds": ["Node"],
            "excludeNamespaces": ["kube-system"],
        },
        "traceIdle": "90s",
        "traceMax": 3600,
        "resolveTimeout": "2500ms",
        "logLevel": "DEBUG",
        "output": "jsonl",
        "extraConfig": {"startup_timeout": "1m", "export_queue_size": 5000},
    },
    "network-policy": {
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
            "egress": {"extra": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]},
        },
    },
    "existing-account": {
        "serviceAccount": {"create": False, "name": "eventtrace-reader"},
        "clusterRole": {"create": False},
        "extraEnvs": [{"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "deployment.environment=prod"}],
        "extraVolumes": [{"name": "client-tls", "secret": {"secretName": "otlp-client"}}],
        "extraVolumeMounts": [
            {"name": "client-tls", "mountPath": "/etc/otlp-client", "readOnly": True}
        ],
        "podAnnotations": {"example.com/team": "platform"},
        "podLabels": {"team": "platform"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/arch",
                                    "operator": "In",
                                    "values": ["amd64", "arm64"],
                                }
                            ]
                        },
                    ],
                },
            },
        },
        "priorityClassName": "system-cluster-critical",
        "imagePullSecrets": [{"name": "registry"}],
        "image": {
            "repository": "registry.example.com/eventtrace",
            "tag": "0.1.1",
            "pullPolicy": "Always",
        },
    },
}


# --- rendering, once per values set ------------------------------------------------------


@pytest.fixture(scope="module")
def chart() -> Any:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


def _render(chart: Any, values: dict[str, Any]) -> dict[str, str]:
    return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def _objects(manifests: dict[str, str]) -> list[dict[str, Any]]:
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


@pytest.fixture(scope="module")
def rendered(chart: Any) -> dict[str, dict[str, str]]:
    return {name: _render(chart, values) for name, values in VALUE_SETS.items()}


@pytest.fixture(scope="module")
def objects(rendered: dict[str, dict[str, str]]) -> dict[str, list[dict[str, Any]]]:
    return {name: _objects(manifests) for name, manifests in rendered.items()}


def _only(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def _kinds(objs: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objs)


def _container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _only(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _env(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    env = _container(objs).get("env", [])
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), f"duplicate env names: {names}"
    return {e["name"]: e for e in env}


sets = pytest.mark.parametrize("name", list(VALUE_SETS))

Objects = dict[str, list[dict[str, Any]]]  # values-set name -> rendered objects


# --- helm lint and the schema --------------------------------------------------------------


@sets
def test_helm_lint_is_clean(name: str) -> None:
    report = helm.lint(
        CHART_DIR, VALUE_SETS[name], strict=True, namespace=NAMESPACE, kube_version="v1.30.0"
    )
    # Severity 1 is informational (Helm suggests an icon); warnings (2) and errors (3) fail.
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [] and report["errors"] == [], report


def test_schema_is_draft_07_and_closed(chart: Any) -> None:
    schema = chart.schema
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    # Every default value is described by the schema (no key slips past it).
    assert set(chart.values) <= set(schema["properties"])


BAD_VALUES = [
    pytest.param({"otlp": {"protocol": "udp"}}, "/otlp/protocol", id="protocol-udp"),
    pytest.param({"replicaCount": "two"}, "/replicaCount", id="replicas-string"),
    pytest.param({"replicaCount": 2}, "/replicaCount", id="replicas-two-without-leader-election"),
    pytest.param({"replicas": 1}, "replicas", id="unknown-top-level-key"),
    pytest.param({"output": "zipkin"}, "/output", id="output-enum"),
    pytest.param({"logLevel": "TRACE"}, "/logLevel", id="log-level-enum"),
    pytest.param({"traceIdle": "2 minutes"}, "/traceIdle", id="duration-text"),
    pytest.param({"traceMax": -5}, "/traceMax", id="duration-negative"),
    pytest.param({"namespaces": "default"}, "/namespaces", id="namespaces-not-a-list"),
    pytest.param({"namespaces": ["Not_A_Namespace"]}, "/namespaces", id="namespace-name"),
    pytest.param(
        {"otlp": {"headers": {"value": "authorization=secret"}}},
        "/otlp/headers",
        id="headers-in-clear",
    ),
    pytest.param({"otlp": {"insecure": "yes"}}, "/otlp/insecure", id="insecure-not-bool"),
    pytest.param({"service": {"port": 70000}}, "/service/port", id="port-range"),
    pytest.param(
        {"serviceMonitor": {"enabled": "true"}}, "/serviceMonitor/enabled", id="enabled-string"
    ),
    pytest.param(
        {"clusterRole": {"extraRules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}},
        "/clusterRole/extraRules",
        id="extra-rule-wildcards",
    ),
    pytest.param(
        {
            "clusterRole": {
                "extraRules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
            }
        },
        "/clusterRole/extraRules",
        id="extra-rule-secrets",
    ),
    pytest.param(
        {
            "clusterRole": {
                "extraRules": [
                    {"apiGroups": ["argoproj.io"], "resources": ["rollouts"], "verbs": ["patch"]}
                ]
            }
        },
        "/clusterRole/extraRules",
        id="extra-rule-write-verb",
    ),
]


@pytest.mark.parametrize(("values", "where"), BAD_VALUES)
def test_schema_rejects_bad_values(chart: Any, values: dict[str, Any], where: str) -> None:
    # The SDK applies values.schema.json on render exactly as `helm install` does.
    with pytest.raises(helm.HelmValuesError) as caught:
        _render(chart, values)
    assert where in str(caught.value)


@sets
def test_schema_accepts_the_values_sets(chart: Any, name: str) -> None:
    chart.validate_schema(VALUE_SETS[name])


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("90s", True),
        ("2m", True),
        ("1h30m", True),
        ("500ms", True),
        ("120", True),
        ("2.5", True),
        ("2 minutes", False),
        ("1d", False),
        ("m5", False),
        ("", False),
    ],
)
def test_schema_durations_agree_with_eventtrace(chart: Any, text: str, ok: bool) -> None:
    from eventtrace.settings import parse_duration

    try:
        parse_duration(text)
        parsed = True
    except ValueError:
        parsed = False
    try:
        chart.validate_schema({"traceIdle": text})
        valid = True
    except helm.HelmValuesError:
        valid = False
    assert parsed == valid == ok


def test_tls_ca_from_secret_and_configmap_at_once_fails(chart: Any) -> None:
    values = {"otlp": {"tls": {"ca": {"existingSecret": "a", "existingConfigMap": "b"}}}}
    with pytest.raises(helm.HelmRenderError, match="not both"):
        _render(chart, values)


# --- every manifest is valid Kubernetes ----------------------------------------------------


@sets
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_manifests_validate_against_kubernetes(
    objects: Objects, name: str, kube_version: str
) -> None:
    for obj in objects[name]:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: no schema in kubernetes-validate; checked by hand below
        kubernetes_validate.validate(obj, kube_version, strict=True)


def test_the_validator_is_strict() -> None:
    # A misspelt field must fail, or the test above proves nothing.
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 8080, "targtPort": "metrics"}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBE_VERSIONS[-1], strict=True)


def test_default_objects(objects: Objects) -> None:
    assert _kinds(objects["default"]) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    for obj in objects["default"]:
        if obj["kind"] not in {"ClusterRole", "ClusterRoleBinding"}:
            assert obj["metadata"]["namespace"] == NAMESPACE
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


# --- RBAC: read-only, no wildcards, no secrets --------------------------------------------


@sets
def test_cluster_role_is_read_only(objects: Objects, name: str) -> None:
    objs = objects[name]
    assert not [o for o in objs if o["kind"] in {"Role", "RoleBinding"}]
    roles = [o for o in objs if o["kind"] == "ClusterRole"]
    if VALUE_SETS[name].get("clusterRole", {}).get("create") is False:
        assert roles == []
        return
    (role,) = roles
    granted = set()
    for rule in role["rules"]:
        assert "nonResourceURLs" not in rule
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
            assert not any("*" in item for item in rule[field]), rule
        assert set(rule["verbs"]) <= READ_VERBS, rule
        assert not any(r == "secrets" or r.startswith("secrets/") for r in rule["resources"]), rule
        granted |= {(g, r) for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted >= REQUIRED_READS
    extra = {
        (g, r)
        for rule in VALUE_SETS[name].get("clusterRole", {}).get("extraRules", [])
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert granted == REQUIRED_READS | extra

    binding = _only(objs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    account = _only(objs, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]


def test_extra_rules_are_appended(objects: Objects) -> None:
    rules = _only(objects["extra-rules"], "ClusterRole")["rules"]
    assert rules[-1] == {
        "apiGroups": ["argoproj.io"],
        "resources": ["rollouts"],
        "verbs": ["get", "list", "watch"],
    }


# --- the pod: security, token, probes, config ----------------------------------------------


@sets
def test_security_contexts_are_restricted(objects: Objects, name: str) -> None:
    pod = _only(objects[name], "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = _container(objects[name])
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security.get("privileged", False) is False
    assert security["runAsNonRoot"] is True
    # The one writable place.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert not any(key in pod for key in ("hostNetwork", "hostPID", "hostIPC"))


@sets
def test_pod_mounts_the_service_account_token_on_purpose(objects: Objects, name: str) -> None:
    pod = _only(objects[name], "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    expected = VALUE_SETS[name].get("serviceAccount", {}).get("name") or FULLNAME
    assert pod["serviceAccountName"] == expected
    accounts = [o for o in objects[name] if o["kind"] == "ServiceAccount"]
    if VALUE_SETS[name].get("serviceAccount", {}).get("create") is False:
        assert accounts == []
    else:
        # Other pods running as this account do not get the token by default.
        assert accounts[0]["automountServiceAccountToken"] is False


def test_deployment_defaults(objects: Objects) -> None:
    objs = objects["default"]
    deployment = _only(objs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = _container(objs)
    assert container["image"] == "eventtrace:0.1.0"  # tag defaults to the appVersion
    assert container["args"] == ["run", "--config", "/etc/eventtrace/config.yaml"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "768Mi"},  # no CPU limit
    }
    env = _env(objs)
    assert env["EVENTTRACE_METRICS_ADDR"]["value"] == ":8080"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"]["value"] == "grpc"
    # Unset unless asked for: "false" would force TLS on an http:// endpoint.
    assert "OTEL_EXPORTER_OTLP_INSECURE" not in env
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
    # The settings file is where --config says.
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert mount["mountPath"] == container["args"][2]
    assert mount["readOnly"] is True
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    volume = next(v for v in volumes if v["name"] == "config")
    assert volume["configMap"]["name"] == _only(objs, "ConfigMap")["metadata"]["name"]
    assert mount["subPath"] in _only(objs, "ConfigMap")["data"]


def test_service_selects_the_pod(objects: Objects) -> None:
    objs = objects["default"]
    service = _only(objs, "Service")
    pod_labels = _only(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_endpoint_and_warning(rendered: dict[str, dict[str, str]], objects: Objects) -> None:
    env = _env(objects["endpoint"])
    endpoint = VALUE_SETS["endpoint"]["otlp"]["endpoint"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == endpoint
    notes = rendered["endpoint"]["eventtrace/templates/NOTES.txt"]
    assert "WARNING" not in notes and "jaeger-collector.observability:4317" in notes
    default_notes = rendered["default"]["eventtrace/templates/NOTES.txt"]
    assert "WARNING: otlp.endpoint is not set" in default_notes
    assert "port-forward service/<jaeger-query-service> 16686:16686" in default_notes
    jaeger = "kubectl -n tracing port-forward service/jaeger-query 16686:16686"
    assert jaeger in rendered["tls-ca-secret"]["eventtrace/templates/NOTES.txt"]


def test_headers_come_from_the_secret_only(
    rendered: dict[str, dict[str, str]], objects: Objects
) -> None:
    env = _env(objects["headers-secret"])
    assert env["OTEL_EXPORTER_OTLP_HEADERS"] == {
        "name": "OTEL_EXPORTER_OTLP_HEADERS",
        "valueFrom": {"secretKeyRef": {"name": "otlp-auth", "key": "otel-headers"}},
    }
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"]["value"] == "http/protobuf"
    assert env["OTEL_EXPORTER_OTLP_COMPRESSION"]["value"] == "gzip"
    assert env["OTEL_EXPORTER_OTLP_TIMEOUT"]["value"] == "15"
    assert "OTEL_EXPORTER_OTLP_HEADERS" not in _env(objects["default"])
    # Nothing from a Secret is ever rendered into a ConfigMap.
    assert "otel-headers" not in rendered["headers-secret"]["eventtrace/templates/configmap.yaml"]


@pytest.mark.parametrize("name", ["tls-ca-secret", "tls-ca-configmap"])
def test_tls_ca_is_mounted_where_the_exporter_looks(objects: Objects, name: str) -> None:
    objs = objects[name]
    container = _container(objs)
    path = Path(_env(objs)["OTEL_EXPORTER_OTLP_CERTIFICATE"]["value"])
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent))
    assert mount["readOnly"] is True
    pod = _only(objs, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    ca = VALUE_SETS[name]["otlp"]["tls"]["ca"]
    if name == "tls-ca-secret":
        assert volume["secret"]["secretName"] == ca["existingSecret"]
        source = volume["secret"]
    else:
        assert volume["configMap"]["name"] == ca["existingConfigMap"]
        source = volume["configMap"]
    assert source["items"] == [{"key": ca.get("key", "ca.crt"), "path": path.name}]
    assert "OTEL_EXPORTER_OTLP_CERTIFICATE" not in _env(objects["default"])


def test_existing_account_and_pod_extras(objects: Objects) -> None:
    objs = objects["existing-account"]
    assert _kinds(objs) == ["ConfigMap", "Deployment", "Service"]
    values = VALUE_SETS["existing-account"]
    template = _only(objs, "Deployment")["spec"]["template"]
    pod = template["spec"]
    container = _container(objs)
    assert container["image"] == "registry.example.com/eventtrace:0.1.1"
    assert container["imagePullPolicy"] == "Always"
    assert _env(objs)["OTEL_RESOURCE_ATTRIBUTES"]["value"] == "deployment.environment=prod"
    mount = {"name": "client-tls", "mountPath": "/etc/otlp-client", "readOnly": True}
    assert mount in container["volumeMounts"]
    assert values["extraVolumes"][0] in pod["volumes"]
    assert template["metadata"]["annotations"]["example.com/team"] == "platform"
    assert "checksum/config" in template["metadata"]["annotations"]
    assert template["metadata"]["labels"]["team"] == "platform"
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName", "imagePullSecrets"):
        assert pod[key] == values[key]


def test_config_change_rolls_the_pod(objects: Objects) -> None:
    def checksum(name: str) -> str:
        template = _only(objects[name], "Deployment")["spec"]["template"]
        return str(template["metadata"]["annotations"]["checksum/config"])

    assert checksum("default") != checksum("namespaces-filters")
    assert checksum("default") == checksum("pdb")


# --- the settings file loads with eventtrace's own settings model -------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for key in list(os.environ):
        if key.startswith("EVENTTRACE_"):
            monkeypatch.delenv(key)
    return monkeypatch


def _load_rendered_settings(
    objs: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Load the ConfigMap's file as the pod would: with the container's EVENTTRACE_* env."""
    config = tmp_path / "config.yaml"
    config.write_text(_only(objs, "ConfigMap")["data"]["config.yaml"], encoding="utf-8")
    for name, var in _env(objs).items():
        if name.startswith("EVENTTRACE_"):
            monkeypatch.setenv(name, var["value"])
    return load_settings(config=config)


@sets
def test_configmap_settings_load(
    objects: Objects, name: str, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    settings = _load_rendered_settings(objects[name], tmp_path, clean_env)
    # Reachable by the kubelet's probes and by Prometheus, not only on loopback.
    assert settings.metrics_host_port == ("0.0.0.0", 8080)


def test_default_settings(objects: Objects, tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    settings = _load_rendered_settings(objects["default"], tmp_path, clean_env)
    assert settings.cluster_name == "kubernetes"
    assert settings.namespaces == []
    assert (settings.trace_idle, settings.trace_max, settings.resolve_timeout) == (120, 1800, 5)
    assert settings.output == "otlp"
    assert settings.log_level == "INFO"


def test_configured_settings(
    objects: Objects, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    settings = _load_rendered_settings(objects["namespaces-filters"], tmp_path, clean_env)
    filters = VALUE_SETS["namespaces-filters"]["filters"]
    assert settings.cluster_name == "prod-eu-1"
    assert settings.namespaces == ["shop", "payments"]
    assert settings.include_types == filters["includeTypes"]
    assert settings.exclude_types == []
    assert settings.exclude_reasons == filters["excludeReasons"]
    assert settings.include_kinds == filters["includeKinds"]
    assert settings.exclude_kinds == filters["excludeKinds"]
    assert settings.exclude_namespaces == filters["excludeNamespaces"]
    assert settings.trace_idle == 90
    assert settings.trace_max == 3600
    assert settings.resolve_timeout == 2.5
    assert settings.log_level == "DEBUG"
    assert settings.output == "jsonl"
    assert settings.startup_timeout == 60  # from extraConfig
    assert settings.export_queue_size == 5000


def test_a_bad_extra_setting_is_caught_by_eventtrace(
    chart: Any, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    # extraConfig is free-form in the schema; eventtrace itself names the bad key at start.
    objs = _objects(_render(chart, {"extraConfig": {"no_such_setting": 1}}))
    with pytest.raises(SettingsError, match="no_such_setting"):
        _load_rendered_settings(objs, tmp_path, clean_env)


# --- the optional objects ------------------------------------------------------------------


def test_optional_objects_are_off_by_default(objects: Objects) -> None:
    kinds = set(_kinds(objects["default"]))
    assert not kinds & {"ServiceMonitor", "PodDisruptionBudget", "NetworkPolicy"}


def test_service_monitor(objects: Objects) -> None:
    objs = objects["service-monitor"]
    monitor = _only(objs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    service = _only(objs, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s"


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [("pdb", "minAvailable", 1), ("pdb-percent", "maxUnavailable", "50%")],
)
def test_pod_disruption_budget(objects: Objects, name: str, field: str, value: Any) -> None:
    objs = objects[name]
    budget = _only(objs, "PodDisruptionBudget")
    assert budget["spec"][field] == value
    assert len([k for k in ("minAvailable", "maxUnavailable") if k in budget["spec"]]) == 1
    pod_labels = _only(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_network_policy(objects: Objects) -> None:
    objs = objects["network-policy"]
    policy = _only(objs, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = spec["ingress"]
    assert ingress["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert ingress["from"] == VALUE_SETS["network-policy"]["networkPolicy"]["metricsFrom"]
    egress_ports = {p["port"] for rule in spec["egress"] for p in rule.get("ports", [])}
    assert {53, 443, 6443, 4317, 4318} <= egress_ports
    assert spec["egress"][-1] == {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}


def test_values_yaml_matches_what_the_sdk_loaded(chart: Any) -> None:
    # The chart's values file is plain YAML the SDK reads the same way.
    values = (CHART_DIR / "values.yaml").read_text(encoding="utf-8")
    schema = (CHART_DIR / "values.schema.json").read_text(encoding="utf-8")
    assert yaml.safe_load(values) == chart.values
    assert json.loads(schema) == chart.schema
