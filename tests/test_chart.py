"""The Helm chart, rendered by Helm's own Go SDK (helm-python-sdk) with no cluster.

Each values set is rendered once per module; the tests then read the manifests. What is
checked: `helm lint`, the values schema (through the SDK, which applies it on render as
`helm install` does), every manifest against the Kubernetes OpenAPI schemas
(kubernetes-validate, strict), RBAC (read-only cluster-wide; namespaced writes only to
the Lease and the state ConfigMap, by name), the restricted security contexts, leader
election and the standby replica, the in-chart Jaeger, the Grafana dashboard (its PromQL
against eventtrace's real metric names), and that the settings file the ConfigMap
carries loads with eventtrace's own settings model.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

helm = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

from eventtrace.metrics import Metrics  # noqa: E402
from eventtrace.settings import Settings, SettingsError, load_settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHART_DIR = ROOT / "charts" / "eventtrace"
DASHBOARD = CHART_DIR / "dashboards" / "eventtrace.json"
RELEASE = "et"
NAMESPACE = "observability"
FULLNAME = "et-eventtrace"
JAEGER = "et-eventtrace-jaeger"
# What the downward API gives EVENTTRACE_IDENTITY in a pod of the Deployment.
POD_NAME = "et-eventtrace-6d5f8c7b9-x2x9q"

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
    "pdb-percent": {"podDisruptionBudget": {"minAvailable": "", "maxUnavailable": "50%"}},
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
    # --- leader election, state, replicas ---
    "leader-election-off": {"leaderElection": {"enabled": False}, "replicaCount": 1},
    "stateless-single": {
        "leaderElection": {"enabled": False},
        "replicaCount": 1,
        "state": {"type": "none"},
    },
    "custom-lease": {
        "replicaCount": 3,
        "leaderElection": {"leaseName": "eventtrace-leader"},
        "state": {"configMapName": "eventtrace-memory"},
        "podAntiAffinity": "none",
    },
    "state-file": {"state": {"type": "file", "path": "/var/lib/eventtrace/state.json"}},
    "recreate": {
        "leaderElection": {"enabled": False},
        "replicaCount": 1,
        "strategy": {"type": "Recreate"},
    },
    "no-role": {"role": {"create": False}},
    "own-anti-affinity": {
        "affinity": {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "topologyKey": "topology.kubernetes.io/zone",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "eventtrace"}},
                    }
                ],
            },
        },
    },
    # --- Jaeger beside eventtrace, the Grafana dashboard ---
    "jaeger": {"jaeger": {"enabled": True}},
    "jaeger-http": {
        "jaeger": {"enabled": True, "image": {"pullPolicy": "Always"}},
        "otlp": {"protocol": "http/protobuf"},
        "networkPolicy": {"enabled": True},
    },
    "dashboard": {"grafana": {"dashboard": {"enabled": True}}},
    "dashboard-elsewhere": {
        "grafana": {
            "dashboard": {
                "enabled": True,
                "namespace": "monitoring",
                "labels": {"grafana_dashboard": "eventtrace"},
                "annotations": {"grafana_folder": "Kubernetes"},
            },
        },
        "serviceMonitor": {"enabled": True},
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


@pytest.fixture(scope="module")
def merged(chart: Any) -> dict[str, dict[str, Any]]:
    """Each set's values as a release sees them: the chart's defaults, overridden."""
    return {name: chart.merge_values(values) for name, values in VALUE_SETS.items()}


def _find(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def _only(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = _find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def _kinds(objs: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objs)


def _deployment(objs: list[dict[str, Any]]) -> dict[str, Any]:
    """eventtrace's Deployment (not the in-chart Jaeger's)."""
    return _only(objs, "Deployment", FULLNAME)


def _pod(objs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = _deployment(objs)["spec"]["template"]["spec"]
    return spec


def _container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _pod(objs)["containers"]
    return container


def _env(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    env = _container(objs).get("env", [])
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), f"duplicate env names: {names}"
    return {e["name"]: e for e in env}


def _config(objs: list[dict[str, Any]]) -> dict[str, Any]:
    """The settings file the pod reads (--config)."""
    data: dict[str, Any] = yaml.safe_load(_only(objs, "ConfigMap", FULLNAME)["data"]["config.yaml"])
    return data


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


sets = pytest.mark.parametrize("name", list(VALUE_SETS))

Objects = dict[str, list[dict[str, Any]]]  # values-set name -> rendered objects
Rendered = dict[str, dict[str, str]]  # values-set name -> template path -> text


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
    pytest.param({"replicaCount": -1}, "/replicaCount", id="replicas-negative"),
    pytest.param(
        {"replicaCount": 2, "leaderElection": {"enabled": False}},
        "/replicaCount",
        id="replicas-two-without-leader-election",
    ),
    pytest.param(
        {"leaderElection": {"enabled": "yes"}}, "/leaderElection/enabled", id="leader-not-bool"
    ),
    pytest.param(
        {"leaderElection": {"leaseName": "Not_A_Name"}},
        "/leaderElection/leaseName",
        id="lease-name",
    ),
    pytest.param({"state": {"type": "redis"}}, "/state/type", id="state-type"),
    pytest.param({"state": {"type": "file"}}, "/state", id="state-file-without-path"),
    pytest.param(
        {"state": {"type": "file", "path": "state.json"}}, "/state/path", id="state-path-relative"
    ),
    pytest.param(
        {"strategy": {"rollingUpdate": {"maxUnavailable": "one"}}},
        "/strategy/rollingUpdate/maxUnavailable",
        id="strategy-max-unavailable",
    ),
    pytest.param({"podAntiAffinity": "required"}, "/podAntiAffinity", id="anti-affinity-enum"),
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
    pytest.param({"jaeger": {"enabled": "true"}}, "/jaeger/enabled", id="jaeger-enabled-string"),
    pytest.param({"jaeger": {"image": {"tag": ""}}}, "/jaeger/image/tag", id="jaeger-tag-empty"),
    pytest.param({"jaeger": {"storage": "badger"}}, "/jaeger", id="jaeger-unknown-key"),
    pytest.param(
        {"grafana": {"dashboard": {"labels": {"grafana_dashboard": 1}}}},
        "/grafana/dashboard/labels",
        id="dashboard-label-not-string",
    ),
    pytest.param(
        {"podDisruptionBudget": {"minAvailable": "half"}},
        "/podDisruptionBudget/minAvailable",
        id="pdb-min-available",
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


@pytest.mark.parametrize("replicas", [0, 1])
def test_leader_election_may_be_off_with_at_most_one_replica(chart: Any, replicas: int) -> None:
    values = {"leaderElection": {"enabled": False}, "replicaCount": replicas}
    chart.validate_schema(values)
    assert _deployment(_objects(_render(chart, values)))["spec"]["replicas"] == replicas


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


# Combinations the templates refuse, each with a message that says what to do.
BAD_COMBINATIONS = [
    pytest.param(
        {"otlp": {"tls": {"ca": {"existingSecret": "a", "existingConfigMap": "b"}}}},
        "not both",
        id="tls-ca-twice",
    ),
    pytest.param(
        {"jaeger": {"enabled": True}, "otlp": {"endpoint": "http://collector:4317"}},
        "jaeger.enabled sends spans to the in-chart Jaeger, but otlp.endpoint is also set",
        id="jaeger-and-endpoint",
    ),
    pytest.param(
        {"jaeger": {"enabled": True}, "output": "console"},
        "jaeger.enabled needs output: otlp",
        id="jaeger-without-otlp",
    ),
    pytest.param(
        {"extraConfig": {"leader_election": "none"}},
        "extraConfig.leader_election: set by the chart",
        id="extra-config-leader-election",
    ),
    pytest.param(
        {"extraConfig": {"state": "file:/tmp/x"}},
        "extraConfig.state: set by the chart",
        id="extra-config-state",
    ),
    pytest.param(
        {"extraConfig": {"identity": "me"}},
        "extraConfig.identity: set by the chart",
        id="extra-config-identity",
    ),
]


@pytest.mark.parametrize(("values", "message"), BAD_COMBINATIONS)
def test_templates_refuse_bad_combinations(
    chart: Any, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        _render(chart, values)


def test_two_replicas_without_leader_election_fail_even_without_the_schema(
    tmp_path: Path,
) -> None:
    # `helm install --skip-schema-validation` still gets a clear refusal, from the template:
    # render a copy of the chart without its schema.
    copy = tmp_path / "eventtrace"
    shutil.copytree(CHART_DIR, copy)
    (copy / "values.schema.json").unlink()
    values = {"leaderElection": {"enabled": False}, "replicaCount": 2}
    with helm.Chart.load(copy) as unchecked, pytest.raises(helm.HelmRenderError) as caught:
        _render(unchecked, values)
    assert "replicaCount is 2 but leaderElection.enabled is false" in str(caught.value)
    assert "Set replicaCount to 0 or 1, or enable leader election" in str(caught.value)


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


@sets
def test_object_names_are_unique(objects: Objects, name: str) -> None:
    keys = [
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects[name]
    ]
    assert len(keys) == len(set(keys)), keys


def test_default_objects(objects: Objects) -> None:
    assert _kinds(objects["default"]) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    for obj in objects["default"]:
        if obj["kind"] not in {"ClusterRole", "ClusterRoleBinding"}:
            assert obj["metadata"]["namespace"] == NAMESPACE
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


# --- RBAC: read-only cluster-wide; namespaced writes to the Lease and state only ----------


def _is_secret(resource: str) -> bool:
    return resource == "secrets" or resource.startswith("secrets/")


@sets
def test_no_rbac_rule_has_wildcards_or_secrets(objects: Objects, name: str) -> None:
    for role in _find(objects[name], "ClusterRole") + _find(objects[name], "Role"):
        for rule in role["rules"]:
            assert "nonResourceURLs" not in rule
            for field in ("apiGroups", "resources", "verbs"):
                assert not any("*" in item for item in rule[field]), rule
            assert not any(_is_secret(r) for r in rule["resources"]), rule


@sets
def test_cluster_role_is_read_only(objects: Objects, name: str) -> None:
    objs = objects[name]
    roles = _find(objs, "ClusterRole")
    if VALUE_SETS[name].get("clusterRole", {}).get("create") is False:
        assert roles == [] and _find(objs, "ClusterRoleBinding") == []
        return
    (role,) = roles
    granted = set()
    for rule in role["rules"]:
        assert set(rule["verbs"]) <= READ_VERBS, rule
        granted |= {(g, r) for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted >= REQUIRED_READS
    extra = {
        (g, r)
        for rule in VALUE_SETS[name].get("clusterRole", {}).get("extraRules", [])
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert granted == REQUIRED_READS | extra
    # Nothing writes cluster-wide: no other ClusterRole, and the binding is to this one.
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


def _grants(role: dict[str, Any]) -> set[tuple[str, str, str, str | None]]:
    """(apiGroup, resource, verb, resourceName or None for any) for every rule."""
    grants = set()
    for rule in role["rules"]:
        names = rule.get("resourceNames") or [None]
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                for v in rule["verbs"]:
                    for n in names:
                        grants.add((g, r, v, n))
    return grants


@sets
def test_role_touches_only_the_lease_and_the_state_configmap(
    objects: Objects, merged: dict[str, dict[str, Any]], name: str
) -> None:
    objs = objects[name]
    values = merged[name]
    lease = values["leaderElection"]["leaseName"] or FULLNAME
    state = values["state"]["configMapName"] or f"{FULLNAME}-state"
    expected: set[tuple[str, str, str, str | None]] = set()
    if values["leaderElection"]["enabled"]:
        expected |= {
            ("coordination.k8s.io", "leases", "get", lease),
            ("coordination.k8s.io", "leases", "update", lease),
            # Kubernetes cannot limit create to a name: the object does not exist yet.
            ("coordination.k8s.io", "leases", "create", None),
        }
    if values["state"]["type"] == "configmap":
        expected |= {
            ("", "configmaps", "get", state),
            ("", "configmaps", "update", state),
            ("", "configmaps", "create", None),
        }
    roles, bindings = _find(objs, "Role"), _find(objs, "RoleBinding")
    if not expected or not values["role"]["create"]:
        assert roles == [] and bindings == []
        return
    (role,), (binding,) = roles, bindings
    assert role["metadata"]["namespace"] == NAMESPACE
    assert _grants(role) == expected
    # Every verb that can be limited to a name is: only create stands alone.
    for rule in role["rules"]:
        assert ("resourceNames" in rule) == (rule["verbs"] != ["create"]), rule
        if "resourceNames" in rule:
            assert len(rule["resourceNames"]) == 1, rule
    # The names granted are the ones eventtrace is told to use.
    config = _config(objs)
    if values["leaderElection"]["enabled"]:
        assert config["leader_election"] == f"lease:{NAMESPACE}/{lease}"
    if values["state"]["type"] == "configmap":
        assert config["state"] == f"configmap:{NAMESPACE}/{state}"
        # ... and not the chart's own settings ConfigMap, which eventtrace must not rewrite.
        assert state != _only(objs, "ConfigMap", FULLNAME)["metadata"]["name"]
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": _pod(objs)["serviceAccountName"], "namespace": NAMESPACE}
    ]


def test_role_objects_by_values(objects: Objects) -> None:
    assert _find(objects["stateless-single"], "Role") == []
    # Leader election off, state still in a ConfigMap: a Role for that alone.
    (role,) = _find(objects["leader-election-off"], "Role")
    assert {g[1] for g in _grants(role)} == {"configmaps"}
    (role,) = _find(objects["state-file"], "Role")
    assert {g[1] for g in _grants(role)} == {"leases"}
    assert _find(objects["no-role"], "Role") == []
    # The user's own account still gets the chart's Role (its ClusterRole is theirs).
    (binding,) = _find(objects["existing-account"], "RoleBinding")
    assert binding["subjects"][0]["name"] == "eventtrace-reader"


def test_extra_rules_are_appended(objects: Objects) -> None:
    rules = _only(objects["extra-rules"], "ClusterRole")["rules"]
    assert rules[-1] == {
        "apiGroups": ["argoproj.io"],
        "resources": ["rollouts"],
        "verbs": ["get", "list", "watch"],
    }


# --- the pod: security, token, probes, config ----------------------------------------------

RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _assert_restricted(pod: dict[str, Any]) -> None:
    assert pod["securityContext"] == RESTRICTED_POD
    assert not any(key in pod for key in ("hostNetwork", "hostPID", "hostIPC"))
    for container in pod["containers"]:
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


@sets
def test_security_contexts_are_restricted(objects: Objects, name: str) -> None:
    deployments = _find(objects[name], "Deployment")
    assert deployments
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        _assert_restricted(pod)
        # No FOO_SERVICE_HOST variables: a Service named eventtrace would put
        # EVENTTRACE_SERVICE_HOST, EVENTTRACE_PORT, ... into eventtrace's settings prefix.
        assert pod["enableServiceLinks"] is False


@sets
def test_pod_mounts_the_service_account_token_on_purpose(objects: Objects, name: str) -> None:
    pod = _pod(objects[name])
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
    deployment = _deployment(objs)
    # A leader and a standby; a rolling update starts the new pod before stopping an old
    # one, so the Lease always has a ready taker.
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
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
    volume = next(v for v in _pod(objs)["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == FULLNAME
    assert mount["subPath"] in _only(objs, "ConfigMap", FULLNAME)["data"]


def test_recreate_strategy_drops_the_rolling_update(objects: Objects) -> None:
    # The defaults' rollingUpdate must not follow type: Recreate (Kubernetes refuses both).
    assert _deployment(objects["recreate"])["spec"]["strategy"] == {"type": "Recreate"}


@sets
def test_identity_is_the_pod_name(objects: Objects, name: str) -> None:
    env = _env(objects[name])
    assert env["EVENTTRACE_IDENTITY"] == {
        "name": "EVENTTRACE_IDENTITY",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
    }
    assert "identity" not in _config(objects[name])


@sets
def test_leader_election_and_state_settings(
    objects: Objects, merged: dict[str, dict[str, Any]], name: str
) -> None:
    values = merged[name]
    config = _config(objects[name])
    if values["leaderElection"]["enabled"]:
        lease = values["leaderElection"]["leaseName"] or FULLNAME
        assert config["leader_election"] == f"lease:{NAMESPACE}/{lease}"
    else:
        assert config["leader_election"] == "none"
        assert values["replicaCount"] <= 1
    state = values["state"]
    expected = {
        "configmap": f"configmap:{NAMESPACE}/{state['configMapName'] or FULLNAME + '-state'}",
        "file": f"file:{state['path']}",
        "none": "none",
    }[state["type"]]
    assert config["state"] == expected


@sets
def test_replicas_spread_over_nodes(objects: Objects, name: str) -> None:
    pod = _pod(objects[name])
    labels = _deployment(objects[name])["spec"]["template"]["metadata"]["labels"]
    own = VALUE_SETS[name].get("affinity", {})
    affinity = pod.get("affinity", {})
    for key, value in own.items():
        if key != "podAntiAffinity":
            assert affinity[key] == value  # the user's other affinity kept as written
    if "podAntiAffinity" in own:
        assert affinity["podAntiAffinity"] == own["podAntiAffinity"]  # theirs replaces ours
    elif VALUE_SETS[name].get("podAntiAffinity") == "none":
        assert "podAntiAffinity" not in affinity
    else:
        (preferred,) = affinity["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ]
        term = preferred["podAffinityTerm"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert _selects(term["labelSelector"]["matchLabels"], labels)
        # Preferred, never required: a surge pod on a small cluster must still schedule.
        assert "requiredDuringSchedulingIgnoredDuringExecution" not in affinity["podAntiAffinity"]


def test_service_selects_the_pod(objects: Objects) -> None:
    objs = objects["default"]
    service = _only(objs, "Service", FULLNAME)
    pod_labels = _deployment(objs)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert _selects(service["spec"]["selector"], pod_labels)


def test_endpoint_and_warning(rendered: Rendered, objects: Objects) -> None:
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


def test_notes_name_the_leader(rendered: Rendered) -> None:
    notes = rendered["default"]["eventtrace/templates/NOTES.txt"]
    assert f"kubectl -n {NAMESPACE} get lease {FULLNAME} -o jsonpath=" in notes
    single = rendered["leader-election-off"]["eventtrace/templates/NOTES.txt"]
    assert "get lease" not in single
    assert f"port-forward service/{FULLNAME} 8080:8080" in single


def test_headers_come_from_the_secret_only(rendered: Rendered, objects: Objects) -> None:
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
    volume = next(v for v in _pod(objs)["volumes"] if v["name"] == mount["name"])
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
    assert _kinds(objs) == [
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
    ]
    values = VALUE_SETS["existing-account"]
    template = _deployment(objs)["spec"]["template"]
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
    for key in ("nodeSelector", "tolerations", "priorityClassName", "imagePullSecrets"):
        assert pod[key] == values[key]
    # The user's node affinity, plus the chart's spreading of the replicas.
    assert pod["affinity"]["nodeAffinity"] == values["affinity"]["nodeAffinity"]
    assert set(pod["affinity"]) == {"nodeAffinity", "podAntiAffinity"}


def test_config_change_rolls_the_pod(objects: Objects) -> None:
    def checksum(name: str) -> str:
        template = _deployment(objects[name])["spec"]["template"]
        return str(template["metadata"]["annotations"]["checksum/config"])

    assert checksum("default") != checksum("namespaces-filters")
    assert checksum("default") != checksum("custom-lease")
    assert checksum("default") == checksum("pdb")


# --- the settings file loads with eventtrace's own settings model -------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for key in list(os.environ):
        if key.startswith("EVENTTRACE_"):
            monkeypatch.delenv(key)
    return monkeypatch


def _pod_env_value(var: dict[str, Any]) -> str:
    """An env variable's value in the pod; the downward API's for fieldRef."""
    if "value" in var:
        return str(var["value"])
    field = var["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.name", var
    return POD_NAME


def _load_rendered_settings(
    objs: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Load the ConfigMap's file as the pod would: with the container's EVENTTRACE_* env."""
    path = tmp_path / "config.yaml"
    path.write_text(_only(objs, "ConfigMap", FULLNAME)["data"]["config.yaml"], encoding="utf-8")
    for name, var in _env(objs).items():
        if name.startswith("EVENTTRACE_"):
            monkeypatch.setenv(name, _pod_env_value(var))
    return load_settings(config=path)


@sets
def test_configmap_settings_load(
    objects: Objects,
    merged: dict[str, dict[str, Any]],
    name: str,
    tmp_path: Path,
    clean_env: pytest.MonkeyPatch,
) -> None:
    settings = _load_rendered_settings(objects[name], tmp_path, clean_env)
    # Reachable by the kubelet's probes and by Prometheus, not only on loopback.
    assert settings.metrics_host_port == ("0.0.0.0", 8080)
    # The leader-election contract as eventtrace reads it: the Lease the Role names, the
    # pod's own name as holder identity, the state where the Role lets it write.
    values = merged[name]
    lease = values["leaderElection"]["leaseName"] or FULLNAME
    expected_lease = (NAMESPACE, lease) if values["leaderElection"]["enabled"] else None
    assert settings.lease == expected_lease
    assert settings.identity == POD_NAME
    state = values["state"]
    assert (
        settings.state_location(NAMESPACE, "https://10.96.0.1:443")
        == {
            "configmap": f"configmap:{NAMESPACE}/{state['configMapName'] or FULLNAME + '-state'}",
            "file": f"file:{state['path']}",
            "none": "none",
        }[state["type"]]
    )


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
    objs = objects["default"]
    assert not set(_kinds(objs)) & {"ServiceMonitor", "NetworkPolicy"}
    assert [d["metadata"]["name"] for d in _find(objs, "Deployment")] == [FULLNAME]
    assert [c["metadata"]["name"] for c in _find(objs, "ConfigMap")] == [FULLNAME]


def test_service_monitor(objects: Objects) -> None:
    objs = objects["service-monitor"]
    monitor = _only(objs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    service = _only(objs, "Service", FULLNAME)
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert _selects(selector, service["metadata"]["labels"])
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s"


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("default", "minAvailable", 1),
        ("pdb", "minAvailable", 1),
        ("pdb-percent", "maxUnavailable", "50%"),
        ("custom-lease", "minAvailable", 1),
    ],
)
def test_pod_disruption_budget(objects: Objects, name: str, field: str, value: Any) -> None:
    objs = objects[name]
    budget = _only(objs, "PodDisruptionBudget")
    assert budget["spec"][field] == value
    assert len([k for k in ("minAvailable", "maxUnavailable") if k in budget["spec"]]) == 1
    pod_labels = _deployment(objs)["spec"]["template"]["metadata"]["labels"]
    assert _selects(budget["spec"]["selector"]["matchLabels"], pod_labels)


@pytest.mark.parametrize("name", ["leader-election-off", "stateless-single"])
def test_no_disruption_budget_for_a_single_replica(objects: Objects, name: str) -> None:
    # minAvailable: 1 with one replica would block every node drain.
    assert _find(objects[name], "PodDisruptionBudget") == []


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


# --- Jaeger beside eventtrace (jaeger.enabled) ---------------------------------------------

JAEGER_SETS = ["jaeger", "jaeger-http"]


def _jaeger_pod_labels(objs: list[dict[str, Any]]) -> dict[str, str]:
    labels: dict[str, str] = _only(objs, "Deployment", JAEGER)["spec"]["template"]["metadata"][
        "labels"
    ]
    return labels


@pytest.mark.parametrize("name", JAEGER_SETS)
def test_jaeger_objects(objects: Objects, merged: dict[str, dict[str, Any]], name: str) -> None:
    objs = objects[name]
    jaeger = merged[name]["jaeger"]
    deployment = _only(objs, "Deployment", JAEGER)
    service = _only(objs, "Service", JAEGER)
    for obj in (deployment, service):
        assert obj["metadata"]["namespace"] == NAMESPACE
    spec = deployment["spec"]
    # Its store is its memory: one pod, replaced rather than doubled.
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert _selects(spec["selector"]["matchLabels"], _jaeger_pod_labels(objs))
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["image"] == f"{jaeger['image']['repository']}:{jaeger['image']['tag']}"
    assert container["imagePullPolicy"] == jaeger["image"]["pullPolicy"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["JAEGER_LISTEN_HOST"] == "0.0.0.0"  # not the built-in config's localhost
    # No --config: Jaeger's built-in all-in-one configuration (memory storage).
    assert "args" not in container and "command" not in container
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"otlp-grpc": 4317, "otlp-http": 4318, "ui": 16686, "health": 13133}
    for probe in (container["livenessProbe"], container["readinessProbe"]):
        assert probe["httpGet"] == {"path": "/status", "port": "health"}
    resources = container["resources"]
    assert resources == jaeger["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]
    # The Service reaches the pod's ports by name.
    assert _selects(service["spec"]["selector"], _jaeger_pod_labels(objs))
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert set(service_ports) == {"otlp-grpc", "otlp-http", "ui"}
    for port_name, port in service_ports.items():
        assert port["targetPort"] == port_name
        assert port["port"] == ports[port_name]


def test_jaeger_image_is_pinned_and_the_compose_files(chart: Any) -> None:
    image = chart.values["jaeger"]["image"]
    assert image["repository"] == "cr.jaegertracing.io/jaegertracing/jaeger"
    # A released Jaeger v2, not a moving tag.
    assert re.fullmatch(r"2\.\d+\.\d+", image["tag"]), image["tag"]
    # The same Jaeger docker-compose.jaeger.yaml runs.
    compose = yaml.safe_load((ROOT / "docker-compose.jaeger.yaml").read_text(encoding="utf-8"))
    assert compose["services"]["jaeger"]["image"] == f"{image['repository']}:{image['tag']}"


@pytest.mark.parametrize(
    ("name", "port_name"), [("jaeger", "otlp-grpc"), ("jaeger-http", "otlp-http")]
)
def test_eventtrace_exports_to_the_in_chart_jaeger(
    objects: Objects, name: str, port_name: str
) -> None:
    objs = objects[name]
    service = _only(objs, "Service", JAEGER)
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == port_name)
    env = _env(objs)
    # Plaintext, through the standard variables (the chart's one mechanism for the endpoint).
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == f"http://{JAEGER}.{NAMESPACE}.svc:{port}"
    assert env["OTEL_EXPORTER_OTLP_INSECURE"]["value"] == "true"
    assert "OTEL_EXPORTER_OTLP_CERTIFICATE" not in env
    assert _config(objs)["output"] == "otlp"


@pytest.mark.parametrize("name", JAEGER_SETS)
def test_no_eventtrace_selector_picks_the_jaeger_pod(objects: Objects, name: str) -> None:
    objs = objects[name]
    jaeger_labels = _jaeger_pod_labels(objs)
    eventtrace_labels = _deployment(objs)["spec"]["template"]["metadata"]["labels"]
    selectors = [
        _deployment(objs)["spec"]["selector"]["matchLabels"],
        _only(objs, "Service", FULLNAME)["spec"]["selector"],
        _only(objs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    ]
    affinity = _pod(objs)["affinity"]["podAntiAffinity"]
    for preferred in affinity["preferredDuringSchedulingIgnoredDuringExecution"]:
        selectors.append(preferred["podAffinityTerm"]["labelSelector"]["matchLabels"])
    for policy in _find(objs, "NetworkPolicy"):
        selectors.append(policy["spec"]["podSelector"]["matchLabels"])
    for selector in selectors:
        assert _selects(selector, eventtrace_labels)
        assert not _selects(selector, jaeger_labels), selector
    for selector in (
        _only(objs, "Deployment", JAEGER)["spec"]["selector"]["matchLabels"],
        _only(objs, "Service", JAEGER)["spec"]["selector"],
    ):
        assert not _selects(selector, eventtrace_labels), selector


def test_jaeger_notes_open_the_ui(rendered: Rendered, objects: Objects) -> None:
    notes = rendered["jaeger"]["eventtrace/templates/NOTES.txt"]
    ui = next(
        p for p in _only(objects["jaeger"], "Service", JAEGER)["spec"]["ports"] if p["name"] == "ui"
    )
    assert f"kubectl -n {NAMESPACE} port-forward service/{JAEGER} 16686:{ui['port']}" in notes
    assert "WARNING" not in notes
    assert "http://localhost:16686" in notes
    assert f"service/{JAEGER}" not in rendered["default"]["eventtrace/templates/NOTES.txt"]


def test_network_policy_lets_eventtrace_reach_the_in_chart_jaeger(objects: Objects) -> None:
    objs = objects["jaeger-http"]
    spec = _only(objs, "NetworkPolicy")["spec"]
    egress_ports = {p["port"] for rule in spec["egress"] for p in rule.get("ports", [])}
    endpoint = _env(objs)["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"]
    assert int(endpoint.rsplit(":", 1)[1]) in egress_ports


# --- the Grafana dashboard -----------------------------------------------------------------

# The metrics the dashboard is for (issue "From helm install to a trace in the Jaeger UI").
DASHBOARD_METRICS = {
    "eventtrace_events_received_total",
    "eventtrace_spans_exported_total",
    "eventtrace_spans_failed_total",
    "eventtrace_export_lag_seconds_bucket",
    "eventtrace_watch_restarts_total",
    "eventtrace_open_episodes",
    "eventtrace_leader",
}

_SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def _exposed_metric_names() -> set[str]:
    """Every series name eventtrace's /metrics can show, from its real registry."""
    return {
        family.name + suffix
        for family in Metrics().registry.collect()
        for suffix in _SAMPLE_SUFFIXES[family.type]
    }


_PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
_PROMQL_KEYWORDS |= {"and", "or", "unless", "offset", "inf", "nan"}


def _promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: what is left once strings, label matchers,
    ranges, grouping clauses, numbers and function calls are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", text):
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group().lower() not in _PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def _dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression in the dashboard: panel targets and variable queries."""
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        query = query["query"] if isinstance(query, dict) else query
        match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
        assert match, query
        queries.append(match.group(1))
    return queries


def _as_grafana_would_send(expr: str) -> str:
    """Grafana replaces its variables before Prometheus sees the query."""
    return expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def test_dashboard_is_a_grafana_dashboard(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "eventtrace" and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert "id" not in dashboard or dashboard["id"] is None  # the instance assigns it
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["w"] > 0 and grid["h"] > 0
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert panel["targets"] and len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
    # No two panels overlap.
    cells = [
        (x, y)
        for p in panels
        for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
        for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells))


def test_dashboard_queries_name_only_real_metrics(dashboard: dict[str, Any]) -> None:
    exposed = _exposed_metric_names()
    used: set[str] = set()
    for query in _dashboard_queries(dashboard):
        names = _promql_metric_names(_as_grafana_would_send(query))
        assert names, f"no metric in {query!r}"
        assert names <= exposed, f"{query!r} names {sorted(names - exposed)}"
        used |= names
    assert used >= DASHBOARD_METRICS, sorted(DASHBOARD_METRICS - used)


def test_dashboard_queries_parse_as_promql(dashboard: dict[str, Any]) -> None:
    promql = pytest.importorskip(
        "promql_parser",
        reason="promql-parser is not installed (a dev extra): PromQL syntax unchecked",
    )
    for query in _dashboard_queries(dashboard):
        expr = promql.parse(_as_grafana_would_send(query))
        selected: set[str] = set()

        def visit(node: Any, selected: set[str] = selected) -> None:
            if isinstance(node, promql.VectorSelector) and node.name:
                selected.add(node.name)

        promql.walk(expr, visit)
        # The real parser and the names check above agree on what each query reads.
        assert selected == _promql_metric_names(_as_grafana_would_send(query)), query


def test_promql_names_check_catches_a_wrong_name() -> None:
    # The names check is only worth something if it sees through PromQL's syntax.
    expr = 'sum by (le, eventtrace_x) (rate(eventtrace_nope_bucket{a="b(c)"}[5m])) / on(pod) up'
    assert _promql_metric_names(expr) == {"eventtrace_nope_bucket", "up"}
    assert not {"eventtrace_nope_bucket", "up"} <= _exposed_metric_names()


@pytest.mark.parametrize("name", ["dashboard", "dashboard-elsewhere"])
def test_dashboard_configmap(objects: Objects, name: str) -> None:
    objs = objects[name]
    configmap = _only(objs, "ConfigMap", f"{FULLNAME}-dashboard")
    dashboard = VALUE_SETS[name]["grafana"]["dashboard"]
    assert configmap["metadata"]["namespace"] == dashboard.get("namespace", NAMESPACE)
    # The label the Grafana sidecar loads dashboards by (its default unless told).
    labels = dashboard.get("labels", {"grafana_dashboard": "1"})
    assert _selects(labels, configmap["metadata"]["labels"])
    assert configmap["metadata"].get("annotations", {}) == dashboard.get("annotations", {})
    (key,) = configmap["data"]
    assert key.endswith(".json")
    assert json.loads(configmap["data"][key]) == json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_dashboard_configmap_is_off_by_default(objects: Objects) -> None:
    for name in ("default", "jaeger", "service-monitor"):
        assert _find(objects[name], "ConfigMap", f"{FULLNAME}-dashboard") == []
