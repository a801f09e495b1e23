"""What a watch line or a list page holds, read from its bytes.

Any resource's lines and pages are read as plain JSON (`JsonFrames`). Events, the bulk of
what eventtrace reads, are decoded by msgspec straight into the schema's `Event`
(`EventFrames`): only the fields parsing reads become Python objects. What is no event's
frame (a BOOKMARK, an ERROR's Status) is read as plain JSON, and so is an event frame
that does not fit the schema, for parse.py to say what is wrong with it. A list page
with an item that does not fit is decoded item by item: that item becomes a `Rejected`
naming its position on the page, and the others are read as usual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import msgspec
import orjson

from eventtrace.core.model import Rejected
from eventtrace.source.parse import rejected_event
from eventtrace.source.schema import Event


@dataclass(slots=True)
class Frame:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
    object: Any  # a dict, an Event, or None if the frame had no object
    resource_version: str = ""


@dataclass(slots=True)
class Page:
    items: list[Any]  # dicts; or Events, and the Rejected of those that do not fit
    continue_token: str = ""
    resource_version: str = ""


class Frames(Protocol):
    def frame(self, line: bytes) -> Frame: ...

    def page(self, body: bytes) -> Page: ...


class JsonFrames:
    """Any resource, as plain dicts. A malformed line or page raises orjson's error."""

    def frame(self, line: bytes) -> Frame:
        data = orjson.loads(line)
        if not isinstance(data, dict):
            return Frame("", None)
        obj = data.get("object")
        if not isinstance(obj, dict):
            return Frame(str(data.get("type")), None)
        meta = obj.get("metadata")
        version = meta.get("resourceVersion") if isinstance(meta, dict) else None
        return Frame(str(data.get("type")), obj, str(version) if version else "")

    def page(self, body: bytes) -> Page:
        data = orjson.loads(body)
        if not isinstance(data, dict):
            return Page([])
        meta = data.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        items = data.get("items")
        return Page(
            items if isinstance(items, list) else [],
            str(meta.get("continue") or ""),
            str(meta.get("resourceVersion") or ""),
        )


class _EventFrame(msgspec.Struct):
    type: str
    object: Event


class _ListMeta(msgspec.Struct, rename={"continue_token": "continue"}):
    continue_token: str = ""
    resourceVersion: str = ""


_Item = TypeVar("_Item")


class _Page(msgspec.Struct, Generic[_Item]):
    metadata: _ListMeta = msgspec.field(default_factory=_ListMeta)
    items: list[_Item] | None = None


_frames = msgspec.json.Decoder(_EventFrame, strict=False)
_pages = msgspec.json.Decoder(_Page[Event], strict=False)
# For a page with an item that does not fit: each item decoded on its own.
_raw_pages = msgspec.json.Decoder(_Page[msgspec.Raw], strict=False)
_events = msgspec.json.Decoder(Event, strict=False)
# The frame types an event can come in; anything else is read as plain JSON.
_EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED"})


class EventFrames:
    """Events as `Event`s where they fit the schema (see the module docstring). A
    malformed line or page raises orjson's error, as `JsonFrames` does."""

    def frame(self, line: bytes) -> Frame:
        try:
            frame = _frames.decode(line)
        except msgspec.DecodeError:  # a ValidationError too: not an event that fits
            return JsonFrames().frame(line)
        if frame.type not in _EVENT_TYPES:
            return JsonFrames().frame(line)
        return Frame(frame.type, frame.object, frame.object.metadata.resourceVersion)

    def page(self, body: bytes) -> Page:
        try:
            page: _Page[Any] = _pages.decode(body)
            items = page.items or []
        except msgspec.ValidationError:  # an item that does not fit, or no list's shape
            try:
                page = _raw_pages.decode(body)
            except msgspec.ValidationError:  # no list's shape: as JsonFrames reads it
                return JsonFrames().page(body)
            items = [_event(item, position) for position, item in enumerate(page.items or [])]
        except msgspec.DecodeError:  # malformed: orjson raises its error
            return JsonFrames().page(body)
        return Page(items, page.metadata.continue_token, page.metadata.resourceVersion)


def _event(item: msgspec.Raw, position: int) -> Event | Rejected:
    try:
        return _events.decode(item)
    except msgspec.ValidationError as error:
        return rejected_event(msgspec.json.decode(item), f"page item {position}", error)
