"""Raw Kubernetes JSON in, plain model out. Pydantic checks the shape at this one edge.

Both Event APIs map to one `EventState`: core/v1 (`involvedObject`, `message`, `source`,
`firstTimestamp`, `count`) and events.k8s.io/v1 (`regarding`, `note`, `deprecatedSource`,
`deprecatedFirstTimestamp`, `deprecatedCount`, `series`). Real events have null
timestamps, empty `source`, absent `count`: every field is optional except what names
the event and what it is about.

Well-formed input takes the fast path (fast_path.py), which gives exactly what the
models here would; they judge whatever it is unsure of.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from eventtrace.core.model import EventState, KubeObject, ObjectRef, OwnerRef, Rejected
from eventtrace.source.fast_path import (
    CLUSTER_SCOPED,
    EPOCH,
    LATEST_NS,
    TRUNCATED,
    bounded,
    fast_event,
    fast_object,
)
from eventtrace.source.shapes import EventShape


def _span_time(moment: datetime | None) -> datetime | None:
    """An event's time as unset (null) where no span can have it: Kubernetes' zero time
    (0001-01-01T00:00:00Z, which some clients write for "unset"), anything before 1970
    or after 2262. The other times of the event are used instead, as for a null."""
    if moment is None or 0 <= to_ns(moment) <= LATEST_NS:
        return moment
    return None


_Time = Annotated[datetime | None, AfterValidator(_span_time)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Meta(_Input):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    resourceVersion: str = ""
    creationTimestamp: _Time = None


class _Ref(_Input):
    kind: str = Field(min_length=1)
    name: str = Field(min_length=1)
    namespace: str = ""
    uid: str = ""
    apiVersion: str = ""
    fieldPath: str = ""


class _Source(_Input):
    component: str = ""
    host: str = ""


class _Series(_Input):
    count: int = Field(ge=0)
    lastObservedTime: _Time = None


def _either(core: str, events_v1: str) -> Any:
    return Field(None, validation_alias=AliasChoices(core, events_v1))


class _Event(_Input):
    metadata: _Meta
    involved: _Ref = Field(validation_alias=AliasChoices("involvedObject", "regarding"))
    reason: str = ""
    message: str | None = _either("message", "note")
    type: str = "Normal"
    source: _Source | None = _either("source", "deprecatedSource")
    firstTimestamp: _Time = _either("firstTimestamp", "deprecatedFirstTimestamp")
    lastTimestamp: _Time = _either("lastTimestamp", "deprecatedLastTimestamp")
    count: int | None = _either("count", "deprecatedCount")
    eventTime: _Time = None
    series: _Series | None = None
    action: str | None = None
    reportingComponent: str | None = _either("reportingComponent", "reportingController")
    reportingInstance: str | None = None


class _OwnerReference(_Input):
    kind: str = Field(min_length=1)
    name: str = Field(min_length=1)
    uid: str = ""
    apiVersion: str = ""
    controller: bool | None = None


class _ManagedFields(_Input):
    manager: str = ""
    time: datetime | None = None
    fieldsV1: dict[str, Any] | None = None


class _ObjectMeta(_Meta):
    ownerReferences: list[_OwnerReference] = []
    managedFields: list[_ManagedFields] = []


class _Object(_Input):
    kind: str = Field(min_length=1)
    apiVersion: str = ""
    metadata: _ObjectMeta


def to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch, exactly (no float rounding of microseconds)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def parse_event(raw: Any, where: str, *, max_message_bytes: int = 4096) -> EventState | Rejected:
    """One Event (either API) as the model, or why it cannot be used: from a dict, or from
    its shape when it was read straight from JSON (a watch frame, a list item: frames.py)."""
    if isinstance(raw, EventShape):
        shape = raw
    elif isinstance(raw, dict):
        try:
            shape = msgspec.convert(raw, EventShape)
        except msgspec.ValidationError:
            return parse_event_strictly(raw, where, max_message_bytes=max_message_bytes)
    else:
        return Rejected(
            where, f"expected an Event object, got {type(raw).__name__}", "not_an_object"
        )
    fast = fast_event(shape, max_message_bytes)
    if fast is not None:
        return fast
    if shape is raw:
        # What the models must judge: the shape holds every field they read, as it came
        # (fields absent stay absent), so they see what they would have seen in the input.
        raw = msgspec.to_builtins(shape)
    return parse_event_strictly(raw, where, max_message_bytes=max_message_bytes)


def parse_event_strictly(
    raw: dict[str, Any], where: str, *, max_message_bytes: int = 4096
) -> EventState | Rejected:
    """The same through pydantic alone: the judge of anything the fast path is unsure of,
    and the reference it is tested against."""
    try:
        event = _Event.model_validate(raw)
    except ValidationError as error:
        return Rejected(where, f"event {_event_name(raw)}: {_first_error(error)}", "schema")
    meta = event.metadata
    if not meta.name and not meta.uid:
        return Rejected(where, "event without metadata.name or metadata.uid", "no_name")

    first = event.eventTime or event.firstTimestamp or event.lastTimestamp
    last = (event.series.lastObservedTime if event.series else None) or event.lastTimestamp
    first = first or last or meta.creationTimestamp
    if first is None:
        return Rejected(
            where,
            f"event {meta.namespace}/{meta.name}: no usable time (eventTime, "
            "firstTimestamp, lastTimestamp and creationTimestamp are all null, or before "
            "1970 or after 2262)",
            "no_time",
        )
    first_ns = to_ns(first)
    last_ns = max(first_ns, to_ns(last)) if last is not None else first_ns

    if event.series is not None and event.series.count > 0:
        count = event.series.count
    else:
        count = event.count if event.count and event.count > 0 else 1

    source = event.source or _Source()
    involved = event.involved
    return EventState(
        uid=meta.uid or f"{meta.namespace}/{meta.name}",
        name=meta.name,
        namespace=meta.namespace,
        reason=event.reason or "Unknown",
        message=bounded(event.message or "", max_message_bytes),
        type=event.type or "Normal",
        involved=ObjectRef(
            kind=involved.kind,
            name=involved.name,
            namespace=involved.namespace,
            uid=involved.uid,
            api_version=involved.apiVersion,
        ),
        count=count,
        first_ns=first_ns,
        last_ns=last_ns,
        field_path=involved.fieldPath,
        component=source.component or event.reportingComponent or "",
        instance=event.reportingInstance or source.host,
        host=source.host,
        action=event.action or "",
        resource_version=meta.resourceVersion,
    )


def message_was_truncated(state: EventState) -> bool:
    return state.message.endswith(TRUNCATED)


def parse_object(raw: Any, where: str, *, kind: str = "") -> KubeObject | Rejected:
    """An object (from a dump or a watch) reduced to identity, owners and spec manager."""
    if not isinstance(raw, dict):
        return Rejected(where, f"expected an object, got {type(raw).__name__}", "not_an_object")
    if kind and not raw.get("kind"):
        raw = {**raw, "kind": kind}  # list items carry no kind
    fast = fast_object(raw)
    if fast is not None:
        return fast
    return parse_object_strictly(raw, where)


def parse_object_strictly(raw: dict[str, Any], where: str) -> KubeObject | Rejected:
    """The same through pydantic alone (see `parse_event_strictly`)."""
    try:
        obj = _Object.model_validate(raw)
    except ValidationError as error:
        return Rejected(where, f"object {_object_name(raw)}: {_first_error(error)}", "schema")
    meta = obj.metadata
    if not meta.name:
        return Rejected(where, f"{obj.kind} without metadata.name", "no_name")
    return KubeObject(
        ref=ObjectRef(
            kind=obj.kind,
            name=meta.name,
            namespace=meta.namespace,
            uid=meta.uid,
            api_version=obj.apiVersion,
        ),
        owners=tuple(
            OwnerRef(
                ObjectRef(
                    kind=owner.kind,
                    name=owner.name,
                    # Owners live in the object's namespace; cluster-scoped ones ignore it.
                    namespace=meta.namespace if owner.kind not in CLUSTER_SCOPED else "",
                    uid=owner.uid,
                    api_version=owner.apiVersion,
                ),
                controller=bool(owner.controller),
            )
            for owner in meta.ownerReferences
        ),
        spec_manager=_spec_manager(meta.managedFields),
        resource_version=meta.resourceVersion,
    )


def _spec_manager(entries: list[_ManagedFields]) -> str:
    """The field manager of the newest entry that touches the spec (status-only ones don't)."""
    best: tuple[datetime, int] | None = None
    manager = ""
    for position, entry in enumerate(entries):
        if not entry.fieldsV1 or "f:spec" not in entry.fieldsV1 or not entry.manager:
            continue
        rank = (entry.time or EPOCH, position)
        if best is None or rank > best:
            best, manager = rank, entry.manager
    return manager


def _event_name(raw: dict[str, Any]) -> str:
    meta = raw.get("metadata")
    if isinstance(meta, dict) and meta.get("name"):
        namespace = meta.get("namespace") or ""
        return f"{namespace}/{meta['name']}" if namespace else str(meta["name"])
    return "(unnamed)"


def _object_name(raw: dict[str, Any]) -> str:
    return f"{raw.get('kind') or 'object'} {_event_name(raw)}"


def _first_error(error: ValidationError) -> str:
    item = error.errors()[0]
    path = ".".join(str(part) for part in item["loc"])
    if item["type"] == "missing":
        return f"{path} is missing"
    got = item.get("input")
    shown = repr(got) if not isinstance(got, dict | list) else type(got).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{path}: {item['msg'].removeprefix('Value error, ')} (got {shown})"
