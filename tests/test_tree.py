"""`kubectl eventtrace TARGET` (`eventtrace tree`) as a kubectl user runs it: the real
`kubectl` binary finds the `kubectl-eventtrace` plugin on PATH and hands it the arguments;
the plugin reads the test API server (HTTPS, discovery, field and label selectors) through
the kubeconfig kubectl would use. The trees are checked as docs/trace-model.md says them:
each object under the event of its owner that names it, events under their object,
children in time order."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import re
import shutil
import struct
import sys
import termios
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from eventtrace.source.frames import METADATA_LIST
from support.apiserver import ApiServer, make_event, object_reference

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

NS = "shop"
IMAGE = "ghcr.io/example/api:v2.3.0-rc1"
PULL_FAILED = (
    f'Failed to pull image "{IMAGE}": rpc error: code = NotFound desc = failed to pull and '
    f'unpack image "{IMAGE}": failed to resolve reference "{IMAGE}": {IMAGE}: not found'
)


# ---- running it through kubectl ------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str

    def spans(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """A folder for PATH holding `kubectl-eventtrace`: the console script pip installed
    from [project.scripts] (the plugin users get), else a shim running the same entry."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    plugin = folder / "kubectl-eventtrace"
    installed = Path(sys.executable).with_name("kubectl-eventtrace")
    if installed.exists():
        plugin.symlink_to(installed)
    else:
        plugin.write_text(
            f"#!/bin/sh\nexec '{sys.executable}' -c "
            "'from eventtrace.cli import kubectl_entry; kubectl_entry()' \"$@\"\n"
        )
        plugin.chmod(0o755)
    return folder


def environment(server: ApiServer, plugin_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EVENTTRACE_", "OTEL_", "KUBECONFIG", "NO_COLOR"))
    }
    env.update(
        PATH=f"{plugin_dir}{os.pathsep}{env.get('PATH', '')}",
        KUBECONFIG=str(server.kubeconfig),
        HOME=str(plugin_dir.parent),
        **extra,
    )
    return env


async def kubectl_eventtrace(server: ApiServer, plugin_dir: Path, *args: str, **env: str) -> Result:
    process = await asyncio.create_subprocess_exec(
        KUBECTL or "kubectl", "eventtrace", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=environment(server, plugin_dir, **env),
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return Result(process.returncode or 0, out.decode(), err.decode())


def with_context_namespace(server: ApiServer, namespace: str) -> None:
    """The kubeconfig's current context names a namespace, as `kubens` would set it."""
    assert server.kubeconfig is not None
    config = yaml.safe_load(server.kubeconfig.read_text())
    config["contexts"][0]["context"]["namespace"] = namespace
    server.kubeconfig.write_text(yaml.safe_dump(config))


# ---- cluster objects -----------------------------------------------------------------------


def owned_by(owner: dict[str, Any]) -> list[dict[str, Any]]:
    meta = owner["metadata"]
    return [{"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"],
             "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}]  # fmt: skip


def create(
    server: ApiServer,
    api: str,
    kind: str,
    name: str,
    owner: dict[str, Any] | None = None,
    namespace: str | None = NS,
    labels: dict[str, str] | None = None,
    spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    if owner is not None:
        meta["ownerReferences"] = owned_by(owner)
    obj: dict[str, Any] = {"apiVersion": api, "kind": kind, "metadata": meta}
    if spec is not None:
        obj["spec"] = spec
    return server.create(obj)


def event(
    server: ApiServer, about: dict[str, Any], reason: str, message: str, **kw: Any
) -> dict[str, Any]:
    """An event about an object, or about a reference (an object that is gone)."""
    reference = object_reference(about) if "metadata" in about else about
    kw.setdefault("component", "kubelet")
    if kw["component"] == "kubelet":
        kw.setdefault("host", "kind-worker")
    return server.create(make_event(reason, message, reference, **kw))


def gone(kind: str, name: str, namespace: str = NS) -> dict[str, Any]:
    """The reference of an object that no longer exists (a pod deleted by a rollout)."""
    return {"kind": kind, "apiVersion": "v1", "name": name, "namespace": namespace,
            "uid": str(uuid.uuid4())}  # fmt: skip


def kubelet_start(server: ApiServer, pod: dict[str, Any], pulled: bool = True) -> None:
    name = pod["metadata"]["name"]
    event(server, pod, "Scheduled", f"Successfully assigned {NS}/{name} to kind-worker",
          component="default-scheduler")  # fmt: skip
    if pulled:
        event(server, pod, "Pulling", 'Pulling image "nginx:1.27.3"')
        event(server, pod, "Pulled", 'Successfully pulled image "nginx:1.27.3" in 2.1s')
    else:
        event(server, pod, "Pulled", 'Container image "nginx:1.27.3" already present')
    event(server, pod, "Created", "Created container: nginx")
    event(server, pod, "Started", "Started container nginx")


STARTED = [("Scheduled", []), ("Pulling", []), ("Pulled", []), ("Created", []), ("Started", [])]
STARTED_PRESENT = [("Scheduled", []), ("Pulled", []), ("Created", []), ("Started", [])]


def rollout(server: ApiServer) -> None:
    """deployment/web rolled from web-7c9f8d6b5 to web-5d8b9c7f4d: the new ReplicaSet's two
    pods start, the old one's pod is deleted (and gone: only events remember it). Around
    it, what is not its tree: another Deployment, a bare pod with the same labels, a pod
    of the same name in another namespace."""
    labels = {"app": "web"}
    selector = {"selector": {"matchLabels": labels}}
    deploy = create(server, "apps/v1", "Deployment", "web", labels=labels, spec=selector)
    old = create(server, "apps/v1", "ReplicaSet", "web-7c9f8d6b5", deploy, labels=labels)
    new = create(server, "apps/v1", "ReplicaSet", "web-5d8b9c7f4d", deploy, labels=labels)
    pods = [create(server, "v1", "Pod", f"web-5d8b9c7f4d-{suffix}", new, labels=labels)
            for suffix in ("7vlt2", "m4hqz")]  # fmt: skip
    debug = create(server, "v1", "Pod", "web-debug", labels=labels)
    other = create(server, "apps/v1", "Deployment", "api", labels={"app": "api"})
    elsewhere = create(server, "v1", "Pod", "web-5d8b9c7f4d-7vlt2", namespace="staging")

    event(server, deploy, "ScalingReplicaSet", "Scaled up replica set web-5d8b9c7f4d from 0 to 2",
          component="deployment-controller")  # fmt: skip
    for pod in pods:
        event(server, new, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}",
              component="replicaset-controller")  # fmt: skip
        kubelet_start(server, pod, pulled=pod is pods[0])
    event(server, deploy, "ScalingReplicaSet", "Scaled down replica set web-7c9f8d6b5 from 1 to 0",
          component="deployment-controller")  # fmt: skip
    event(server, old, "SuccessfulDelete", "Deleted pod: web-7c9f8d6b5-k2x9p",
          component="replicaset-controller")  # fmt: skip
    event(server, gone("Pod", "web-7c9f8d6b5-k2x9p"), "Killing", "Stopping container nginx")

    event(server, debug, "Scheduled", f"Successfully assigned {NS}/web-debug to kind-worker",
          component="default-scheduler")  # fmt: skip
    event(server, other, "ScalingReplicaSet", "Scaled up replica set api-6f7d8c9b5 from 0 to 1",
          component="deployment-controller")  # fmt: skip
    event(server, elsewhere, "Scheduled", "Successfully assigned staging/web-5d8b9c7f4d-7vlt2")


ROLLOUT_TREE = [
    ("deployment/web", [
        ("ScalingReplicaSet", [
            ("replicaset/web-5d8b9c7f4d", [
                ("SuccessfulCreate", [("pod/web-5d8b9c7f4d-7vlt2", STARTED)]),
                ("SuccessfulCreate", [("pod/web-5d8b9c7f4d-m4hqz", STARTED_PRESENT)]),
            ]),
        ]),
        ("ScalingReplicaSet", [
            ("replicaset/web-7c9f8d6b5", [
                ("SuccessfulDelete", [("pod/web-7c9f8d6b5-k2x9p", [("Killing", [])])]),
            ]),
        ]),
    ]),
]  # fmt: skip


# ---- reading what it printed ---------------------------------------------------------------


def _order(span: dict[str, Any]) -> tuple[Any, ...]:
    # As the waterfall orders siblings: by start, an event before an object at one time.
    return (span["start_ns"], span["kind"] == "object", span["name"], span["span_id"])


def nested(spans: list[dict[str, Any]]) -> list[Any]:
    """Spans as (name, [children]) trees, children in time order, one per trace."""
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        children[span["parent_id"]].append(span)

    def build(parent: str | None) -> list[Any]:
        return [(s["name"], build(s["span_id"])) for s in sorted(children[parent], key=_order)]

    return build(None)


def label(span: dict[str, Any]) -> str:
    """A span as the waterfall labels it: `✗ Failed (x5)`, `pod/web-0`."""
    if span["kind"] == "object":
        return str(span["name"])
    mark = "✗ " if span["status"] == "ERROR" else ""
    count = span["attributes"].get("eventtrace.occurrences", 1)
    return f"{mark}{span['name']}" + (f" (x{count})" if count > 1 else "")


def flattened(spans: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """(depth, label) of each span, depth first, as the waterfall prints them."""
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        children[span["parent_id"]].append(span)
    lines: list[tuple[int, str]] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children[parent], key=_order):
            lines.append((depth, label(span)))
            walk(span["span_id"], depth + 1)

    walk(None, 0)
    return lines


_LINE = re.compile(r"^ *\+\S+ +\S+  (?P<rest>.*)$")


def waterfall(text: str) -> list[dict[str, Any]]:
    """The printed waterfall read back: per trace its title, header and (depth, label)
    lines, the depth from the tree drawing (three columns a level)."""
    traces: list[dict[str, Any]] = []
    for line in text.splitlines():
        if line and not line.startswith(" "):
            traces.append({"title": line, "summary": "", "lines": [], "text": [line]})
            continue
        if not traces or not line:
            continue
        traces[-1]["text"].append(line)
        match = _LINE.match(line)
        if match is None:
            traces[-1]["summary"] = line.strip()
            continue
        rest = match["rest"]
        drawing = len(rest) - len(rest.lstrip("│├└─ "))
        traces[-1]["lines"].append((drawing // 3, rest[drawing:].split("  ")[0]))
    return traces


def event_lists(server: ApiServer) -> list[Any]:
    return server.requests.matching(resource="events", verb="list")


# ---- the trees -----------------------------------------------------------------------------


async def test_a_deployment_rollout_is_one_tree_read_by_field_selectors(
    apiserver: ApiServer, plugin_dir: Path
) -> None:
    rollout(apiserver)
    result = await kubectl_eventtrace(
        apiserver, plugin_dir, "deployment/web", "-n", NS, "-o", "jsonl"
    )
    assert result.code == 0, result.err
    spans = result.spans()
    assert len({span["trace_id"] for span in spans}) == 1
    assert nested(spans) == ROLLOUT_TREE
    by_name = {span["name"]: span for span in spans if span["kind"] == "object"}
    assert (
        by_name["replicaset/web-5d8b9c7f4d"]["resource"]["service.name"] == "deployment-controller"
    )
    assert (
        by_name["pod/web-5d8b9c7f4d-7vlt2"]["resource"]["service.name"] == "replicaset-controller"
    )
    # The deleted pod is known only from its owner's message: it says so.
    assert by_name["pod/web-7c9f8d6b5-k2x9p"]["attributes"]["eventtrace.object.unresolved"] is True

    # Only the tree's events were read: every events list carries a field selector naming
    # one object; no list (or watch) of a namespace's or the cluster's events.
    lists = event_lists(apiserver)
    assert lists and all(r.query.get("fieldSelector") for r in lists), [r.query for r in lists]
    assert {r.namespace for r in lists} == {NS}
    selectors = {r.query["fieldSelector"] for r in lists}
    assert "involvedObject.kind=Pod,involvedObject.name=web-7c9f8d6b5-k2x9p" in selectors
    assert not any("web-debug" in s or "=api" in s for s in selectors)
    assert not apiserver.requests.matching(resource="events", verb="watch")
    # What it owns was listed in its namespace, narrowed by the Deployment's selector.
    owned = [r for r in apiserver.requests.matching(verb="list") if r.resource != "events"]
    assert {(r.resource, r.namespace) for r in owned} == {("replicasets", NS), ("pods", NS)}
    assert all(r.query.get("labelSelector") == "app=web" for r in owned)
    assert {r.accept for r in owned} == {METADATA_LIST}  # their metadata only: no pod specs


async def test_the_waterfall_nests_and_orders_the_rollout_as_the_spans_say(
    apiserver: ApiServer, plugin_dir: Path
) -> None:
    rollout(apiserver)
    with_context_namespace(apiserver, NS)  # no -n: the context's namespace, as kubectl
    structure = await kubectl_eventtrace(apiserver, plugin_dir, "deploy/web", "-o", "jsonl")
    printed = await kubectl_eventtrace(apiserver, plugin_dir, "deploy", "web")
    assert printed.code == 0, printed.err
    (trace,) = waterfall(printed.out)
    assert trace["title"].startswith("deployment/web  trace ")
    assert trace["lines"] == flattened(structure.spans())
    assert trace["lines"][:3] == [
        (0, "deployment/web"), (1, "ScalingReplicaSet"), (2, "replicaset/web-5d8b9c7f4d")
    ]  # fmt: skip
    events = sum(span["kind"] == "event" for span in structure.spans())
    assert events == 15
    assert re.fullmatch(
        rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\dZ  lasted \S+  {events} events", trace["summary"]
    )
    assert "\033[" not in printed.out  # piped: no colour


async def test_the_tree_goes_over_otlp_as_the_same_spans(
    apiserver: ApiServer, plugin_dir: Path, otlp_receiver: Any
) -> None:
    rollout(apiserver)
    expected = await kubectl_eventtrace(
        apiserver, plugin_dir, "deploy/web", "-n", NS, "-o", "jsonl"
    )
    result = await kubectl_eventtrace(
        apiserver, plugin_dir, "deploy/web", "-n", NS, "-o", "otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.http_endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
    )  # fmt: skip
    assert result.code == 0, result.err
    spans = expected.spans()
    received = await otlp_receiver.wait_for_spans(len(spans))
    assert sorted((s.span_id, s.parent_id, s.name) for s in received) == sorted(
        (s["span_id"], s["parent_id"], s["name"]) for s in spans
    )


async def test_a_pod_stuck_on_a_missing_image_shows_its_warnings_in_full(
    apiserver: ApiServer, plugin_dir: Path
) -> None:
    pod = create(apiserver, "v1", "Pod", "api-6f7d8c9b5-x7k2p")
    container = object_reference(pod, "spec.containers{api}")
    now = datetime.now(UTC).replace(microsecond=0)
    # Within trace_idle (120 s) of what follows: one episode, over a minute long.
    earlier = (now - timedelta(seconds=100)).strftime("%Y-%m-%dT%H:%M:%SZ")
    two_hours_ago = (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    event(apiserver, pod, "Scheduled", f"Successfully assigned {NS}/api-6f7d8c9b5-x7k2p to kind-worker",
          component="default-scheduler", first_timestamp=earlier)  # fmt: skip
    event(apiserver, container, "Pulling", f'Pulling image "{IMAGE}"')
    event(apiserver, container, "Failed", PULL_FAILED, type="Warning")
    event(apiserver, container, "Failed", "Error: ErrImagePull", type="Warning")
    event(apiserver, container, "BackOff", f'Back-off pulling image "{IMAGE}"',
          count=5, first_timestamp=earlier)  # fmt: skip
    event(apiserver, container, "Failed", "Error: ImagePullBackOff", type="Warning", count=5,
          first_timestamp=earlier)  # fmt: skip
    # An episode from two hours ago: past --since 1h, so not shown unless asked for.
    event(
        apiserver, pod, "Pulled", "Container image already present", first_timestamp=two_hours_ago
    )

    result = await kubectl_eventtrace(apiserver, plugin_dir, "po/api-6f7d8c9b5-x7k2p", "-n", NS)
    assert result.code == 0, result.err
    (trace,) = waterfall(result.out)
    assert trace["summary"].endswith("6 events, 3 warnings")
    text = "\n".join(trace["text"])
    assert f"✗ Failed  {PULL_FAILED}" in text  # piped: the whole message, however long
    assert "✗ Failed (x5)  Error: ImagePullBackOff" in text
    assert "BackOff (x5)" in text and "✗ BackOff" not in text
    # A minute after the episode began reads as minutes, not seconds: +1m40s.
    assert re.search(r"^ +\+1m4[0-2]s +- +├─ Pulling", text, re.MULTILINE), text
    assert "Pulled" not in text

    older = await kubectl_eventtrace(apiserver, plugin_dir, "pod/api-6f7d8c9b5-x7k2p", "-n", NS,
                                     "--since", "3h")  # fmt: skip
    assert [t["lines"][0] for t in waterfall(older.out)] == [(0, "pod/api-6f7d8c9b5-x7k2p")] * 2
    assert "Pulled" in "\n".join(waterfall(older.out)[0]["text"])  # the older episode first


async def test_a_statefulset_and_its_pods(apiserver: ApiServer, plugin_dir: Path) -> None:
    labels = {"app": "db"}
    sts = create(apiserver, "apps/v1", "StatefulSet", "db", labels=labels,
                 spec={"selector": {"matchLabels": labels}})  # fmt: skip
    pods = [create(apiserver, "v1", "Pod", f"db-{i}", sts, labels=labels) for i in (0, 1)]
    for pod in pods:
        name = pod["metadata"]["name"]
        event(apiserver, sts, "SuccessfulCreate", f"create Pod {name} in StatefulSet db successful",
              component="statefulset-controller")  # fmt: skip
        kubelet_start(apiserver, pod, pulled=False)
    result = await kubectl_eventtrace(apiserver, plugin_dir, "sts/db", "-n", NS, "-o", "jsonl")
    assert result.code == 0, result.err
    assert nested(result.spans()) == [
        ("statefulset/db", [
            ("SuccessfulCreate", [("pod/db-0", STARTED_PRESENT)]),
            ("SuccessfulCreate", [("pod/db-1", STARTED_PRESENT)]),
        ]),
    ]  # fmt: skip
    owned = [r for r in apiserver.requests.matching(verb="list") if r.resource != "events"]
    assert [(r.resource, r.query.get("labelSelector")) for r in owned] == [("pods", "app=db")]


async def test_a_node_and_its_events_wherever_they_were_written(
    apiserver: ApiServer, plugin_dir: Path
) -> None:
    node = create(apiserver, "v1", "Node", "kind-worker", namespace=None)
    # kubelet writes a Node's events in "default", with the node's name as its uid.
    as_kubelet = {"kind": "Node", "apiVersion": "v1", "name": "kind-worker", "uid": "kind-worker"}
    for reason, message in [("Starting", "Starting kubelet."),
                            ("NodeHasSufficientMemory", "Node kind-worker status is now: NodeHasSufficientMemory"),
                            ("NodeReady", "Node kind-worker status is now: NodeReady")]:  # fmt: skip
        event(apiserver, as_kubelet, reason, message, namespace="default")
    event(apiserver, node, "InvalidDiskCapacity", "invalid capacity 0 on image filesystem",
          type="Warning", namespace="default")  # fmt: skip
    other = {
        "kind": "Node",
        "apiVersion": "v1",
        "name": "kind-control-plane",
        "uid": "kind-control-plane",
    }
    event(apiserver, other, "NodeReady", "Node kind-control-plane status is now: NodeReady",
          namespace="default")  # fmt: skip

    result = await kubectl_eventtrace(apiserver, plugin_dir, "no/kind-worker", "-n", NS)
    assert result.code == 0, result.err
    (trace,) = waterfall(result.out)
    assert trace["lines"] == [
        (0, "node/kind-worker"), (1, "Starting"), (1, "NodeHasSufficientMemory"), (1, "NodeReady"),
        (1, "✗ InvalidDiskCapacity"),
    ]  # fmt: skip
    (listed,) = event_lists(apiserver)  # cluster-scoped: every namespace, one object's events
    assert listed.path == "/api/v1/events" and listed.namespace is None
    assert (
        listed.query["fieldSelector"] == "involvedObject.kind=Node,involvedObject.name=kind-worker"
    )


async def test_a_custom_resource_by_its_short_name_plural_and_group(
    apiserver: ApiServer, plugin_dir: Path
) -> None:
    apiserver.register_custom_resource(
        "argoproj.io", "v1alpha1", "Rollout", "rollouts", short_names=["ro"]
    )
    demo = create(apiserver, "argoproj.io/v1alpha1", "Rollout", "demo")
    rs = create(apiserver, "apps/v1", "ReplicaSet", "demo-6b7c8d9f", demo)
    pod = create(apiserver, "v1", "Pod", "demo-6b7c8d9f-abcde", rs)
    event(apiserver, demo, "ScalingReplicaSet", "Scaled up ReplicaSet demo-6b7c8d9f (revision 1) from 0 to 1",
          component="rollouts-controller")  # fmt: skip
    event(apiserver, rs, "SuccessfulCreate", "Created pod: demo-6b7c8d9f-abcde",
          component="replicaset-controller")  # fmt: skip
    kubelet_start(apiserver, pod, pulled=False)

    expected = [
        ("rollout/demo", [
            ("ScalingReplicaSet", [
                ("replicaset/demo-6b7c8d9f", [
                    ("SuccessfulCreate", [("pod/demo-6b7c8d9f-abcde", STARTED_PRESENT)]),
                ]),
            ]),
        ]),
    ]  # fmt: skip
    for target in ("ro/demo", "rollout/demo", "rollouts.argoproj.io/demo", "Rollout/demo"):
        result = await kubectl_eventtrace(apiserver, plugin_dir, target, "-n", NS, "-o", "jsonl")
        assert result.code == 0, (target, result.err)
        assert nested(result.spans()) == expected, target


async def test_kubectl_errors_one_line_each(apiserver: ApiServer, plugin_dir: Path) -> None:
    rollout(apiserver)

    async def fails(*args: str) -> str:
        result = await kubectl_eventtrace(apiserver, plugin_dir, *args)
        assert result.code == 1, (args, result)
        assert result.out == "" and len(result.err.strip().splitlines()) == 1, result.err
        assert "Traceback" not in result.err
        return result.err.strip()

    assert (
        await fails("foo/web", "-n", NS) == 'error: the server doesn\'t have a resource type "foo"'
    )
    assert await fails("deploy/nope", "-n", NS) == (
        'Error from server (NotFound): deployments.apps "nope" not found'
    )
    assert await fails("deploy/web") == (  # not in the context's namespace
        'Error from server (NotFound): deployments.apps "web" not found'
    )
    apiserver.faults.forbid("deployments", verbs="get")
    assert await fails("deploy/web", "-n", NS) == (
        'Error from server (Forbidden): deployments.apps "web" is forbidden: User '
        '"system:serviceaccount:eventtrace:eventtrace" cannot get resource "deployments" in '
        'API group "apps" in the namespace "shop"'
    )
    apiserver.faults.clear()
    # -A: found by name in whichever namespace holds it.
    found = await kubectl_eventtrace(apiserver, plugin_dir, "-A", "deploy/web", "-o", "jsonl")
    assert found.code == 0 and nested(found.spans()) == ROLLOUT_TREE, found.err
    both = await fails("-A", "pod/web-5d8b9c7f4d-7vlt2")
    assert both == (
        "error: pod/web-5d8b9c7f4d-7vlt2 is in several namespaces (shop, staging): "
        "choose one with -n NAMESPACE"
    )


async def test_a_deleted_deployment_is_still_shown_from_the_events_it_left(
    apiserver: ApiServer, plugin_dir: Path
) -> None:
    rollout(apiserver)
    for resource, name in [("pods", "web-5d8b9c7f4d-7vlt2"), ("pods", "web-5d8b9c7f4d-m4hqz"),
                           ("replicasets", "web-5d8b9c7f4d"), ("replicasets", "web-7c9f8d6b5"),
                           ("deployments", "web")]:  # fmt: skip
        apiserver.delete(resource, name, NS)
    result = await kubectl_eventtrace(apiserver, plugin_dir, "deploy/web", "-n", NS, "-o", "jsonl")
    assert result.code == 0, result.err
    assert result.err.startswith('note: deployment/web is gone (deployments.apps "web" not found)')
    assert nested(result.spans()) == ROLLOUT_TREE  # the controllers' messages say who made whom


# ---- --watch in a terminal -------------------------------------------------------------------


def _controlling_terminal() -> None:
    """In the child: a session of its own, with the pty as its terminal, so ^C is SIGINT."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """The master side of a pseudo-terminal: what was drawn, as plain text."""

    def __init__(self, rows: int = 50, columns: int = 160) -> None:
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        os.set_blocking(self.master, False)
        self.raw = b""

    def read(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(self.master, 65536):
                self.raw += chunk

    @property
    def screens(self) -> list[str]:
        """What each redraw drew (the screen is cleared before each)."""
        text = self.raw.decode(errors="replace").replace("\r\n", "\n")
        return [re.sub(r"\033\[[0-9;]*[A-Za-z]", "", s) for s in text.split("\033[2J")]

    async def wait_for(self, text: str, within: float = 20.0) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            self.read()
            if text in self.screens[-1]:
                return self.screens[-1]
            await asyncio.sleep(0.05)
        raise AssertionError(f"{text!r} not drawn in {within}s:\n{self.screens[-1]}")


async def test_watch_redraws_the_tree_in_a_terminal_and_ctrl_c_exits_0(
    apiserver: ApiServer, plugin_dir: Path
) -> None:
    labels = {"app": "web"}
    deploy = create(apiserver, "apps/v1", "Deployment", "web", labels=labels,
                    spec={"selector": {"matchLabels": labels}})  # fmt: skip
    rs = create(apiserver, "apps/v1", "ReplicaSet", "web-5d8b9c7f4d", deploy, labels=labels)
    pod = create(apiserver, "v1", "Pod", "web-5d8b9c7f4d-7vlt2", rs, labels=labels)
    event(apiserver, deploy, "ScalingReplicaSet", "Scaled up replica set web-5d8b9c7f4d from 0 to 1",
          component="deployment-controller")  # fmt: skip
    event(apiserver, rs, "SuccessfulCreate", "Created pod: web-5d8b9c7f4d-7vlt2",
          component="replicaset-controller")  # fmt: skip
    kubelet_start(apiserver, pod)

    terminal = Terminal()
    process = await asyncio.create_subprocess_exec(
        KUBECTL or "kubectl", "eventtrace", "deploy/web", "-n", NS, "--watch",
        stdin=terminal.slave, stdout=terminal.slave, stderr=terminal.slave,
        env=environment(apiserver, plugin_dir, TERM="xterm-256color"),
        preexec_fn=_controlling_terminal,
    )  # fmt: skip
    os.close(terminal.slave)
    try:
        first = await terminal.wait_for("Ctrl-C to quit")
        assert "pod/web-5d8b9c7f4d-7vlt2" in first and "Started" in first
        await apiserver.wait_for_watches("events", within=10)
        # A new event of a pod it knows, and a new pod (resolved by a GET) with its own.
        event(apiserver, pod, "Killing", "Stopping container nginx")
        event(apiserver, deploy, "ScalingReplicaSet", "Scaled up replica set web-5d8b9c7f4d from 1 to 2",
              component="deployment-controller")  # fmt: skip
        second = create(apiserver, "v1", "Pod", "web-5d8b9c7f4d-m4hqz", rs, labels=labels)
        event(apiserver, second, "Scheduled", f"Successfully assigned {NS}/web-5d8b9c7f4d-m4hqz",
              component="default-scheduler")  # fmt: skip
        screen = await terminal.wait_for("pod/web-5d8b9c7f4d-m4hqz")
        assert "Killing" in screen and "Started" in screen
        assert len(terminal.screens) >= 3  # drawn, then redrawn in place
        # Not the other namespace's, nor another object's.
        event(apiserver, create(apiserver, "v1", "Pod", "noise"), "Scheduled", "noise")
        os.write(terminal.master, b"\x03")  # Ctrl-C
        assert await asyncio.wait_for(process.wait(), 15) == 0
        terminal.read()
        assert "noise" not in terminal.screens[-1] and "Traceback" not in terminal.screens[-1]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(terminal.master)
    lists = event_lists(apiserver)
    assert lists and all(r.query.get("fieldSelector") for r in lists)
    (watch,) = apiserver.requests.matching(resource="events", verb="watch")
    assert watch.namespace == NS and watch.query.get("resourceVersion")
