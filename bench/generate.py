"""Benchmark data: a realistic hour of Kubernetes Events over many objects, deterministic.

    python bench/generate.py OUT_DIR --events 200000 [--objects 100000] [--seed 1]

writes
- `events.jsonl`: core/v1 watch frames (`{"type": "ADDED"|"MODIFIED", "object": Event}`) in
  arrival order, exactly `--events` lines. Count bumps of a repeating event are MODIFIED
  frames of the same Event (count+1, new lastTimestamp; now and then a jump, as when
  updates are missed). This is what paths 1-3 and the live-watch run read.
- `objects.jsonl`: the live objects (Nodes, Deployments, ReplicaSets, Pods), one JSON
  object a line, with the metadata real ones carry (labels, managedFields,
  ownerReferences), spec and status. Pods deleted during a rollout are not in it (their
  events resolve through the "Deleted pod: NAME" hint, or GET 404 live).
  `--objects N` adds quiet workloads (a Deployment, its ReplicaSet and pods, no events)
  until N objects are live: the memory mode.
- `meta.json`: what was generated (counts by scenario, kind, reason).

The mix, one incident per root, each over less than two minutes somewhere in the hour:
- rollouts (`ScalingReplicaSet` up and down, `SuccessfulCreate`/`SuccessfulDelete`,
  `Scheduled` in the events.k8s.io shape, `Pulling`/`Pulled`/`Created`/`Started`,
  `Killing` of the old pods);
- failing image pulls: `Failed`/`BackOff`/`Pulling` repeating with count bumps;
- crash loops: `BackOff` "Back-off restarting failed container" with count bumps, and the
  restarts' `Pulled`/`Created`/`Started` bumps;
- node failures: kubelet and node-controller Node events (whose `uid` is the node *name*,
  as kubelet reports it), `NodeNotReady` and `TaintManagerEviction` on the node's pods, and
  the replacement pods being created, scheduled and started.

Each root's incident lasts less than `trace_idle` (120 s), so every root has one episode
whatever order its events are processed in, and the number of spans is known in advance:
the benchmark computes it with the pure pipeline and checks every path delivers exactly
that many.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

JSON = dict[str, Any]

HOUR_START = datetime(2025, 3, 14, 9, 0, 0, tzinfo=UTC)
HOUR = 3600.0
NAMESPACES = ("default", "shop", "payments", "search", "ingest", "monitoring", "batch", "auth")
APPS = (
    "api", "web", "cart", "checkout", "worker", "redis", "nginx", "frontend", "billing",
    "search", "indexer", "gateway", "auth", "notifier", "scheduler", "reports", "ledger",
)  # fmt: skip
IMAGES = (
    "ghcr.io/acme/{app}:1.{minor}.{patch}",
    "registry.k8s.io/{app}:v2.{minor}.{patch}",
    "docker.io/library/{app}:1.{minor}",
)
KUBELET_NODE_EVENTS = (
    ("Starting", "Starting kubelet."),
    ("NodeHasSufficientMemory", "Node {node} status is now: NodeHasSufficientMemory"),
    ("NodeHasNoDiskPressure", "Node {node} status is now: NodeHasNoDiskPressure"),
    ("NodeHasSufficientPID", "Node {node} status is now: NodeHasSufficientPID"),
    ("NodeAllocatableEnforced", "Updated Node Allocatable limit across pods"),
    ("NodeReady", "Node {node} status is now: NodeReady"),
)
# An incident lasts at most this long (less than the default trace_idle of 120 s).
INCIDENT_SECONDS = 100.0


def _ts(seconds: float) -> str:
    """RFC 3339, whole seconds (as core/v1 timestamps are)."""
    return (HOUR_START + timedelta(seconds=int(seconds))).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro(seconds: float) -> str:
    """RFC 3339 with microseconds (MicroTime: eventTime)."""
    return (HOUR_START + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _nanos(seconds: float) -> int:
    return int((HOUR_START.timestamp() + seconds) * 1e9)


@dataclass
class Frame:
    """One watch frame; `at` orders arrival."""

    at: float
    seq: int
    type: str
    event: JSON


@dataclass
class Generator:
    rng: random.Random
    frames: list[Frame] = field(default_factory=list)
    objects: list[JSON] = field(default_factory=list)
    nodes: list[JSON] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)
    _seq: int = 0
    _names: set[str] = field(default_factory=set)

    # -- identity ---------------------------------------------------------------------

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def suffix(self, length: int) -> str:
        alphabet = "bcdfghjklmnpqrstvwxz2456789"
        return "".join(self.rng.choice(alphabet) for _ in range(length))

    def template_hash(self) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(9)) + self.suffix(1)

    def unique(self, base: str) -> str:
        name = base
        while name in self._names:
            name = f"{base}-{self.suffix(3)}"
        self._names.add(name)
        return name

    def event_name(self, involved: str, at: float) -> str:
        """`<involved name>.<hex nanoseconds>`, as client-go's recorder names events."""
        while True:
            name = f"{involved}.{_nanos(at) + self.rng.randrange(10**6):x}"
            if name not in self._names:
                self._names.add(name)
                return name

    # -- objects ----------------------------------------------------------------------

    def node(self, index: int) -> JSON:
        name = f"worker-{index:04d}.eu-west-1.compute.internal"
        node: JSON = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "uid": self.uid(),
                "creationTimestamp": _ts(-86400 * 3),
                "labels": {
                    "beta.kubernetes.io/arch": "amd64",
                    "beta.kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "node.kubernetes.io/instance-type": "m6i.2xlarge",
                    "topology.kubernetes.io/region": "eu-west-1",
                    "topology.kubernetes.io/zone": f"eu-west-1{'abc'[index % 3]}",
                },
                "annotations": {
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                },
                "managedFields": [
                    _managed("kubelet", "Update", -86400 * 3, {"f:metadata": {"f:labels": {}}}),
                    _managed("kube-controller-manager", "Update", -3600, {"f:spec": {}}),
                    _managed("kubelet", "Update", -60, {"f:status": {}}, "status"),
                ],
            },
            "spec": {"providerID": f"aws:///eu-west-1a/i-0{self.suffix(16)}"},
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": f"10.0.{index // 250}.{index % 250}"},
                    {"type": "Hostname", "address": name},
                ],
                "allocatable": {"cpu": "7910m", "memory": "31482Mi", "pods": "58"},
                "capacity": {"cpu": "8", "memory": "32386Mi", "pods": "58"},
                "conditions": [
                    _condition(kind, "False", -3600)
                    for kind in ("MemoryPressure", "DiskPressure", "PIDPressure")
                ]
                + [_condition("Ready", "True", -3600)],
                "nodeInfo": {
                    "architecture": "amd64",
                    "containerRuntimeVersion": "containerd://1.7.11",
                    "kernelVersion": "6.1.61-85.141.amzn2023.x86_64",
                    "kubeletVersion": "v1.29.0",
                    "operatingSystem": "linux",
                    "osImage": "Amazon Linux 2023",
                },
                "images": [
                    {"names": [f"registry.k8s.io/pause:3.{n}"], "sizeBytes": 300_000 + n}
                    for n in range(4)
                ],
            },
        }
        self.objects.append(node)
        self.nodes.append(node)
        self.stats["Node"] += 1
        return node

    def deployment(self, namespace: str, app: str, replicas: int, image: str) -> JSON:
        name = self.unique(f"{namespace}/{app}").split("/", 1)[1]
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": self.uid(),
                "generation": 7,
                "creationTimestamp": _ts(-86400 * 20),
                "labels": {"app": name, "app.kubernetes.io/part-of": namespace},
                "annotations": {"deployment.kubernetes.io/revision": "7"},
                "managedFields": [
                    _managed("argocd-controller", "Apply", -86400, {"f:spec": {"f:replicas": {}}}),
                    _managed("kube-controller-manager", "Update", -60, {"f:status": {}}, "status"),
                ],
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                },
                "template": _pod_template(name, image),
            },
            "status": {"observedGeneration": 7, "replicas": replicas, "readyReplicas": replicas},
        }
        self.objects.append(deployment)
        self.stats["Deployment"] += 1
        return deployment

    def replicaset(self, deployment: JSON, replicas: int, image: str) -> JSON:
        meta = deployment["metadata"]
        template_hash = self.template_hash()
        replicaset = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{template_hash}",
                "namespace": meta["namespace"],
                "uid": self.uid(),
                "generation": 1,
                "creationTimestamp": _ts(-3600),
                "labels": {"app": meta["name"], "pod-template-hash": template_hash},
                "annotations": {"deployment.kubernetes.io/revision": "7"},
                "ownerReferences": [_owner(deployment)],
                "managedFields": [
                    _managed("kube-controller-manager", "Update", -3600, {"f:spec": {}}),
                    _managed("kube-controller-manager", "Update", -60, {"f:status": {}}, "status"),
                ],
            },
            "spec": {
                "replicas": replicas,
                "selector": {
                    "matchLabels": {"app": meta["name"], "pod-template-hash": template_hash}
                },
                "template": _pod_template(meta["name"], image),
            },
            "status": {"replicas": replicas, "observedGeneration": 1},
        }
        self.objects.append(replicaset)
        self.stats["ReplicaSet"] += 1
        return replicaset

    def pod(self, replicaset: JSON, node: JSON, image: str, *, live: bool = True) -> JSON:
        meta = replicaset["metadata"]
        name = f"{meta['name']}-{self.suffix(5)}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "generateName": f"{meta['name']}-",
                "namespace": meta["namespace"],
                "uid": self.uid(),
                "creationTimestamp": _ts(-1800),
                "labels": dict(meta["labels"]),
                "ownerReferences": [_owner(replicaset)],
                "managedFields": [
                    _managed("kube-controller-manager", "Update", -1800, {"f:spec": {}}),
                    _managed("kubelet", "Update", -60, {"f:status": {}}, "status"),
                ],
            },
            "spec": {
                **_pod_template(meta["labels"]["app"], image)["spec"],
                "nodeName": node["metadata"]["name"],
                "serviceAccountName": "default",
            },
            "status": {
                "phase": "Running",
                "hostIP": node["status"]["addresses"][0]["address"],
                "podIP": f"10.{self.rng.randrange(1, 250)}.{self.rng.randrange(250)}.7",
                "startTime": _ts(-1800),
                "conditions": [
                    _condition(kind, "True", -1800)
                    for kind in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
                ],
                "containerStatuses": [
                    {
                        "name": "app",
                        "image": image,
                        "imageID": f"{image}@sha256:{self.suffix(20)}",
                        "containerID": f"containerd://{self.suffix(24)}",
                        "ready": True,
                        "restartCount": 0,
                        "started": True,
                        "state": {"running": {"startedAt": _ts(-1790)}},
                    }
                ],
                "qosClass": "Burstable",
            },
        }
        if live:
            self.objects.append(pod)
            self.stats["Pod"] += 1
        return pod

    # -- events -----------------------------------------------------------------------

    def event(
        self,
        at: float,
        involved: JSON,
        reason: str,
        message: str,
        *,
        component: str,
        host: str = "",
        type: str = "Normal",
        field_path: str = "",
        node_uid_is_name: bool = False,
    ) -> JSON:
        """A core/v1 Event as client-go's recorder writes it; ADDED at `at`."""
        meta = involved["metadata"]
        reference: JSON = {
            "apiVersion": involved["apiVersion"],
            "kind": involved["kind"],
            "name": meta["name"],
            "uid": meta["name"] if node_uid_is_name else meta["uid"],
        }
        if meta.get("namespace"):
            reference["namespace"] = meta["namespace"]
        if field_path:
            reference["fieldPath"] = field_path
        namespace = meta.get("namespace") or "default"
        manager = {"kubelet": "kubelet", "node-controller": "kube-controller-manager"}.get(
            component, "kube-controller-manager"
        )
        event: JSON = {
            "apiVersion": "v1",
            "kind": "Event",
            "count": 1,
            "eventTime": None,
            "firstTimestamp": _ts(at),
            "involvedObject": reference,
            "lastTimestamp": _ts(at),
            "message": message,
            "metadata": {
                "creationTimestamp": _ts(at),
                "managedFields": [_managed(manager, "Update", at, _EVENT_FIELDS_V1, absolute=True)],
                "name": self.event_name(meta["name"], at),
                "namespace": namespace,
                "uid": self.uid(),
            },
            "reason": reason,
            "reportingComponent": "",
            "reportingInstance": "",
            "source": {"component": component, **({"host": host} if host else {})},
            "type": type,
        }
        self._emit(at, "ADDED", event)
        self.stats[f"reason:{reason}"] += 1
        return event

    def scheduled(self, at: float, pod: JSON, node: JSON) -> JSON:
        """The scheduler's events.k8s.io recorder: eventTime, no count, empty source."""
        meta = pod["metadata"]
        node_name = node["metadata"]["name"]
        event = {
            "action": "Binding",
            "apiVersion": "v1",
            "kind": "Event",
            "eventTime": _micro(at),
            "firstTimestamp": None,
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "lastTimestamp": None,
            "message": f"Successfully assigned {meta['namespace']}/{meta['name']} to {node_name}",
            "metadata": {
                "creationTimestamp": _ts(at),
                "managedFields": [
                    _managed("kube-scheduler", "Update", at, _SCHEDULER_FIELDS_V1, absolute=True)
                ],
                "name": self.event_name(meta["name"], at),
                "namespace": meta["namespace"],
                "uid": self.uid(),
            },
            "reason": "Scheduled",
            "reportingComponent": "default-scheduler",
            "reportingInstance": f"default-scheduler-{node_name.split('.')[0]}",
            "source": {},
            "type": "Normal",
        }
        self._emit(at, "ADDED", event)
        self.stats["reason:Scheduled"] += 1
        return event

    def repeat(self, start: float, end: float, event: JSON, every: tuple[float, float]) -> None:
        """Bump `event` every `every` seconds from `start` until `end`; sometimes by more
        than one (updates missed, or the recorder's aggregation)."""
        at, current = start, event
        while True:
            at += self.rng.uniform(*every)
            if at >= end:
                return
            by = 1 if self.rng.random() < 0.85 else self.rng.randrange(2, 5)
            current = {**current, "count": current["count"] + by, "lastTimestamp": _ts(at)}
            self._emit(at, "MODIFIED", current)

    def _emit(self, at: float, kind: str, event: JSON) -> None:
        self._seq += 1
        self.frames.append(Frame(at, self._seq, kind, event))

    # -- scenarios --------------------------------------------------------------------

    def image(self, app: str) -> str:
        pattern = self.rng.choice(IMAGES)
        return pattern.format(app=app, minor=self.rng.randrange(30), patch=self.rng.randrange(9))

    def workload(self, replicas: int) -> tuple[JSON, str, str]:
        namespace = self.rng.choice(NAMESPACES)
        app = self.rng.choice(APPS)
        image = self.image(app)
        return self.deployment(namespace, app, replicas, image), namespace, image

    def rollout(self, t0: float) -> None:
        replicas = self.rng.choice((1, 2, 2, 3, 3, 4, 6))
        deployment, _, image = self.workload(replicas)
        old_image = self.image(deployment["metadata"]["labels"]["app"])
        old_rs = self.replicaset(deployment, 0, old_image)
        new_rs = self.replicaset(deployment, replicas, image)
        old_pods = [
            self.pod(old_rs, self.rng.choice(self.nodes), old_image, live=False)
            for _ in range(replicas)
        ]
        at = t0
        self.event(
            at, deployment, "ScalingReplicaSet",
            f"Scaled up replica set {new_rs['metadata']['name']} to {replicas}",
            component="deployment-controller",
        )  # fmt: skip
        for position, old_pod in enumerate(old_pods):
            node = self.rng.choice(self.nodes)
            pod = self.pod(new_rs, node, image)
            at = t0 + 1 + position * self.rng.uniform(4, 10)
            self.event(
                at, new_rs, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}",
                component="replicaset-controller",
            )  # fmt: skip
            self.pod_start(at + 0.02, pod, node, image)
            at += self.rng.uniform(5, 14)
            self.event(
                at, deployment, "ScalingReplicaSet",
                f"Scaled down replica set {old_rs['metadata']['name']} to "
                f"{replicas - position - 1} from {replicas - position}",
                component="deployment-controller",
            )  # fmt: skip
            self.event(
                at + 0.01, old_rs, "SuccessfulDelete",
                f"Deleted pod: {old_pod['metadata']['name']}", component="replicaset-controller",
            )  # fmt: skip
            host = old_pod["spec"]["nodeName"]
            self.event(
                at + 0.03, old_pod, "Killing", "Stopping container app", component="kubelet",
                host=host, field_path="spec.containers{app}",
            )  # fmt: skip
        self.stats["scenario:rollout"] += 1

    def pod_start(self, at: float, pod: JSON, node: JSON, image: str) -> float:
        host = node["metadata"]["name"]
        path = "spec.containers{app}"
        self.scheduled(at, pod, node)
        at += self.rng.uniform(0.3, 1.5)
        self.event(
            at, pod, "Pulling", f'Pulling image "{image}"', component="kubelet", host=host,
            field_path=path,
        )  # fmt: skip
        pull = self.rng.uniform(0.5, 4)
        at += pull
        self.event(
            at, pod, "Pulled",
            f'Successfully pulled image "{image}" in {pull:.3f}s ({pull + 0.2:.3f}s including '
            f"waiting). Image size: {self.rng.randrange(10**7, 10**9)} bytes.",
            component="kubelet", host=host, field_path=path,
        )  # fmt: skip
        at += 0.1
        self.event(at, pod, "Created", "Created container app", component="kubelet", host=host,
                   field_path=path)  # fmt: skip
        at += 0.2
        self.event(at, pod, "Started", "Started container app", component="kubelet", host=host,
                   field_path=path)  # fmt: skip
        return at

    def failing_pull(self, t0: float) -> None:
        replicas = self.rng.choice((1, 1, 2, 3))
        deployment, _, image = self.workload(replicas)
        bad_image = image.rsplit(":", 1)[0] + ":does-not-exist"
        new_rs = self.replicaset(deployment, replicas, bad_image)
        self.event(
            t0, deployment, "ScalingReplicaSet",
            f"Scaled up replica set {new_rs['metadata']['name']} to {replicas}",
            component="deployment-controller",
        )  # fmt: skip
        end = t0 + INCIDENT_SECONDS
        for position in range(replicas):
            node = self.rng.choice(self.nodes)
            pod = self.pod(new_rs, node, bad_image)
            at = t0 + 1 + position
            self.event(
                at, new_rs, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}",
                component="replicaset-controller",
            )  # fmt: skip
            host, path = node["metadata"]["name"], "spec.containers{app}"
            self.scheduled(at + 0.02, pod, node)
            at += 1
            pulling = self.event(at, pod, "Pulling", f'Pulling image "{bad_image}"',
                                 component="kubelet", host=host, field_path=path)  # fmt: skip
            failed = self.event(
                at + 1, pod, "Failed",
                f'Failed to pull image "{bad_image}": rpc error: code = NotFound desc = failed '
                f'to pull and unpack image "{bad_image}": failed to resolve reference '
                f'"{bad_image}": not found',
                component="kubelet", host=host, type="Warning", field_path=path,
            )  # fmt: skip
            err = self.event(at + 1.01, pod, "Failed", "Error: ErrImagePull", component="kubelet",
                             host=host, type="Warning", field_path=path)  # fmt: skip
            backoff = self.event(
                at + 2, pod, "BackOff", f'Back-off pulling image "{bad_image}"',
                component="kubelet", host=host, field_path=path,
            )  # fmt: skip
            pull_backoff = self.event(
                at + 2.01, pod, "Failed", "Error: ImagePullBackOff", component="kubelet",
                host=host, type="Warning", field_path=path,
            )  # fmt: skip
            for repeating in (pulling, failed, err):
                self.repeat(at + 1, end, repeating, (12, 30))
            for repeating in (backoff, pull_backoff):
                self.repeat(at + 2, end, repeating, (5, 15))
        self.stats["scenario:failing_pull"] += 1

    def crash_loop(self, t0: float) -> None:
        deployment, _, image = self.workload(1)
        rs = self.replicaset(deployment, 1, image)
        node = self.rng.choice(self.nodes)
        pod = self.pod(rs, node, image)
        host, path = node["metadata"]["name"], "spec.containers{app}"
        end = t0 + INCIDENT_SECONDS
        pulled = self.event(
            t0, pod, "Pulled", f'Container image "{image}" already present on machine',
            component="kubelet", host=host, field_path=path,
        )  # fmt: skip
        created = self.event(t0 + 0.1, pod, "Created", "Created container app",
                             component="kubelet", host=host, field_path=path)  # fmt: skip
        started = self.event(t0 + 0.3, pod, "Started", "Started container app",
                             component="kubelet", host=host, field_path=path)  # fmt: skip
        backoff = self.event(
            t0 + 2, pod, "BackOff",
            f"Back-off restarting failed container app in pod {pod['metadata']['name']}_"
            f"{pod['metadata']['namespace']}({pod['metadata']['uid']})",
            component="kubelet", host=host, type="Warning", field_path=path,
        )  # fmt: skip
        for repeating in (pulled, created, started):
            self.repeat(t0 + 0.3, end, repeating, (10, 25))
        self.repeat(t0 + 2, end, backoff, (3, 10))
        self.stats["scenario:crash_loop"] += 1

    def node_failure(self, t0: float) -> None:
        node = self.node(len(self.nodes))
        name = node["metadata"]["name"]
        self.event(t0, node, "NodeNotReady", f"Node {name} status is now: NodeNotReady",
                   component="node-controller")  # fmt: skip
        # Workloads that lived on the node: evicted, then replaced elsewhere.
        for _ in range(self.rng.choice((1, 2, 3))):
            replicas = self.rng.choice((1, 2, 3))
            deployment, _, image = self.workload(replicas)
            rs = self.replicaset(deployment, replicas, image)
            for position in range(replicas):
                gone = self.pod(rs, node, image, live=False)
                gone_name = f"{gone['metadata']['namespace']}/{gone['metadata']['name']}"
                at = t0 + 0.5 + position * 0.1
                self.event(at, gone, "NodeNotReady", "Node is not ready", type="Warning",
                           component="node-controller")  # fmt: skip
                self.event(at + 5, gone, "TaintManagerEviction",
                           f"Marking for deletion Pod {gone_name}",
                           component="taint-controller")  # fmt: skip
                self.event(
                    at + 5.2, rs, "SuccessfulDelete", f"Deleted pod: {gone['metadata']['name']}",
                    component="replicaset-controller",
                )  # fmt: skip
                elsewhere = self.rng.choice(self.nodes[:-1])
                replacement = self.pod(rs, elsewhere, image)
                self.event(
                    at + 5.3, rs, "SuccessfulCreate",
                    f"Created pod: {replacement['metadata']['name']}",
                    component="replicaset-controller",
                )  # fmt: skip
                self.pod_start(at + 5.4, replacement, elsewhere, image)
        # The node comes back: kubelet restarts and reports (Node events' uid is the name).
        at = t0 + self.rng.uniform(40, 80)
        for offset, (reason, message) in enumerate(KUBELET_NODE_EVENTS):
            self.event(
                at + offset * 0.2, node, reason, message.format(node=name), component="kubelet",
                host=name, node_uid_is_name=True,
            )  # fmt: skip
        self.event(at + 2, node, "RegisteredNode",
                   f"Node {name} event: Registered Node {name} in Controller",
                   component="node-controller")  # fmt: skip
        self.stats["scenario:node_failure"] += 1

    def quiet_workload(self) -> None:
        """A Deployment, its ReplicaSet and pods that have no events: memory mode filler."""
        replicas = self.rng.choice((1, 2, 3, 4, 5, 6, 8))
        deployment, _, image = self.workload(replicas)
        rs = self.replicaset(deployment, replicas, image)
        for _ in range(replicas):
            self.pod(rs, self.rng.choice(self.nodes), image)


_SCENARIOS = (
    ("rollout", 0.50),
    ("failing_pull", 0.15),
    ("crash_loop", 0.25),
    ("node_failure", 0.10),
)


def _managed(
    manager: str,
    operation: str,
    at: float,
    fields: JSON,
    subresource: str = "",
    *,
    absolute: bool = False,
) -> JSON:
    entry: JSON = {
        "apiVersion": "v1",
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
        "manager": manager,
        "operation": operation,
        "time": _ts(at),
    }
    if subresource:
        entry["subresource"] = subresource
    return entry


_EVENT_FIELDS_V1: JSON = {
    "f:count": {},
    "f:firstTimestamp": {},
    "f:involvedObject": {},
    "f:lastTimestamp": {},
    "f:message": {},
    "f:reason": {},
    "f:reportingComponent": {},
    "f:reportingInstance": {},
    "f:source": {"f:component": {}, "f:host": {}},
    "f:type": {},
}
_SCHEDULER_FIELDS_V1: JSON = {
    "f:action": {},
    "f:eventTime": {},
    "f:note": {},
    "f:reason": {},
    "f:regarding": {},
    "f:reportingController": {},
    "f:reportingInstance": {},
    "f:type": {},
}


def _condition(kind: str, status: str, at: float) -> JSON:
    return {"type": kind, "status": status, "lastTransitionTime": _ts(at)}


def _owner(obj: JSON) -> JSON:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _pod_template(app: str, image: str) -> JSON:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                    "env": [{"name": "LOG_LEVEL", "value": "info"}],
                    "resources": {
                        "limits": {"memory": "512Mi"},
                        "requests": {"cpu": "100m", "memory": "256Mi"},
                    },
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                }
            ],
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "terminationGracePeriodSeconds": 30,
        },
    }


@dataclass
class Dataset:
    directory: Path
    events_path: Path
    objects_path: Path
    frames: int
    distinct_events: int
    objects: int
    meta: JSON


def generate(directory: Path, *, events: int, objects: int = 0, seed: int = 1) -> Dataset:
    """Write the data set (see the module docstring); `events` frames exactly."""
    rng = random.Random(seed)
    gen = Generator(rng)
    for index in range(max(12, events // 400)):
        gen.node(index)
    names = [name for name, _ in _SCENARIOS]
    weights = [weight for _, weight in _SCENARIOS]
    while len(gen.frames) < events:
        scenario = rng.choices(names, weights)[0]
        t0 = rng.uniform(0, HOUR - INCIDENT_SECONDS - 20)
        getattr(gen, scenario)(t0)
    while len(gen.objects) < objects:
        gen.quiet_workload()
    # Arrival order: by time; the frames of the last incident past `events` are dropped
    # (a cut-off that can leave an event with fewer bumps, which is fine).
    frames = sorted(gen.frames, key=lambda frame: (frame.at, frame.seq))[:events]
    directory.mkdir(parents=True, exist_ok=True)
    events_path = directory / "events.jsonl"
    objects_path = directory / "objects.jsonl"
    version = 1000
    distinct: set[str] = set()
    with events_path.open("wb") as out:
        for frame in frames:
            version += 1
            event = frame.event
            event = {**event, "metadata": {**event["metadata"], "resourceVersion": str(version)}}
            distinct.add(event["metadata"]["uid"])
            out.write(orjson.dumps({"type": frame.type, "object": event}) + b"\n")
    with objects_path.open("wb") as out:
        for obj in gen.objects:
            version += 1
            obj["metadata"]["resourceVersion"] = str(version)
            out.write(orjson.dumps(obj) + b"\n")
    kinds = Counter(obj["kind"] for obj in gen.objects)
    meta: JSON = {
        "seed": seed,
        "frames": len(frames),
        "added": sum(frame.type == "ADDED" for frame in frames),
        "modified": sum(frame.type == "MODIFIED" for frame in frames),
        "distinct_events": len(distinct),
        "objects": len(gen.objects),
        "objects_by_kind": dict(sorted(kinds.items())),
        "scenarios": {k[9:]: v for k, v in sorted(gen.stats.items()) if k.startswith("scenario:")},
        "reasons": {k[7:]: v for k, v in sorted(gen.stats.items()) if k.startswith("reason:")},
        "events_bytes": events_path.stat().st_size,
        "objects_bytes": objects_path.stat().st_size,
        "sha256": _digest(events_path, objects_path),
    }
    (directory / "meta.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    return Dataset(
        directory, events_path, objects_path, len(frames), len(distinct), len(gen.objects), meta
    )


def _digest(*paths: Path) -> str:
    hasher = hashlib.sha256()
    for path in paths:
        with path.open("rb") as data:
            for block in iter(lambda: data.read(1 << 20), b""):
                hasher.update(block)
    return hasher.hexdigest()[:16]


def load(directory: Path) -> Dataset:
    meta = orjson.loads((directory / "meta.json").read_bytes())
    return Dataset(
        directory,
        directory / "events.jsonl",
        directory / "objects.jsonl",
        meta["frames"],
        meta["distinct_events"],
        meta["objects"],
        meta,
    )


def watch_frames(path: Path) -> Iterator[tuple[str, JSON]]:
    with path.open("rb") as lines:
        for line in lines:
            frame = orjson.loads(line)
            yield frame["type"], frame["object"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--objects", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    dataset = generate(args.directory, events=args.events, objects=args.objects, seed=args.seed)
    print(orjson.dumps(dataset.meta, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
