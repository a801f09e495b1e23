"""Events and objects as read (schema.py) to the plain model, or the reason they are unusable.

`parse_event` and `parse_object` take a dict (a file's record, a watch's plain JSON), or
for events the struct frames.py decoded from a watch frame or a list page. What is wrong
with an input is said with where it came from (file:line, "watch"), which event or
object, and which field: `events.json:7: event shop/web.1: count = "many": expected int
| null, got str`. Each `Rejected` has a category, a metric label: schema, no_time,
not_an_object, no_name.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson

from eventtrace.core.model import EventState, KubeObject, ObjectRef, OwnerRef, Rejected
from eventtrace.core.occurrences import first_occurrence_ns
from eventtrace.source.schema import Event, ManagedFieldsEntry, Object, TopFields

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_intern = sys.intern
# A mirror pod's annotation naming its static pod, whose events carry it as their uid.
MIRROR_CONFIG_HASH = "kubernetes.io/config.hash"
# The kind of an object the API server sent as metadata only (frames.METADATA): what it
# is, the request said.
PARTIAL = "PartialObjectMetadata"
_MICROSECOND = timedelta(microseconds=1)
TRUNCATED = " …[truncated]"
# The latest time a span can have: OTLP carries nanoseconds since 1970 in 64 bits, and
# backends written in Go (Jaeger, the Collector) turn them into times as signed: 2262-04-11.
LATEST_NS = 2**63 - 1
# Kinds without a namespace: their owners' references name none either.
CLUSTER_SCOPED = frozenset(
    {
        "Node",
        "Namespace",
        "PersistentVolume",
        "StorageClass",
        "ClusterRole",
        "CustomResourceDefinition",
    }
)


def parse_event(raw: Any, where: str, *, max_message_bytes: int = 4096) -> EventState | Rejected:
    """One Event (either API) as the model, or why it cannot be used. A `Rejected` (what
    frames.py makes of a list item that does not fit the schema) is returned as it is,
    so the caller counts it as it counts any other."""
    if isinstance(raw, dict):
        try:
            raw = msgspec.convert(raw, Event, strict=False)
        except msgspec.ValidationError as error:
            return rejected_event(raw, where, error)
    elif isinstance(raw, Rejected):
        return raw
    elif not isinstance(raw, Event):
        return Rejected(
            where, f"expected an Event object, got {type(raw).__name__}", "not_an_object"
        )
    return _event_state(raw, where, max_message_bytes)


def _event_state(event: Event, where: str, max_message_bytes: int) -> EventState | Rejected:
    meta = event.metadata
    involved = event.involvedObject or event.regarding
    if involved is None:
        missing = "involvedObject is missing (or regarding, in events.k8s.io/v1)"
        return Rejected(where, f"event {_name(meta.namespace, meta.name)}: {missing}")
    if not meta.name and not meta.uid:
        return Rejected(where, "event without metadata.name or metadata.uid", "no_name")

    series = event.series
    created = _span_time(meta.creationTimestamp)
    first_time = _span_time(event.firstTimestamp or event.deprecatedFirstTimestamp)
    last_time = _span_time(event.lastTimestamp or event.deprecatedLastTimestamp)
    series_last = _span_time(series.lastObservedTime) if series else None
    last = _first_set(series_last, last_time)
    first = _first_set(_span_time(event.eventTime), first_time, last_time, last, created)
    if first is None:
        return Rejected(
            where,
            f"event {_name(meta.namespace, meta.name)}: no usable time (eventTime, "
            "firstTimestamp, lastTimestamp and creationTimestamp are all null, or before "
            "1970 or after 2262)",
            "no_time",
        )
    first = first_occurrence_ns(meta.name, first)

    if series is not None and series.count > 0:
        count = series.count
    else:
        count = max(event.count or event.deprecatedCount or 1, 1)

    source = event.source or event.deprecatedSource
    host = _intern(source.host) if source else ""
    # Interned: what many events share (a namespace, a reason, a component, a kind) is
    # then one string, not one per event held for hours.
    return EventState(
        uid=meta.uid or f"{meta.namespace}/{meta.name}",
        name=meta.name,
        namespace=_intern(meta.namespace),
        reason=_intern(event.reason or "Unknown"),
        message=bounded(event.message or event.note or "", max_message_bytes),
        type=_intern(event.type or "Normal"),
        # (The pipeline shares the object's own reference where it knows the object.)
        involved=ObjectRef(
            kind=_intern(involved.kind),
            name=involved.name,
            namespace=_intern(involved.namespace),
            uid=involved.uid,
            api_version=_intern(involved.apiVersion),
        ),
        count=count,
        first_ns=first,
        last_ns=first if last is None else max(first, last),
        field_path=_intern(involved.fieldPath),
        component=_intern(
            (source.component if source else "")
            or event.reportingComponent
            or event.reportingController
            or ""
        ),
        instance=_intern(event.reportingInstance or host),
        host=host,
        action=_intern(event.action or ""),
        resource_version=meta.resourceVersion,
    )


def _span_time(moment: datetime | None) -> int | None:
    """A time as nanoseconds, or None where no span can have it: Kubernetes' zero time
    (0001-01-01T00:00:00Z, which some clients write for "unset"), anything before 1970
    or after 2262. The event's other times are used instead, as for a null."""
    if moment is None:
        return None
    nanoseconds = to_ns(moment)
    return nanoseconds if 0 <= nanoseconds <= LATEST_NS else None


def _first_set(*times: int | None) -> int | None:
    for time in times:
        if time is not None:
            return time
    return None


def to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch, exactly (no float rounding of microseconds). A time
    without a zone is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // _MICROSECOND * 1_000


def bounded(message: str, limit: int) -> str:
    """The message, cut to `limit` bytes of UTF-8 (and marked as cut) if it is longer."""
    data = message.encode()
    if len(data) <= limit:
        return message
    return data[:limit].decode(errors="ignore") + TRUNCATED


def message_was_truncated(state: EventState) -> bool:
    return state.message.endswith(TRUNCATED)


def parse_object(
    raw: Any, where: str, *, kind: str = "", api_version: str = ""
) -> KubeObject | Rejected:
    """An object reduced to identity, owners and spec manager: from a dict (a dump, a
    GET), or decoded straight from a watch frame or list page (frames.py). `kind` and
    `api_version` are the list's, for list items, which carry neither, and for objects
    asked for as metadata only, which carry those of `PartialObjectMetadata`."""
    if isinstance(raw, Object):
        obj = raw
    elif isinstance(raw, dict):
        try:  # through the bytes: the one way into the schema (see ManagedFieldsEntry)
            obj = _objects.decode(orjson.dumps(raw))
        except msgspec.ValidationError as error:
            name = f"{raw.get('kind') or kind or 'object'} {_name_in(raw)}"
            return Rejected(where, f"{name}: {_problem(error, raw)}", "schema")
        except (msgspec.DecodeError, orjson.JSONEncodeError) as error:
            return Rejected(where, f"object {_name_in(raw)}: {error}", "schema")
    else:
        return Rejected(where, f"expected an object, got {type(raw).__name__}", "not_an_object")
    if obj.kind != PARTIAL:
        kind, api_version = obj.kind or kind, obj.apiVersion or api_version
    if kind == PARTIAL:  # a dump of metadata only (`kubectl get --raw` with as=...)
        name = obj.metadata.name or "(unnamed)"
        return Rejected(where, f"object {name}: metadata only, its kind is not said")
    if not kind:
        return Rejected(where, f"object {obj.metadata.name or '(unnamed)'}: kind is missing")
    meta = obj.metadata
    if not meta.name:
        return Rejected(where, f"{kind} without metadata.name", "no_name")
    namespace = _intern(meta.namespace)
    return KubeObject(
        ref=ObjectRef(
            kind=_intern(kind),
            name=meta.name,  # its own: no other object shares it
            namespace=namespace,
            uid=meta.uid,
            api_version=_intern(api_version),
        ),
        owners=tuple(
            OwnerRef(
                ObjectRef(
                    kind=_intern(owner.kind),
                    name=_intern(owner.name),  # shared with its siblings, and the owner
                    # Owners live in the object's namespace; cluster-scoped ones ignore it.
                    namespace="" if owner.kind in CLUSTER_SCOPED else namespace,
                    uid=_intern(owner.uid),
                    api_version=_intern(owner.apiVersion),
                ),
                controller=bool(owner.controller),
            )
            for owner in meta.ownerReferences
        ),
        spec_manager=_intern(_spec_manager(meta.managedFields)),
        resource_version=meta.resourceVersion,
        config_hash=(meta.annotations or {}).get(MIRROR_CONFIG_HASH, ""),
    )


def _spec_manager(entries: list[ManagedFieldsEntry]) -> str:
    """The manager of the newest entry that touches the spec (status-only ones don't); of
    entries as new, the last."""
    touching = [
        (to_ns(entry.time) if entry.time else 0, position, entry.manager)
        for position, entry in enumerate(entries)
        if entry.manager and isinstance(entry.fieldsV1, TopFields) and entry.fieldsV1.spec
    ]
    return max(touching)[2] if touching else ""


_objects = msgspec.json.Decoder(Object, strict=False)


def rejected_event(raw: Any, where: str, error: msgspec.ValidationError) -> Rejected:
    """An event that does not fit the schema, named, with what is wrong: `raw` is the
    event as plain JSON, `error` what msgspec said of it."""
    if not isinstance(raw, dict):
        return Rejected(
            where, f"expected an Event object, got {type(raw).__name__}", "not_an_object"
        )
    return Rejected(where, f"event {_name_in(raw)}: {_problem(error, raw)}", "schema")


def _name(namespace: Any, name: Any) -> str:
    """`namespace/name`, or `name` where there is no namespace: an input in messages."""
    if not isinstance(name, str) or not name:
        return "(unnamed)"
    return f"{namespace}/{name}" if isinstance(namespace, str) and namespace else name


def _name_in(raw: dict[str, Any]) -> str:
    """The same from an input's metadata, however malformed the rest."""
    meta = raw.get("metadata")
    if not isinstance(meta, dict):
        return "(unnamed)"
    return _name(meta.get("namespace"), meta.get("name"))


# msgspec's "... - at `$.involvedObject.name`"; its path steps: `.key`, `[index]`.
_WHERE = re.compile(r"(?P<problem>.*?)(?: - at `\$\.?(?P<path>.*)`)?")
_MISSING = re.compile(r"Object missing required field `(?P<field>.*)`")
_STEP = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


def _problem(error: msgspec.ValidationError, raw: dict[str, Any]) -> str:
    """msgspec's error in words: `involvedObject.name is missing`, `count = "many":
    expected int | null, got str`. The value is shown where it is short and scalar."""
    said = _WHERE.fullmatch(str(error))
    assert said is not None  # every text matches
    problem, path = said["problem"].strip(), said["path"] or ""
    missing = _MISSING.fullmatch(problem)
    if missing:
        return f"{path}.{missing['field']} is missing" if path else f"{missing['field']} is missing"
    problem = problem.replace("`", "")
    problem = problem[:1].lower() + problem[1:]
    shown = _shown(raw, path)
    if not path:
        return problem
    return f"{path} = {shown}: {problem}" if shown else f"{path}: {problem}"


def _shown(raw: Any, path: str) -> str:
    """The JSON text of the value at `path`, if it is short and not an object or array."""
    if "[...]" in path:  # a key of a dict: not one of ours
        return ""
    value = raw
    for key, index in _STEP.findall(path):
        if key and isinstance(value, dict) and key in value:
            value = value[key]
        elif index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        else:
            return ""
    if isinstance(value, dict | list):
        return ""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."
