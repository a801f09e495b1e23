"""What the fast path (fast_path.py) reads an Event's JSON as: msgspec structs of the
fields parsing looks at, so the rest of each event (its managedFields and more) never
becomes Python objects. frames.py decodes watch lines and list pages straight into them.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType


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
