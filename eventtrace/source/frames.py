"""What a watch line or a list page holds, read from its bytes.

Any resource's lines and pages are read as plain JSON (`JsonFrames`). Events, the bulk of
what eventtrace reads, are read by msgspec straight into `EventShape`s: only the fields
the parser looks at become Python objects (not the managedFields and the rest of every
event), and a page's items need no dict each. Whatever does not fit that shape (an ERROR
or BOOKMARK frame, an event with an odd field) is read as plain JSON instead, so the
parser and the watch loop see it exactly as they would have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import orjson

from eventtrace.source.shapes import EventShape


@dataclass(slots=True)
class Frame:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
    object: Any  # a dict, an EventShape, or None if the frame had no object
    resource_version: str = ""


@dataclass(slots=True)
class Page:
    items: list[Any]
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
    object: EventShape


class _ListMeta(msgspec.Struct, rename={"continue_token": "continue"}):
    continue_token: str = ""
    resourceVersion: str = ""


class _EventPage(msgspec.Struct):
    metadata: _ListMeta = msgspec.field(default_factory=_ListMeta)
    items: list[EventShape] | None = None


# The frame types an event shape can come in; anything else is read as plain JSON.
_EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED"})


class EventFrames:
    """Events as `EventShape`s where they fit it, else as dicts (see the module docstring)."""

    def __init__(self) -> None:
        self._frames = msgspec.json.Decoder(_EventFrame)
        self._pages = msgspec.json.Decoder(_EventPage)
        self._json = JsonFrames()

    def frame(self, line: bytes) -> Frame:
        try:
            frame = self._frames.decode(line)
        except msgspec.DecodeError:  # a ValidationError too: not an event's shape
            return self._json.frame(line)
        if frame.type not in _EVENT_TYPES:
            return self._json.frame(line)
        return Frame(frame.type, frame.object, frame.object.metadata.resourceVersion)

    def page(self, body: bytes) -> Page:
        try:
            page = self._pages.decode(body)
        except msgspec.DecodeError:  # one odd item: the whole page as plain JSON
            return self._json.page(body)
        meta = page.metadata
        return Page(page.items or [], meta.continue_token, meta.resourceVersion)
