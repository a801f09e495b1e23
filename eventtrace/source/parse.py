"""Raw Kubernetes JSON in, plain model out. Pydantic checks the shape at this one edge.

Both Event APIs map to one `EventState`: core/v1 (`involvedObject`, `message`, `source`,
`firstTimestamp`, `count`) and events.k8s.io/v1 (`regarding`, `note`, `deprecatedSource`,
`deprecatedFirstTimestamp`, `deprecatedCount`, `series`). Real events have null
timestamps, empty `source`, absent `count`: every field is optional except what names
the event and what it is about.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from eventtrace.model import EventState, KubeObject, ObjectRef, OwnerRef, Rejected

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TRUNCATED = " …[truncated]"


class _Input(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Meta(_Input):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    resourceVersion: str = ""
    creationTimestamp: datetime | None = None


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
    lastObservedTime: datetime | None = None


def _either(core: str, events_v1: str) -> Any:
    return Field(None, validation_alias=AliasChoices(core, events_v1))


class _Event(_Input):
    metadata: _Meta
    involved: _Ref = Field(validation_alias=AliasChoices("involvedObject", "regarding"))
    reason: str = ""
    message: str | None = _either("message", "note")
    type: str = "Normal"
    source: _Source | None = _either("source", "deprecatedSource")
    firstTimestamp: datetime | None = _either("firstTimestamp", "deprecatedFirstTimestamp")
    lastTimestamp: datetime | None = _either("lastTimestamp", "deprecatedLastTimestamp")
    count: int | None = _either("count", "deprecatedCount")
    eventTime: datetime | None = None
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
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def parse_event(raw: Any, where: str, *, max_message_bytes: int = 4096) -> EventState | Rejected:
    """One Event (either API) as the model, or why it cannot be used."""
    if not isinstance(raw, dict):
        return Rejected(
            where, f"expected an Event object, got {type(raw).__name__}", "not_an_object"
        )
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
            f"event {meta.namespace}/{meta.name}: no time (eventTime, firstTimestamp, "
            "lastTimestamp and creationTimestamp are all null)",
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
        message=_bounded(event.message or "", max_message_bytes),
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
    return state.message.endswith(_TRUNCATED)


def parse_object(raw: Any, where: str, *, kind: str = "") -> KubeObject | Rejected:
    """An object (from a dump or a watch) reduced to identity, owners and spec manager."""
    if not isinstance(raw, dict):
        return Rejected(where, f"expected an object, got {type(raw).__name__}", "not_an_object")
    if kind and not raw.get("kind"):
        raw = {**raw, "kind": kind}  # list items carry no kind
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


def _spec_manager(entries: list[_ManagedFields]) -> str:
    """The field manager of the newest entry that touches the spec (status-only ones don't)."""
    best: tuple[datetime, int] | None = None
    manager = ""
    for position, entry in enumerate(entries):
        if not entry.fieldsV1 or "f:spec" not in entry.fieldsV1 or not entry.manager:
            continue
        rank = (entry.time or _EPOCH, position)
        if best is None or rank > best:
            best, manager = rank, entry.manager
    return manager


def _bounded(message: str, limit: int) -> str:
    data = message.encode("utf-8")
    if len(data) <= limit:
        return message
    return data[:limit].decode("utf-8", errors="ignore") + _TRUNCATED


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
