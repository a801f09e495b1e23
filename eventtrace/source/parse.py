"""Raw Kubernetes JSON in, plain model out. Pydantic checks the shape at this one edge.

Both Event APIs map to one `EventState`: core/v1 (`involvedObject`, `message`, `source`,
`firstTimestamp`, `count`) and events.k8s.io/v1 (`regarding`, `note`, `deprecatedSource`,
`deprecatedFirstTimestamp`, `deprecatedCount`, `series`). Real events have null
timestamps, empty `source`, absent `count`: every field is optional except what names
the event and what it is about.
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType
from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from eventtrace.model import EventState, KubeObject, ObjectRef, OwnerRef, Rejected

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TRUNCATED = " …[truncated]"
# The latest time a span can have: OTLP carries nanoseconds since 1970 in 64 bits, and
# backends written in Go (Jaeger, the Collector) turn them into times as signed: 2262-04-11.
_LATEST_NS = 2**63 - 1


def _span_time(moment: datetime | None) -> datetime | None:
    """An event's time as unset (null) where no span can have it: Kubernetes' zero time
    (0001-01-01T00:00:00Z, which some clients write for "unset"), anything before 1970
    or after 2262. The other times of the event are used instead, as for a null."""
    if moment is None or 0 <= to_ns(moment) <= _LATEST_NS:
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
    delta = moment - _EPOCH
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
    fast = _fast_event(shape, max_message_bytes)
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
    fast = _fast_object(raw)
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
    if len(message) <= limit and message.isascii():
        return message  # one byte a character
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


# -- the fast path ------------------------------------------------------------------------
#
# Pydantic above is the definition; it costs more than everything else an event goes
# through. The functions below read the common, well-formed shape and return exactly what
# the models would give: events from `EventShape`s (msgspec checks the types, from the
# JSON bytes or from a dict), objects directly from the dicts. Anything they are not sure
# about (a wrong type, an odd timestamp, a missing field) returns None, and the models
# decide: so errors and their messages, and every lax conversion pydantic makes, stay the
# models' own.


class _Unsure(Exception):
    """The fast path cannot vouch for this input: let pydantic decide."""


_UNSURE = _Unsure()
_EPOCH_ORDINAL = _EPOCH.toordinal()
_intern = sys.intern
# RFC 3339 text → nanoseconds, for the timestamps seen lately (many events share a second).
_TIMES: dict[str, int] = {}
_TIMES_LIMIT = 10_000


def _time_ns(text: str) -> int:
    """`YYYY-MM-DDTHH:MM:SS[.ffffff]Z` as nanoseconds, exactly as pydantic then `to_ns`
    read it; other forms (offsets, nanoseconds, numbers) are left to pydantic."""
    found = _TIMES.get(text)
    if found is not None:
        return found
    size = len(text)
    if not (
        20 <= size <= 27
        and text[-1] == "Z"
        and text[4] == "-"
        and text[7] == "-"
        and text[10] == "T"
        and text[13] == ":"
        and text[16] == ":"
        and (size == 20 or (text[19] == "." and size > 21))
        and text.isascii()
    ):
        raise _UNSURE
    digits = text[0:4] + text[5:7] + text[8:10] + text[11:13] + text[14:16] + text[17:19]
    fraction = text[20:-1]
    if not digits.isdigit() or (fraction and not fraction.isdigit()):
        raise _UNSURE
    hour, minute, second = int(text[11:13]), int(text[14:16]), int(text[17:19])
    if hour > 23 or minute > 59 or second > 59:
        raise _UNSURE
    try:
        day = date(int(text[0:4]), int(text[5:7]), int(text[8:10])).toordinal()
    except ValueError:
        raise _UNSURE from None
    micros = int(fraction.ljust(6, "0")) if fraction else 0
    seconds = (day - _EPOCH_ORDINAL) * 86_400 + hour * 3600 + minute * 60 + second
    value = seconds * 1_000_000_000 + micros * 1_000
    if len(_TIMES) >= _TIMES_LIMIT:
        _TIMES.clear()
    _TIMES[text] = value
    return value


def _opt_time(value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is not str:
        raise _UNSURE
    return _time_ns(value)


def _event_time(value: str | None) -> int | None:
    """A time of an event's shape, None where `_span_time` makes it so. Looked up first:
    an event has four or five, mostly seen before (one call, not three)."""
    if value is None:
        return None
    moment = _TIMES.get(value)
    if moment is None:
        moment = _time_ns(value)
    return moment if 0 <= moment <= _LATEST_NS else None


def _text(fields: dict[str, Any], key: str) -> str:
    """A `str = ""` field."""
    value = fields.get(key, "")
    if type(value) is not str:
        raise _UNSURE
    return value


def _named(fields: Any) -> dict[str, Any]:
    """A model field given as a dict with a non-empty `kind` and `name`."""
    if type(fields) is not dict:
        raise _UNSURE
    kind, name = fields.get("kind"), fields.get("name")
    if type(kind) is not str or type(name) is not str or not kind or not name:
        raise _UNSURE
    return fields


class _Shape(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """The fast path's view of an input: the fields the models read, typed as the common,
    well-formed input has them, with the models' defaults. A field that is absent stays
    UNSET where the models tell absent from null (their alias pairs) or require it. They
    mirror the models field for field on purpose: the agreement property in
    tests/test_parse_paths.py holds the two together.

    Untracked by the garbage collector (`gc=False`): shapes hold only strings, numbers
    and other shapes, so they can form no cycle, and the four or five of every event
    neither cost a tracked allocation nor count towards the next collection."""


class _RefShape(_Shape):
    kind: str | UnsetType = UNSET
    name: str | UnsetType = UNSET
    namespace: str = ""
    uid: str = ""
    apiVersion: str = ""
    fieldPath: str = ""


class _MetaShape(_Shape):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    resourceVersion: str = ""
    creationTimestamp: str | None = None


class _SourceShape(_Shape):
    component: str = ""
    host: str = ""


class _SeriesShape(_Shape):
    count: int | UnsetType = UNSET
    lastObservedTime: str | None = None


class EventShape(_Shape):
    """An Event of either API as the fast path reads it (see `_Event`, its definition)."""

    metadata: _MetaShape
    involvedObject: _RefShape | UnsetType = UNSET
    regarding: _RefShape | UnsetType = UNSET
    reason: str = ""
    message: str | UnsetType | None = UNSET
    note: str | UnsetType | None = UNSET
    type: str = "Normal"
    source: _SourceShape | UnsetType | None = UNSET
    deprecatedSource: _SourceShape | UnsetType | None = UNSET
    firstTimestamp: str | UnsetType | None = UNSET
    deprecatedFirstTimestamp: str | UnsetType | None = UNSET
    lastTimestamp: str | UnsetType | None = UNSET
    deprecatedLastTimestamp: str | UnsetType | None = UNSET
    count: int | UnsetType | None = UNSET
    deprecatedCount: int | UnsetType | None = UNSET
    eventTime: str | None = None
    series: _SeriesShape | None = None
    action: str | None = None
    reportingComponent: str | UnsetType | None = UNSET
    reportingController: str | UnsetType | None = UNSET
    reportingInstance: str | None = None


def _given(core: Any, events_v1: Any) -> Any:
    """AliasChoices: the first of the two keys present, even if its value is null."""
    if core is not UNSET:
        return core
    return None if events_v1 is UNSET else events_v1


def _fast_event(raw: EventShape, max_message_bytes: int) -> EventState | None:
    """`parse_event_strictly`'s result for a well-formed event, or None where the models
    must judge (an unusual timestamp, a missing name, anything to reject)."""
    meta = raw.metadata
    involved = raw.involvedObject if raw.involvedObject is not UNSET else raw.regarding
    if involved is UNSET or not involved.kind or not involved.name:
        return None
    if not meta.name and not meta.uid:
        return None  # rejected: let the slow path word it
    series = raw.series
    try:
        created = _event_time(meta.creationTimestamp)
        first_time = _event_time(_given(raw.firstTimestamp, raw.deprecatedFirstTimestamp))
        last_time = _event_time(_given(raw.lastTimestamp, raw.deprecatedLastTimestamp))
        event_time = _event_time(raw.eventTime)
        series_last = None if series is None else _event_time(series.lastObservedTime)
    except _Unsure:
        return None
    series_count = 0
    if series is not None:
        if series.count is UNSET or series.count < 0:
            return None
        series_count = series.count

    # From here on, exactly parse_event_strictly's rules on the validated fields.
    first = event_time if event_time is not None else first_time
    if first is None:
        first = last_time
    last = series_last if series_last is not None else last_time
    if first is None:
        first = last if last is not None else created
    if first is None:
        return None  # rejected
    last_ns = max(first, last) if last is not None else first

    if series is not None and series_count > 0:
        event_count = series_count
    else:
        count = _given(raw.count, raw.deprecatedCount)
        event_count = count if count and count > 0 else 1

    source = _given(raw.source, raw.deprecatedSource)
    component, host = ("", "") if source is None else (source.component, source.host)
    reporting = _given(raw.reportingComponent, raw.reportingController)
    # In the fields' order, not by keyword: the compiled EventState (setup.py) reads
    # keywords through a dict made for each call, which took more than the rest of it.
    return EventState(
        meta.uid or f"{meta.namespace}/{meta.name}",  # uid
        meta.name,  # name
        _intern(meta.namespace),  # namespace
        _intern(raw.reason or "Unknown"),  # reason
        _bounded(_given(raw.message, raw.note) or "", max_message_bytes),  # message
        _intern(raw.type or "Normal"),  # type
        _object_ref(  # involved
            involved.kind, involved.name, involved.namespace, involved.uid, involved.apiVersion
        ),
        event_count,  # count
        first,  # first_ns
        last_ns,  # last_ns
        _intern(involved.fieldPath),  # field_path
        _intern(component or reporting or ""),  # component
        _intern(raw.reportingInstance or host),  # instance
        _intern(host),  # host
        _intern(raw.action or ""),  # action
        meta.resourceVersion,  # resource_version
    )


# The involved-object references seen lately: the events of one object share one.
_REFS: dict[tuple[str, str, str, str, str], ObjectRef] = {}
_REFS_LIMIT = 10_000


def _object_ref(kind: str, name: str, namespace: str, uid: str, api_version: str) -> ObjectRef:
    key = (kind, name, namespace, uid, api_version)
    ref = _REFS.get(key)
    if ref is None:
        if len(_REFS) >= _REFS_LIMIT:
            _REFS.clear()
        ref = _REFS[key] = ObjectRef(
            kind=_intern(kind),
            name=name,
            namespace=_intern(namespace),
            uid=uid,
            api_version=_intern(api_version),
        )
    return ref


def _fast_object(raw: dict[str, Any]) -> KubeObject | Rejected | None:
    try:
        kind = raw.get("kind")
        if type(kind) is not str or not kind:
            raise _UNSURE
        api_version = _text(raw, "apiVersion")
        meta = raw.get("metadata")
        if type(meta) is not dict:
            raise _UNSURE
        name, namespace = _text(meta, "name"), _text(meta, "namespace")
        uid, version = _text(meta, "uid"), _text(meta, "resourceVersion")
        _opt_time(meta.get("creationTimestamp"))
        references = meta.get("ownerReferences", [])
        entries = meta.get("managedFields", [])
        if type(references) is not list or type(entries) is not list:
            raise _UNSURE
        keys = []
        for reference in references:
            _named(reference)
            controller = reference.get("controller")
            owner_uid, owner_api = reference.get("uid", ""), reference.get("apiVersion", "")
            if (
                (controller is not None and type(controller) is not bool)
                or type(owner_uid) is not str
                or type(owner_api) is not str
            ):
                raise _UNSURE
            owner_kind = reference["kind"]
            owner_namespace = namespace if owner_kind not in CLUSTER_SCOPED else ""
            keys.append(
                (owner_kind, reference["name"], owner_namespace, owner_uid, owner_api, controller)
            )
        manager = _fast_spec_manager(entries)
    except _Unsure:
        return None
    if not name:
        return None  # rejected: let the slow path word it
    return KubeObject(
        ref=ObjectRef(
            kind=_intern(kind),
            name=name,
            namespace=_intern(namespace),
            uid=uid,
            api_version=_intern(api_version),
        ),
        owners=_owners(tuple(keys)) if keys else (),
        spec_manager=_intern(manager),
        resource_version=version,
    )


# Owner references seen lately: the pods of one ReplicaSet share one tuple of them.
_OWNERS: dict[tuple[tuple[str, str, str, str, str, bool | None], ...], tuple[OwnerRef, ...]] = {}
_OWNERS_LIMIT = 10_000


def _owners(keys: tuple[tuple[str, str, str, str, str, bool | None], ...]) -> tuple[OwnerRef, ...]:
    owners = _OWNERS.get(keys)
    if owners is None:
        if len(_OWNERS) >= _OWNERS_LIMIT:
            _OWNERS.clear()
        owners = _OWNERS[keys] = tuple(
            OwnerRef(_object_ref(kind, name, namespace, uid, api_version), bool(controller))
            for kind, name, namespace, uid, api_version, controller in keys
        )
    return owners


def _fast_spec_manager(entries: list[Any]) -> str:
    """`_spec_manager` on raw managedFields entries (validating each as the model would)."""
    best: tuple[int, int] | None = None
    manager = ""
    for position, entry in enumerate(entries):
        if type(entry) is not dict:
            raise _UNSURE
        name = _text(entry, "manager")
        moment = _opt_time(entry.get("time"))
        fields = entry.get("fieldsV1")
        if fields is not None and (
            type(fields) is not dict or not all(type(key) is str for key in fields)
        ):
            raise _UNSURE
        if not fields or "f:spec" not in fields or not name:
            continue
        rank = (moment if moment is not None else 0, position)
        if best is None or rank > best:
            best, manager = rank, name
    return manager
