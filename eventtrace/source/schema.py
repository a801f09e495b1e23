"""What eventtrace reads of Kubernetes JSON: the one definition of an Event (of either API)
and of an object's identity, owners and field managers.

msgspec decodes watch frames and list pages straight from their bytes into these structs
(frames.py), and converts dicts read from files into the same (parse.py). Both read
leniently (`strict=False`): a number written as a string, a count written as `3.0`, a
time written as seconds since 1970. Fields not named here are skipped, never built. Every
field is optional unless naming the event or object needs it: real events have null
times, an empty `source`, no `count`.

Both Event APIs are in one struct: core/v1 (`involvedObject`, `message`, `source`,
`firstTimestamp`, `count`) and events.k8s.io/v1 (`regarding`, `note`,
`deprecatedSource`, `deprecatedFirstTimestamp`, `deprecatedCount`, `series`); parse.py
reads whichever is set. Field names are Kubernetes' own, as the API reference spells them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class _Decoded(msgspec.Struct, gc=False):
    """Decoded JSON holds strings, numbers and other decoded structs, never a cycle: the
    garbage collector need not track them (each event makes several, that die at once)."""


class Meta(_Decoded):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    resourceVersion: str = ""
    creationTimestamp: datetime | None = None


class ObjectReference(_Decoded):
    """What an event is about (`involvedObject`, `regarding`)."""

    kind: NonEmpty
    name: NonEmpty
    namespace: str = ""
    uid: str = ""
    apiVersion: str = ""
    fieldPath: str = ""


class EventSource(_Decoded):
    component: str = ""
    host: str = ""


class EventSeries(_Decoded):
    count: Annotated[int, msgspec.Meta(ge=0)]
    lastObservedTime: datetime | None = None


class Event(_Decoded):
    metadata: Meta
    involvedObject: ObjectReference | None = None
    regarding: ObjectReference | None = None
    reason: str = ""
    message: str | None = None
    note: str | None = None
    type: str = "Normal"
    source: EventSource | None = None
    deprecatedSource: EventSource | None = None
    firstTimestamp: datetime | None = None
    deprecatedFirstTimestamp: datetime | None = None
    lastTimestamp: datetime | None = None
    deprecatedLastTimestamp: datetime | None = None
    count: int | None = None
    deprecatedCount: int | None = None
    eventTime: datetime | None = None
    series: EventSeries | None = None
    action: str | None = None
    reportingComponent: str | None = None
    reportingController: str | None = None
    reportingInstance: str | None = None


class OwnerReference(_Decoded):
    kind: NonEmpty
    name: NonEmpty
    uid: str = ""
    apiVersion: str = ""
    controller: bool | None = None


class TopFields(_Decoded):
    """A managedFields entry's fieldsV1, of which only whether "f:spec" is one of its keys
    matters (parse.py): that value is kept as its JSON, the rest skipped, so a tree of
    every field ever set is never built."""

    spec: msgspec.Raw = msgspec.field(name="f:spec", default=msgspec.Raw())


class ManagedFieldsEntry(_Decoded):
    manager: str = ""
    time: datetime | None = None
    # Any other JSON than an object touches no field, and makes the object no less usable.
    fieldsV1: TopFields | list[msgspec.Raw] | str | float | bool | None = None


class ObjectMeta(Meta):
    annotations: dict[str, str] | None = None
    ownerReferences: list[OwnerReference] = []
    managedFields: list[ManagedFieldsEntry] = []


class Object(_Decoded):
    """Any object whose events are traced, or that owns one: a Pod, a ReplicaSet, a Node."""

    metadata: ObjectMeta
    kind: str = ""  # list items carry none: then the list's
    apiVersion: str = ""
