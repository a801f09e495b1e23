"""What a span looks like: names, times, status, resource and attributes (DESIGN §1).

Episodes (episodes.py) decide which spans there are and where they hang; this module
turns an occurrence or an object into the span itself.
"""

from __future__ import annotations

import time
from functools import lru_cache

from eventtrace.core.model import (
    AttributeValue,
    ObjectRef,
    Occurrence,
    Span,
    SpanKind,
    SpanStatus,
)
from eventtrace.core.owners import Link

FALLBACK_SERVICE = "kubernetes"

# Kinds with an OpenTelemetry semantic-convention pair (k8s.<kind>.name / .uid).
_SEMCONV = {
    "Pod": "k8s.pod",
    "ReplicaSet": "k8s.replicaset",
    "Deployment": "k8s.deployment",
    "StatefulSet": "k8s.statefulset",
    "DaemonSet": "k8s.daemonset",
    "Job": "k8s.job",
    "CronJob": "k8s.cronjob",
    "Node": "k8s.node",
    "Namespace": "k8s.namespace",
}

Resource = tuple[tuple[str, AttributeValue], ...]
Attributes = dict[str, AttributeValue]


def event_span(
    occurrence: Occurrence,
    *,
    trace_id: str,
    span_id: str,
    parent_id: str,
    involved: Link,
    cluster: str,
) -> Span:
    """The span of one occurrence (or of several, after a count jump)."""
    event = occurrence.event
    warning = event.is_warning
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        name=event.reason,
        kind=SpanKind.EVENT,
        start_ns=occurrence.start_ns,
        end_ns=max(occurrence.start_ns, occurrence.end_ns),
        status=SpanStatus.ERROR if warning else SpanStatus.UNSET,
        status_message=event.message if warning else "",
        resource=resource(event.component or FALLBACK_SERVICE, event.instance, cluster),
        attributes=_event_attributes(occurrence, involved),
    )


def object_span(
    link: Link,
    *,
    trace_id: str,
    span_id: str,
    parent_id: str | None,
    start_ns: int,
    end_ns: int,
    service: str,
    instance: str,
    cluster: str,
) -> Span:
    """The span of one object in one trace, covering its subtree."""
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        name=link.ref.display_name,
        kind=SpanKind.OBJECT,
        start_ns=start_ns,
        end_ns=max(start_ns, end_ns),
        status=SpanStatus.UNSET,
        status_message="",
        resource=resource(service or FALLBACK_SERVICE, instance, cluster),
        attributes=_object_attributes(link),
    )


@lru_cache(maxsize=4096)  # a handful of components and nodes: one tuple each, shared
def resource(service: str, instance: str, cluster: str) -> Resource:
    if instance:
        return (("k8s.cluster.name", cluster), ("service.name", service),
                ("service.instance.id", instance))  # fmt: skip
    return (("k8s.cluster.name", cluster), ("service.name", service))


def _event_attributes(occurrence: Occurrence, involved: Link) -> Attributes:
    event = occurrence.event
    ref = event.involved
    uid = _uid(involved.ref, ref)
    attributes: dict[str, AttributeValue] = {
        "k8s.event.reason": event.reason,
        "k8s.event.message": event.message,
        "k8s.event.type": event.type,
        "k8s.event.count": event.count,
        "k8s.event.uid": event.uid,
        "k8s.event.name": event.name,
        "k8s.event.start_time": rfc3339(event.first_ns),
        "eventtrace.occurrences": occurrence.occurrences,
        "k8s.object.kind": ref.kind,
        "k8s.object.name": ref.name,
        "k8s.object.uid": uid,
        "k8s.object.api_version": ref.api_version,
        "k8s.object.fieldpath": event.field_path,
        "k8s.event.action": event.action,
        "k8s.node.name": event.host,
        "k8s.namespace.name": ref.namespace,
    }
    return _without_empty(_with_semconv(attributes, ref.kind, ref.name, uid))


def _object_attributes(link: Link) -> Attributes:
    ref = link.ref
    uid = _uid(ref, ref)
    attributes: dict[str, AttributeValue] = {
        "k8s.object.kind": ref.kind,
        "k8s.object.name": ref.name,
        "k8s.object.uid": uid,
        "k8s.object.api_version": ref.api_version,
        "k8s.namespace.name": ref.namespace,
        "eventtrace.object.unresolved": True if link.known is None else "",
    }
    return _without_empty(_with_semconv(attributes, ref.kind, ref.name, uid))


def _with_semconv(
    attributes: dict[str, AttributeValue], kind: str, name: str, uid: str
) -> dict[str, AttributeValue]:
    """The kind's semantic-convention pair, which wins where it names the same key
    (k8s.node.name of a Node, k8s.namespace.name of a Namespace)."""
    prefix = _SEMCONV.get(kind)
    if prefix is not None:
        attributes[f"{prefix}.name"] = name
        attributes[f"{prefix}.uid"] = uid
    return attributes


def _without_empty(attributes: dict[str, AttributeValue]) -> Attributes:
    """Without empty strings, in the order written above (the semantic-convention pair
    last): one order for every span of a kind, so the same span gives the same bytes."""
    return {key: value for key, value in attributes.items() if value != ""}


def rfc3339(ns: int) -> str:
    """`2021-02-17T14:21:02Z`, with as many fraction digits as the time has."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    digits = f".{fraction:09d}".rstrip("0") if fraction else ""
    return _second(seconds) + digits + "Z"


@lru_cache(maxsize=1024)  # events come many to a second
def _second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def _uid(resolved: ObjectRef, reported: ObjectRef) -> str:
    """The object's real uid where known. kubelet reports a Node's name as its uid: that
    is no uid, so leave it out rather than mislead."""
    uid = resolved.uid or reported.uid
    return "" if uid == reported.name else uid
