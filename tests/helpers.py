"""Small builders for test input in the real JSON shapes, and a tree view of spans."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eventtrace.core.model import Span

FIXTURES = Path(__file__).resolve().parent / "fixtures"
KIND_CAPTURE = FIXTURES / "real" / "kspan-deployment-2-pods.yaml"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def flat(pieces: Iterable[list[Span]]) -> list[Span]:
    """The spans of a lazy release, drain or close, in order."""
    return [span for piece in pieces for span in piece]


def uid_of(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)))


def stamp(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def core_event(
    name: str,
    involved: dict[str, Any],
    reason: str,
    message: str,
    *,
    at: float = 0,
    last: float | None = None,
    count: int = 1,
    component: str = "kubelet",
    host: str = "",
    type: str = "Normal",
    namespace: str = "default",
) -> dict[str, Any]:
    """A core/v1 Event as the legacy recorder writes it."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace, "uid": uid_of("event", name)},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "source": {"component": component, **({"host": host} if host else {})},
        "firstTimestamp": stamp(at),
        "lastTimestamp": stamp(at if last is None else last),
        "count": count,
        "type": type,
        "eventTime": None,
        "reportingComponent": "",
        "reportingInstance": "",
    }


def ref(kind: str, name: str, namespace: str = "default", api: str = "v1") -> dict[str, Any]:
    return {
        "kind": kind,
        "name": name,
        "namespace": namespace,
        "uid": uid_of(kind, name),
        "apiVersion": api,
    }


def kube_object(
    kind: str,
    name: str,
    owner: dict[str, Any] | None = None,
    api: str = "v1",
    namespace: str = "default",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": uid_of(kind, name), "resourceVersion": "1"}
    if namespace:
        meta["namespace"] = namespace
    if owner is not None:
        meta["ownerReferences"] = [
            {**{k: owner[k] for k in ("kind", "name", "uid", "apiVersion")}, "controller": True}
        ]
    return {"kind": kind, "apiVersion": api, "metadata": meta}


def tree(spans: list[Span]) -> list[Any]:
    """Spans as nested (name, service, [children]) lists, children in start order."""
    children: dict[str | None, list[Span]] = defaultdict(list)
    for span in spans:
        children[span.parent_id].append(span)

    def build(parent: str | None) -> list[Any]:
        kids = sorted(children[parent], key=lambda s: (s.start_ns, s.name, s.span_id))
        return [(kid.name, kid.service_name, build(kid.span_id)) for kid in kids]

    return build(None)
