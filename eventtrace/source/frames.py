"""What a watch line or a list page holds, read from its bytes.

Any resource's lines and pages are read as plain JSON (`JsonFrames`). Events, the bulk of
what eventtrace reads, are decoded by msgspec straight into the schema's `Event`
(`EventFrames`): only the fields parsing reads become Python objects. What is no event's
frame (a BOOKMARK, an ERROR's Status) is read as plain JSON, and so is an event frame
that does not fit the schema, for parse.py to say what is wrong with it. A list page
with an item that does not fit is decoded item by item: that item becomes a `Rejected`
naming its position on the page, and the others are read as usual.

Nothing here trusts its input. What cannot be decoded (not UTF-8, nested deeper than
`MAX_DEPTH`, longer than `MAX_BYTES`, not JSON, not an object) never raises out of a
frame or a page item: the frame comes back with `invalid` saying why (and, if the bytes
still say it, its resourceVersion, so a watch can move past it), the page with the
positions of the items it left out. Depth is checked on the raw bytes of every frame,
file item and plain-JSON page before any decoder sees them: msgspec, json and PyYAML
recurse, and die (RecursionError) near 1,000 levels. A whole page of events or objects,
the hot path, goes to msgspec unchecked: it bounds its own depth (the interpreter's
recursion limit) and raises RecursionError, which, like any failure, sends the page item
by item, each checked. So an item nested between `MAX_DEPTH` and ~1,000 levels deep in
a field msgspec skips is read from a page where its watch frame would be refused: no
decoder is endangered either way. Only a page whose own frame (not an item) is
unreadable raises `Undecodable`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import msgspec
import orjson

from eventtrace.core.model import Rejected
from eventtrace.source.parse import rejected_event
from eventtrace.source.schema import Event, Object

# Far above any real object (they nest < 20 levels; a CRD's schema, ~40), far below where
# a recursive decoder fails (~1,000).
MAX_DEPTH = 100
# The longest object (watch frame, list item, file item) decoded: an object is at most
# ~1.5 MiB in etcd; its JSON with escapes fits well within this.
MAX_BYTES = 2**25

# What a read asks for (its Accept header). Owner resolution needs an object's metadata
# only, so workload objects are asked for as the API server's PartialObjectMetadata: their
# specs (and the secrets put in env vars) never reach this process. A server that cannot
# (an aggregated API) answers the plain JSON that follows, which the schema reads as well.
# A list asks for the list kind, a GET and a watch for the single one.
JSON = "application/json"
METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"


class Undecodable(ValueError):
    """Bytes that were not, or could not be, decoded. `reason` is a metric label:
    bad_utf8, too_deep, too_big, invalid_json, not_an_object."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Frame:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
    object: Any  # a dict, an Event, or None if the frame had no (usable) object
    resource_version: str = ""  # for an invalid frame: if its bytes still say it
    invalid: Undecodable | None = None  # why the frame cannot be used


@dataclass(slots=True)
class Page:
    items: list[Any]  # dicts; or Events, and the Rejected of those that do not fit
    continue_token: str = ""
    resource_version: str = ""
    # The items left out, by their position on the page, and why.
    invalid: list[tuple[int, Undecodable]] = field(default_factory=list)


class Frames(Protocol):
    """How one resource's list pages and watch lines are asked for, and read."""

    list_accept: str
    watch_accept: str

    def frame(self, line: bytes) -> Frame: ...

    def page(self, body: bytes) -> Page: ...


# ---- limits, checked on the bytes ---------------------------------------------------------

_STRUCTURE = b'"[]{}'
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in _STRUCTURE)
_PARENS = bytes.maketrans(b"[]{}", b"()()")


def too_deep(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """Does the JSON in `data` nest deeper than `limit` (brackets in strings do not
    count)? Found without decoding it. For bytes that are no JSON it may say yes where a
    decoder would fail before reaching that deep, never no where it would."""
    # Not enough brackets to nest deeper: the common case of one object (a page has more).
    if len(data) < 2**16 and data.count(b"{") + data.count(b"[") <= limit:
        return False
    if b"\\" in data:  # escapes, so that every quote left opens or closes a string
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Only quotes and brackets; then no empty strings (of those, only strings holding
    # brackets are not empty, and the quotes left around them still alternate).
    shape = data.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in shape:
        shape = b"".join(shape.split(b'"')[::2])
    shape = shape.translate(_PARENS)
    # Each pass takes away the innermost pairs: as many passes as the nesting is deep.
    passes = 0
    while passes <= limit:
        inner = shape.replace(b"()", b"")
        if len(inner) == len(shape):
            break
        shape, passes = inner, passes + 1
    return passes + shape.count(b"(") > limit  # an opening never closed counts too


def check(data: bytes, *, bounded: bool = True) -> None:
    """Raise `Undecodable` if `data` nests too deep to be decoded, or (if `bounded`: one
    object, not a page of them) is longer than MAX_BYTES."""
    if bounded and len(data) > MAX_BYTES:
        raise Undecodable("too_big", f"{len(data)} bytes, more than the {MAX_BYTES} allowed")
    if too_deep(data):
        raise Undecodable("too_deep", f"nested more than {MAX_DEPTH} levels deep")


def loads(data: bytes, *, bounded: bool = True) -> Any:
    """JSON, decoded once it is known to be safe to decode; else `Undecodable`."""
    check(data, bounded=bounded)
    return _plain(data)


def _plain(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise _why(data, error) from None


def _why(data: bytes, error: Exception) -> Undecodable:
    """What a decoder's failure on `data` means."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as bad:
        return Undecodable("bad_utf8", f"not valid UTF-8 (byte {bad.start})")
    return Undecodable("invalid_json", f"invalid JSON: {error}")


def shown(data: bytes, length: int = 120) -> str:
    """The start of some bytes, printable whatever they hold: for log lines."""
    return ascii(data[:length].decode("utf-8", "replace"))[1:-1]


# ---- reading what cannot be decoded whole ------------------------------------------------

# A JSON string, or a byte of structure. Finding tokens one by one never recurses.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]', re.DOTALL)
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")


def value_at(data: bytes, path: tuple[str, ...], start: int = 0) -> tuple[int, int] | None:
    """Where (start, end) the value at `path` (keys of objects from the top) lies in the
    JSON of `data`, found without decoding anything: for bytes that cannot be decoded
    whole (too deep, not UTF-8, cut short). None if it is not there, or not whole."""
    keys = [orjson.dumps(key) for key in path]
    trail: list[bytes | None] = []  # by what key each open container (but the top) was entered
    levels = 0  # open containers
    key: bytes | None = None  # the last string: a key, if a colon follows
    member: bytes | None = None  # the key whose value comes next, at this level
    found = -1  # where the value sought began (its level is len(keys))
    for token in _TOKEN.finditer(data, start):
        byte = data[token.start()]
        if byte == 0x22:  # a string
            key = token.group()
            continue
        if found >= 0 and levels == len(keys) and byte in b",]}":
            return found, token.start()  # a value that is no container ends
        if byte == 0x3A:  # a colon
            member = key
            if levels == len(keys) and trail == keys[:-1] and member == keys[-1]:
                found = token.end()
        elif byte in _OPEN:
            if levels:
                trail.append(member)
            levels += 1
            member = None
        elif byte in _CLOSE:
            levels -= 1
            if levels < 0:
                return None
            if levels:
                trail.pop()
            if found >= 0 and levels == len(keys):
                return found, token.end()  # the container sought is closed
        else:  # a comma
            member = None
    return None


def elements(data: bytes, start: int, end: int) -> list[tuple[int, int]]:
    """Where each element of the JSON array in data[start:end] lies, without decoding."""
    while start < end and data[start] in b" \t\r\n":
        start += 1
    if start >= end or data[start] != 0x5B:  # not an array (null: no items)
        return []
    spans: list[tuple[int, int]] = []
    levels = 0
    begun = start + 1
    for token in _TOKEN.finditer(data, start, end):
        byte = data[token.start()]
        if byte in _OPEN:
            levels += 1
        elif byte in _CLOSE:
            levels -= 1
            if levels == 0:
                if data[begun : token.start()].strip():
                    spans.append((begun, token.start()))
                return spans
        elif byte == 0x2C and levels == 1:  # a comma between elements
            spans.append((begun, token.start()))
            begun = token.end()
    return spans  # cut short: what was whole


def resource_version_in(data: bytes) -> str:
    """A watch frame's object's resourceVersion, read from bytes that cannot be decoded
    whole (or from the first bytes of one too long to keep); "" if they do not say it."""
    span = value_at(data, ("object", "metadata", "resourceVersion"))
    if span is None:
        return ""
    try:
        version = orjson.loads(data[span[0] : span[1]])
    except orjson.JSONDecodeError:
        return ""
    return version if isinstance(version, str) else ""


def unreadable(line: bytes, problem: Undecodable) -> Frame:
    """A watch frame that cannot be used, with its resourceVersion if its bytes say it."""
    return Frame("", None, resource_version_in(line), problem)


def oversized(head: bytes, size: int) -> Frame:
    """A watch frame too long to keep: `head` is its start, `size` its length."""
    problem = Undecodable("too_big", f"{size} bytes or more, more than the stream keeps")
    return unreadable(head, problem)


def split_list(body: bytes) -> tuple[dict[str, Any], list[tuple[int, bytes]]]:
    """A list (a page, a file's `kind: List`) that cannot be decoded whole: the list
    itself with no items, and each item's bytes with where they begin. Raises
    `Undecodable` if the list itself (but its items) cannot be decoded."""
    span = value_at(body, ("items",))
    rest = body if span is None else body[: span[0]] + b"[]" + body[span[1] :]
    top = loads(rest, bounded=False)
    if not isinstance(top, dict):
        raise Undecodable("not_an_object", f"a list that is no JSON object: {shown(body)}")
    items = [] if span is None else elements(body, *span)
    return top, [(begun, body[begun:end]) for begun, end in items]


# ---- plain JSON ---------------------------------------------------------------------------


def _plain_frame(line: bytes) -> Frame:
    """A watch line known to be safe to decode, as plain JSON."""
    try:
        data = _plain(line)
    except Undecodable as problem:
        return unreadable(line, problem)
    if not isinstance(data, dict):
        return Frame("", None, invalid=_no_object(line))
    obj = data.get("object")
    if not isinstance(obj, dict):
        return Frame(str(data.get("type")), None, invalid=_no_object(line))
    meta = obj.get("metadata")
    version = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return Frame(str(data.get("type")), obj, str(version) if version else "")


def _no_object(line: bytes) -> Undecodable:
    return Undecodable("not_an_object", f"a watch frame without an object: {shown(line)}")


def _line_problem(line: bytes) -> Undecodable | None:
    try:
        check(line)
    except Undecodable as problem:
        return problem
    return None


_Item = TypeVar("_Item")


def _salvaged(body: bytes, read: Callable[[bytes, int], Any]) -> Page:
    """A page that cannot be decoded whole, item by item: `read` decodes one (raising
    `Undecodable` for one that cannot be)."""
    top, items = split_list(body)
    meta = top.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    page = Page([], str(meta.get("continue") or ""), str(meta.get("resourceVersion") or ""))
    for position, (_, data) in enumerate(items):
        try:
            check(data)
            page.items.append(read(data, position))
        except Undecodable as problem:
            page.invalid.append((position, problem))
    return page


def _plain_item(data: bytes, position: int) -> dict[str, Any]:
    item = _plain(data)
    if not isinstance(item, dict):
        raise Undecodable("not_an_object", f"expected an object, got {type(item).__name__}")
    return item


class JsonFrames:
    """Any resource, as plain dicts."""

    list_accept = watch_accept = JSON

    def frame(self, line: bytes) -> Frame:
        problem = _line_problem(line)
        return unreadable(line, problem) if problem is not None else _plain_frame(line)

    def page(self, body: bytes) -> Page:
        if too_deep(body):
            return _salvaged(body, _plain_item)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _salvaged(body, _plain_item)
        if not isinstance(data, dict):
            raise Undecodable("not_an_object", f"a list that is no JSON object: {shown(body)}")
        meta = data.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        items = data.get("items")
        page = Page([], str(meta.get("continue") or ""), str(meta.get("resourceVersion") or ""))
        for position, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict):
                page.items.append(item)
            else:
                what = f"expected an object, got {type(item).__name__}"
                page.invalid.append((position, Undecodable("not_an_object", what)))
        return page


# ---- events, through the schema -----------------------------------------------------------


class _EventFrame(msgspec.Struct):
    type: str
    object: Event


class _ListMeta(msgspec.Struct, rename={"continue_token": "continue"}):
    continue_token: str = ""
    resourceVersion: str = ""


class _Page(msgspec.Struct, Generic[_Item]):
    metadata: _ListMeta = msgspec.field(default_factory=_ListMeta)
    items: list[_Item] | None = None


class _ObjectFrame(msgspec.Struct):
    type: str
    object: Object


_frames = msgspec.json.Decoder(_EventFrame, strict=False)
_pages = msgspec.json.Decoder(_Page[Event], strict=False)
# For a page with an item that does not fit: each item decoded on its own.
_raw_pages = msgspec.json.Decoder(_Page[msgspec.Raw], strict=False)
_events = msgspec.json.Decoder(Event, strict=False)
# The frame types an event can come in; anything else is read as plain JSON.
_EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED"})


class EventFrames:
    """Events as `Event`s where they fit the schema (see the module docstring)."""

    list_accept = watch_accept = JSON

    def frame(self, line: bytes) -> Frame:
        return _typed_frame(line, _frames)

    def page(self, body: bytes) -> Page:
        try:
            page: _Page[Any] = _pages.decode(body)
            return Page(
                page.items or [], page.metadata.continue_token, page.metadata.resourceVersion
            )
        except msgspec.ValidationError:  # an item that does not fit, or no list's shape
            pass
        except (msgspec.DecodeError, RecursionError):  # malformed, not UTF-8, too deep
            return _salvaged(body, _event)  # item by item
        try:
            page = _raw_pages.decode(body)
        except msgspec.ValidationError:  # no list's shape: as JsonFrames reads it
            return JsonFrames().page(body)
        except (msgspec.DecodeError, RecursionError):
            return _salvaged(body, _event)
        salvaged = Page([], page.metadata.continue_token, page.metadata.resourceVersion)
        for position, raw in enumerate(page.items or []):
            try:
                item = bytes(raw)
                check(item)
                salvaged.items.append(_event(item, position))
            except Undecodable as problem:
                salvaged.invalid.append((position, problem))
        return salvaged


_object_frames = msgspec.json.Decoder(_ObjectFrame, strict=False)
_object_pages = msgspec.json.Decoder(_Page[Object], strict=False)


class ObjectFrames:
    """Workload objects (pods, ReplicaSets, nodes...) as `Object`s: only their identity,
    owners and field managers are built, never their specs. What does not fit the schema
    is read as plain JSON, and parse_object says what is wrong with it. Asked for as
    metadata only (their kind then `PartialObjectMetadata`, which parse_object replaces by
    the watch's)."""

    list_accept = METADATA_LIST
    watch_accept = METADATA

    def frame(self, line: bytes) -> Frame:
        return _typed_frame(line, _object_frames)

    def page(self, body: bytes) -> Page:
        try:
            page: _Page[Any] = _object_pages.decode(body)
        except (msgspec.DecodeError, RecursionError):  # does not fit, or worse: plain JSON
            return JsonFrames().page(body)
        return Page(page.items or [], page.metadata.continue_token, page.metadata.resourceVersion)


def _typed_frame(line: bytes, decoder: msgspec.json.Decoder[Any]) -> Frame:
    """A watch line decoded into the schema, or as plain JSON where it does not fit (a
    BOOKMARK, an ERROR, an object with an odd field)."""
    problem = _line_problem(line)
    if problem is not None:
        return unreadable(line, problem)
    try:
        frame = decoder.decode(line)
    except msgspec.DecodeError:  # a ValidationError too: it does not fit the schema
        return _plain_frame(line)
    if frame.type not in _EVENT_TYPES:
        return _plain_frame(line)
    return Frame(frame.type, frame.object, frame.object.metadata.resourceVersion)


def _event(item: bytes, position: int) -> Event | Rejected:
    """One page item, known to be safe to decode."""
    try:
        return _events.decode(item)
    except msgspec.ValidationError as error:
        return rejected_event(_plain(item), f"page item {position}", error)
    except msgspec.DecodeError as error:
        raise _why(item, error) from None
