"""The fast path: well-formed Events and objects read without pydantic.

Pydantic (parse.py) is the definition; it costs more than everything else an event goes
through. The functions here read the common, well-formed shape and return exactly what
the models would give: events from `EventShape`s (msgspec checks the types, from the
JSON bytes or from a dict), objects directly from the dicts. Anything they are not sure
about (a wrong type, an odd timestamp, a missing field) returns None, and the models
decide: so errors and their messages, and every lax conversion pydantic makes, stay the
models' own. Compiled with the core (setup.py): the interpreter's own work was most of
what parsing an event cost.
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from typing import Any

from msgspec import UNSET

from eventtrace.core.model import EventState, KubeObject, ObjectRef, OwnerRef, Rejected
from eventtrace.source.shapes import EventShape

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
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


def bounded(message: str, limit: int) -> str:
    """The message, cut to `limit` bytes of UTF-8 (and marked as cut) if it is longer."""
    if len(message) <= limit and message.isascii():
        return message  # one byte a character
    data = message.encode("utf-8")
    if len(data) <= limit:
        return message
    return data[:limit].decode("utf-8", errors="ignore") + TRUNCATED


class _Unsure(Exception):
    """The fast path cannot vouch for this input: let pydantic decide."""


_UNSURE = _Unsure()
_EPOCH_ORDINAL = EPOCH.toordinal()
_intern = sys.intern
# RFC 3339 text → nanoseconds, for the timestamps seen lately (many events share a second).
_TIMES: dict[str, int] = {}
_TIMES_LIMIT = 10_000
# `YYYY-MM-DDTHH:MM:SS` → seconds since the epoch: an events.k8s.io eventTime has
# microseconds and is seldom seen twice, but the second it falls in is.
_SECONDS: dict[str, int] = {}


def _time_ns(text: str) -> int:
    """`YYYY-MM-DDTHH:MM:SS[.ffffff]Z` as nanoseconds, exactly as pydantic then `to_ns`
    read it; other forms (offsets, nanoseconds, numbers) are left to pydantic."""
    found = _TIMES.get(text)
    if found is not None:
        return found
    size = len(text)
    if not (
        20 <= size <= 27 and text[-1] == "Z" and (size == 20 or (text[19] == "." and size > 21))
    ):
        raise _UNSURE
    whole = text[:19]
    seconds = _SECONDS.get(whole)
    if seconds is None:
        seconds = _seconds(whole)
    fraction = text[20:-1]
    if fraction and not (fraction.isascii() and fraction.isdigit()):
        raise _UNSURE
    micros = int(fraction.ljust(6, "0")) if fraction else 0
    value = seconds * 1_000_000_000 + micros * 1_000
    if len(_TIMES) >= _TIMES_LIMIT:
        _TIMES.clear()
    _TIMES[text] = value
    return value


def _seconds(text: str) -> int:
    """`YYYY-MM-DDTHH:MM:SS` as seconds since the epoch, remembered."""
    if not (
        text[4] == "-"
        and text[7] == "-"
        and text[10] == "T"
        and text[13] == ":"
        and text[16] == ":"
        and text.isascii()
    ):
        raise _UNSURE
    digits = text[0:4] + text[5:7] + text[8:10] + text[11:13] + text[14:16] + text[17:19]
    if not digits.isdigit():
        raise _UNSURE
    hour, minute, second = int(text[11:13]), int(text[14:16]), int(text[17:19])
    if hour > 23 or minute > 59 or second > 59:
        raise _UNSURE
    try:
        day = date(int(text[0:4]), int(text[5:7]), int(text[8:10])).toordinal()
    except ValueError:
        raise _UNSURE from None
    seconds = (day - _EPOCH_ORDINAL) * 86_400 + hour * 3600 + minute * 60 + second
    if len(_SECONDS) >= _TIMES_LIMIT:
        _SECONDS.clear()
    _SECONDS[text] = seconds
    return seconds


def _opt_time(value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is not str:
        raise _UNSURE
    return _time_ns(value)


def _event_time(value: str | None) -> int | None:
    """A time of an event's shape, None where parse.py's `_span_time` makes it so."""
    if value is None:
        return None
    moment = _time_ns(value)  # compiled, a call costs little: no lookup of its own first
    return moment if 0 <= moment <= LATEST_NS else None


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


def _given(core: Any, events_v1: Any) -> Any:
    """AliasChoices: the first of the two keys present, even if its value is null."""
    if core is not UNSET:
        return core
    return None if events_v1 is UNSET else events_v1


def fast_event(raw: EventShape, max_message_bytes: int) -> EventState | None:
    """parse.py's `parse_event_strictly`'s result for a well-formed event, or None where the models
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
        bounded(_given(raw.message, raw.note) or "", max_message_bytes),  # message
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


def fast_object(raw: dict[str, Any]) -> KubeObject | Rejected | None:
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
