"""Writes the recordings `eventtrace demo` ships (eventtrace/demo/).

They are modelled on real captures (tests/fixtures/real, and the event shapes in the watch
protocol reference): a Deployment rolling to a new image, and a Deployment whose pod is
stuck on a missing image with Failed/BackOff repeating as MODIFIED count bumps.
Run `python tools/make_demo.py` to regenerate; the output is committed.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "eventtrace" / "demo"
NAMESPACE = "shop"
START = datetime(2026, 11, 2, 14, 3, 11, tzinfo=UTC)
_rv = iter(range(48_211, 10**9))
_nanos = iter(range(137_000, 10**9, 7_919))  # recorders name events by UnixNano: unique


def event_name(involved: str, moment: datetime) -> str:
    return f"{involved}.{int(moment.timestamp()) * 10**9 + next(_nanos):x}"


def uid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "eventtrace-demo/" + "/".join(parts)))


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def micro(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ref(kind: str, name: str, api: str = "v1", field: str = "") -> dict[str, Any]:
    out = {"kind": kind, "namespace": NAMESPACE, "name": name, "uid": uid(kind, name)}
    out["apiVersion"] = api
    if field:
        out["fieldPath"] = field
    return out


class Recorder:
    """Legacy (core/v1) events with count bumps, as client-go's recorder writes them."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.counts: dict[str, dict[str, Any]] = {}

    def legacy(
        self, at: float, involved: dict[str, Any], reason: str, message: str, component: str,
        host: str = "", kind: str = "Normal",
    ) -> None:  # fmt: skip
        moment = START + timedelta(seconds=at)
        key = f"{involved['uid']}/{reason}/{message}"
        event = self.counts.get(key)
        if event is None:
            name = event_name(involved["name"], moment)
            event = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": NAMESPACE, "uid": uid("event", name),
                             "creationTimestamp": stamp(moment)},
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "source": {"component": component, **({"host": host} if host else {})},
                "firstTimestamp": stamp(moment),
                "lastTimestamp": stamp(moment),
                "count": 1,
                "type": kind,
                "eventTime": None,
                "reportingComponent": component,
                "reportingInstance": host,
            }  # fmt: skip
            self.counts[key] = event
            watch_type = "ADDED"
        else:
            event = json.loads(json.dumps(event))
            event["count"] += 1
            event["lastTimestamp"] = stamp(moment)
            self.counts[key] = event
            watch_type = "MODIFIED"
        event["metadata"]["resourceVersion"] = str(next(_rv))
        self.lines.append({"type": watch_type, "object": json.loads(json.dumps(event))})

    def skip(self, involved: dict[str, Any], reason: str, message: str) -> None:
        """An update the watch missed: the next one arrives with the count jumped."""
        self.counts[f"{involved['uid']}/{reason}/{message}"]["count"] += 1

    def scheduled(self, at: float, pod: str, node: str) -> None:
        """The scheduler's events.k8s.io shape: eventTime in µs, no count, empty source."""
        moment = START + timedelta(seconds=at)
        name = event_name(pod, moment)
        self.lines.append({"type": "ADDED", "object": {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": NAMESPACE, "uid": uid("event", name),
                         "resourceVersion": str(next(_rv)), "creationTimestamp": stamp(moment)},
            "involvedObject": ref("Pod", pod),
            "reason": "Scheduled", "action": "Binding",
            "message": f"Successfully assigned {NAMESPACE}/{pod} to {node}",
            "source": {}, "firstTimestamp": None, "lastTimestamp": None,
            "eventTime": micro(moment), "type": "Normal",
            "reportingComponent": "default-scheduler",
            "reportingInstance": "default-scheduler-kind-control-plane",
        }})  # fmt: skip

    def write(self, path: Path) -> None:
        path.write_text(
            "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in self.lines)
        )


def rollout() -> Recorder:
    rec, deploy = Recorder(), ref("Deployment", "web", "apps/v1")
    old, new = "web-7c9f8d6b5", "web-5d8b9c7f4d"
    image = "nginx:1.27.3"

    def container(pod: str) -> dict[str, Any]:
        return ref("Pod", pod, field="spec.containers{nginx}")

    rec.legacy(
        0,
        deploy,
        "ScalingReplicaSet",
        f"Scaled up replica set {new} from 0 to 1",
        "deployment-controller",
    )
    rec.legacy(
        0,
        ref("ReplicaSet", new, "apps/v1"),
        "SuccessfulCreate",
        f"Created pod: {new}-7vlt2",
        "replicaset-controller",
    )
    rec.scheduled(0.014, f"{new}-7vlt2", "kind-worker")
    rec.legacy(
        1,
        container(f"{new}-7vlt2"),
        "Pulling",
        f'Pulling image "{image}"',
        "kubelet",
        "kind-worker",
    )
    rec.legacy(
        4,
        container(f"{new}-7vlt2"),
        "Pulled",
        f'Successfully pulled image "{image}" in 2.871s (2.871s including waiting). Image size: 72955450 bytes.',
        "kubelet",
        "kind-worker",
    )
    rec.legacy(
        4,
        container(f"{new}-7vlt2"),
        "Created",
        "Created container: nginx",
        "kubelet",
        "kind-worker",
    )
    rec.legacy(
        5, container(f"{new}-7vlt2"), "Started", "Started container nginx", "kubelet", "kind-worker"
    )
    rec.legacy(
        7,
        deploy,
        "ScalingReplicaSet",
        f"Scaled down replica set {old} from 2 to 1",
        "deployment-controller",
    )
    rec.legacy(
        7,
        ref("ReplicaSet", old, "apps/v1"),
        "SuccessfulDelete",
        f"Deleted pod: {old}-k2x9p",
        "replicaset-controller",
    )
    rec.legacy(
        7,
        container(f"{old}-k2x9p"),
        "Killing",
        "Stopping container nginx",
        "kubelet",
        "kind-worker2",
    )
    rec.legacy(
        7,
        deploy,
        "ScalingReplicaSet",
        f"Scaled up replica set {new} from 1 to 2",
        "deployment-controller",
    )
    rec.legacy(
        7,
        ref("ReplicaSet", new, "apps/v1"),
        "SuccessfulCreate",
        f"Created pod: {new}-m4hqz",
        "replicaset-controller",
    )
    rec.scheduled(7.021, f"{new}-m4hqz", "kind-worker2")
    rec.legacy(
        8,
        container(f"{new}-m4hqz"),
        "Pulled",
        f'Container image "{image}" already present on machine',
        "kubelet",
        "kind-worker2",
    )
    rec.legacy(
        8,
        container(f"{new}-m4hqz"),
        "Created",
        "Created container: nginx",
        "kubelet",
        "kind-worker2",
    )
    rec.legacy(
        9,
        container(f"{new}-m4hqz"),
        "Started",
        "Started container nginx",
        "kubelet",
        "kind-worker2",
    )
    rec.legacy(
        11,
        deploy,
        "ScalingReplicaSet",
        f"Scaled down replica set {old} from 1 to 0",
        "deployment-controller",
    )
    rec.legacy(
        11,
        ref("ReplicaSet", old, "apps/v1"),
        "SuccessfulDelete",
        f"Deleted pod: {old}-q8zrt",
        "replicaset-controller",
    )
    rec.legacy(
        11,
        container(f"{old}-q8zrt"),
        "Killing",
        "Stopping container nginx",
        "kubelet",
        "kind-worker",
    )
    return rec  # fmt: skip


def image_pull_backoff() -> Recorder:
    rec, deploy = Recorder(), ref("Deployment", "api", "apps/v1")
    rs, pod = "api-6f7d8c9b5", "api-6f7d8c9b5-x7k2p"
    image = "ghcr.io/example/api:v2.3.0-rc1"
    container = ref("Pod", pod, field="spec.containers{api}")
    t = 40.0
    pull_failed = (
        f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull and '
        f'unpack image "{image}": failed to resolve reference "{image}": {image}: not found'
    )
    backoff = f'Back-off pulling image "{image}"'
    rec.legacy(
        t,
        deploy,
        "ScalingReplicaSet",
        f"Scaled up replica set {rs} from 0 to 1",
        "deployment-controller",
    )
    rec.legacy(
        t,
        ref("ReplicaSet", rs, "apps/v1"),
        "SuccessfulCreate",
        f"Created pod: {pod}",
        "replicaset-controller",
    )
    rec.scheduled(t + 0.009, pod, "kind-worker")
    # kubelet retries the pull with a growing back-off: 10 s, 20 s, 40 s, 80 s.
    for attempt, at in enumerate((1, 14, 36, 78, 160)):
        rec.legacy(
            t + at, container, "Pulling", f'Pulling image "{image}"', "kubelet", "kind-worker"
        )
        rec.legacy(
            t + at + 1, container, "Failed", pull_failed, "kubelet", "kind-worker", "Warning"
        )
        rec.legacy(
            t + at + 1,
            container,
            "Failed",
            "Error: ErrImagePull",
            "kubelet",
            "kind-worker",
            "Warning",
        )
        for wait in range(2, 2 + min(4, attempt + 1)):
            if attempt == 3 and wait == 3:
                rec.skip(container, "BackOff", backoff)  # missed update: the count jumps
                rec.skip(container, "Failed", "Error: ImagePullBackOff")
                continue
            rec.legacy(t + at + wait, container, "BackOff", backoff, "kubelet", "kind-worker")
            rec.legacy(
                t + at + wait,
                container,
                "Failed",
                "Error: ImagePullBackOff",
                "kubelet",
                "kind-worker",
                "Warning",
            )
    return rec  # fmt: skip


def managed(manager: str, at: datetime, spec: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {"f:metadata": {"f:labels": {"f:app": {}}}}
    if spec:
        fields["f:spec"] = {"f:replicas": {}, "f:template": {}}
    return {"manager": manager, "operation": "Update", "apiVersion": "apps/v1",
            "time": stamp(at), "fieldsType": "FieldsV1", "fieldsV1": fields}  # fmt: skip


def obj(
    kind: str, name: str, api: str, owner: dict[str, Any] | None, managers: list[dict[str, Any]]
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NAMESPACE, "uid": uid(kind, name),
                            "resourceVersion": str(next(_rv)), "creationTimestamp": stamp(START),
                            "managedFields": managers}  # fmt: skip
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                                    "name": owner["name"], "uid": owner["uid"],
                                    "controller": True, "blockOwnerDeletion": True}]  # fmt: skip
    return {"apiVersion": api, "kind": kind, "metadata": meta}


def objects() -> dict[str, Any]:
    kubectl = managed("kubectl-client-side-apply", START - timedelta(seconds=2), spec=True)
    controller = managed("kube-controller-manager", START, spec=True)
    status = managed("kube-controller-manager", START + timedelta(seconds=11), spec=False)
    items = []
    for deployment, sets in (
        ("web", ("web-7c9f8d6b5", "web-5d8b9c7f4d")),
        ("api", ("api-6f7d8c9b5",)),
    ):
        items.append(obj("Deployment", deployment, "apps/v1", None, [kubectl, status]))
        for rs in sets:
            items.append(
                obj(
                    "ReplicaSet",
                    rs,
                    "apps/v1",
                    ref("Deployment", deployment, "apps/v1"),
                    [controller],
                )
            )
    pods = {"web-5d8b9c7f4d": ("7vlt2", "m4hqz"), "api-6f7d8c9b5": ("x7k2p",)}  # old pods are gone
    for rs, suffixes in pods.items():
        for suffix in suffixes:
            items.append(
                obj("Pod", f"{rs}-{suffix}", "v1", ref("ReplicaSet", rs, "apps/v1"), [controller])
            )
    return {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}  # fmt: skip


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rollout().write(OUT / "rollout.jsonl")
    image_pull_backoff().write(OUT / "image-pull-backoff.jsonl")
    (OUT / "objects.json").write_text(json.dumps(objects(), indent=1) + "\n")


if __name__ == "__main__":
    main()
