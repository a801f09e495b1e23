"""Recorded input for `replay` and `demo`: whatever kubectl and watch streams write.

Accepted, in any mix, one or many files (`-` is standard input):
- `kubectl get events -o json|yaml` lists, and object dumps (`kubectl get pods,rs,deploy
  -o json`) whose objects resolve owners;
- `kubectl get events -w -o json`: concatenated JSON objects;
- JSON lines of watch events (`{"type": "ADDED", "object": {...}}`);
- YAML documents separated by `---`, with comment lines (the fixtures' capture format).

An item that cannot be decoded (not UTF-8, nested deeper than frames.MAX_DEPTH, longer
than frames.MAX_BYTES) is no reason to drop the rest: it comes as a `Record` holding the
`Rejected` that says why, which the caller counts and logs as any other; so does each
such item of a list. Nothing recursive (json, PyYAML's composer) sees a deeper input.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import Node

from eventtrace.core.model import Rejected
from eventtrace.source.frames import (
    MAX_BYTES,
    MAX_DEPTH,
    Undecodable,
    loads,
    split_list,
    too_deep,
)

_WHITESPACE = re.compile(r"\s*")
# A JSON string, or an opening or closing bracket: to find values without decoding them.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


class InputFileError(Exception):
    """A file that cannot be read at all: `file:line: what is wrong`."""


@dataclass(frozen=True, slots=True)
class Record:
    where: str  # file:line, for messages
    # The object; or, for an item that could not be decoded, the `Rejected` saying why
    # (parse_event hands it back as it is, to be counted as any other).
    raw: dict[str, Any] | Rejected
    kind: str  # the object's kind, or the list's item kind when the item has none

    @property
    def is_event(self) -> bool:
        if isinstance(self.raw, Rejected):
            return True
        return self.kind == "Event" or "involvedObject" in self.raw or "regarding" in self.raw


def read_records(paths: list[str]) -> Iterator[Record]:
    for path in paths:
        name = "<stdin>" if path == "-" else path
        yield from _records_in(name, _read_bytes(path))


def _read_bytes(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a directory, not a file") from None
    except OSError as error:
        raise InputFileError(f"{path}: cannot read: {error.strerror}") from None


def _records_in(name: str, data: bytes) -> Iterator[Record]:
    start = data.lstrip()[:1]
    if not start:
        return
    values = _json_values(name, data) if start in b"{[" else _yaml_documents(name, data)
    for line, value in values:
        yield from _unpack(f"{name}:{line}", value)


def _json_values(name: str, data: bytes) -> Iterator[tuple[int, Any]]:
    """JSON lines fast, else concatenated (pretty-printed) JSON values."""
    parsed: list[tuple[int, Any]] = []
    for number, piece in enumerate(data.splitlines(), 1):
        if not piece.strip():
            continue
        try:
            parsed.append((number, loads(piece)))
        except Undecodable as problem:
            if problem.reason == "invalid_json":
                break  # not JSON lines
            parsed.append((number, _salvaged(piece)))
    else:
        yield from parsed
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or too_deep(data):
        yield from _json_pieces(name, data)  # value by value, as far as each can be read
        return
    decoder = json.JSONDecoder()
    position, line = 0, 1
    while True:
        gap = _WHITESPACE.match(text, position)
        assert gap is not None  # \s* always matches
        line += text.count("\n", position, gap.end())
        position = gap.end()
        if position >= len(text):
            return
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            raise InputFileError(f"{name}:{error.lineno}: invalid JSON: {error.msg}") from None
        yield line, value
        line += text.count("\n", position, end)
        position = end


def _json_pieces(name: str, data: bytes) -> Iterator[tuple[int, Any]]:
    """Concatenated JSON values that cannot all be decoded whole: each found by its
    brackets (a scan that never recurses), then decoded on its own."""
    levels, begun, end = 0, 0, 0
    for token in _TOKEN.finditer(data):
        byte = data[token.start()]
        if byte == 0x22:  # a string
            continue
        if byte in b"[{":
            if levels == 0:
                _between(name, data, end, token.start())
                begun = token.start()
            levels += 1
        else:
            levels -= 1
            if levels < 0:
                raise InputFileError(f"{name}:{_line(data, token.start())}: invalid JSON")
            if levels == 0:
                end = token.end()
                yield _line(data, begun), _piece(name, data, begun, end)
    if levels:
        yield _line(data, begun), _piece(name, data, begun, len(data))
    else:
        _between(name, data, end, len(data))


def _piece(name: str, data: bytes, begun: int, end: int) -> Any:
    try:
        return loads(data[begun:end])
    except Undecodable as problem:
        if problem.reason != "invalid_json":
            return _salvaged(data[begun:end])
    # Malformed: the json module's words for it (it is no deeper than the limit).
    try:
        json.loads(data[begun:end].decode("utf-8"))
    except json.JSONDecodeError as error:
        line = _line(data, begun) + error.lineno - 1
        raise InputFileError(f"{name}:{line}: invalid JSON: {error.msg}") from None
    raise InputFileError(f"{name}:{_line(data, begun)}: invalid JSON")  # pragma: no cover


def _between(name: str, data: bytes, start: int, end: int) -> None:
    """What lies between two values must be blank."""
    gap = data[start:end]
    if gap.strip():
        where = _line(data, start + len(gap) - len(gap.lstrip()))
        raise InputFileError(f"{name}:{where}: invalid JSON: expected an object or a list")


def _line(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _salvaged(data: bytes) -> Any:
    """A JSON value that cannot be decoded whole: if it is a list, the list with each of
    its items decoded, or left as the `Undecodable` saying why; else why."""
    try:
        top, items = split_list(data)
    except Undecodable:
        top, items = {}, []
    if not isinstance(top.get("items"), list):
        try:
            loads(data)
        except Undecodable as problem:
            return problem
        raise AssertionError("unreachable")  # pragma: no cover
    for _, item in items:
        try:
            top["items"].append(loads(item))
        except Undecodable as problem:
            top["items"].append(problem)
    return top


def _yaml_documents(name: str, data: bytes) -> Iterator[tuple[int, Any]]:
    """Split on `---` ourselves, so every document keeps its own line number."""
    document: list[bytes] = []
    first_line = 1
    for number, line in enumerate([*data.splitlines(), b"---"], 1):
        if line.rstrip() == b"---" or line.startswith(b"--- "):
            body = b"\n".join(document)
            if body.strip():
                yield first_line, _load_yaml(name, body, first_line)
            document, first_line = [], number + 1
        else:
            document.append(line)


def _load_yaml(name: str, body: bytes, first_line: int) -> Any:
    """One document, or the `Undecodable` saying why it cannot be decoded."""
    if len(body) > MAX_BYTES:
        return Undecodable("too_big", f"a document of {len(body)} bytes, more than {MAX_BYTES}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        line = first_line + body.count(b"\n", 0, error.start)
        return Undecodable("bad_utf8", f"not valid UTF-8 (line {line})")
    try:
        return load_yaml(text)
    except Undecodable as problem:
        return problem
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = first_line + mark.line if mark is not None else first_line
        said = getattr(error, "problem", None) or "invalid YAML"
        raise InputFileError(f"{name}:{line}: invalid YAML: {said}") from None


def load_yaml(text: str) -> Any:
    """One YAML document, safely: no deeper than MAX_DEPTH (else `Undecodable`), and
    timestamps left as strings. Raises yaml.YAMLError if it is no YAML."""
    return yaml.load(text, Loader=_Loader)


class _Loader(yaml.SafeLoader):
    """Safe YAML with timestamps left as strings: Kubernetes times are parsed later, once.

    The composer recurses, one level per level of nesting: past MAX_DEPTH a document is
    refused, not composed. An alias counts as deep as the node it names, and one inside
    the node it names (a structure without end) is refused."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0  # of the node being composed
        self._deepest = 0  # the deepest level reached within it
        self._open: set[str] = set()  # the anchors of the nodes being composed
        self._heights: dict[str, int] = {}  # how many levels each anchored node spans

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        depth = self._depth + 1
        if self.check_event(yaml.AliasEvent):
            if event.anchor in self._open:
                raise Undecodable(
                    "too_deep",
                    f"line {event.start_mark.line + 1}: an alias inside the node it names",
                )
            reach = self._depth + self._heights.get(event.anchor, 1)
            self._within_limit(reach)
            self._deepest = max(self._deepest, reach)
            return super().compose_node(parent, index)
        self._within_limit(depth)
        anchor = event.anchor
        outer = self._deepest
        self._depth = self._deepest = depth
        if anchor is not None:
            self._open.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth = depth - 1
            self._open.discard(anchor)
        if anchor is not None:
            self._heights[anchor] = self._deepest - depth + 1
        self._deepest = max(self._deepest, outer)
        return node

    @staticmethod
    def _within_limit(depth: int) -> None:
        if depth > MAX_DEPTH:
            raise Undecodable("too_deep", f"nested more than {MAX_DEPTH} levels deep")


_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _unpack(where: str, value: Any) -> Iterator[Record]:
    if value is None:
        return
    if isinstance(value, Undecodable):
        yield Record(where, Rejected(where, value.detail, value.reason), "Invalid")
        return
    if not isinstance(value, dict):
        raise InputFileError(f"{where}: expected a Kubernetes object, got {type(value).__name__}")
    if isinstance(value.get("items"), list):
        item_kind = str(value.get("kind") or "").removesuffix("List")
        for position, item in enumerate(value["items"]):
            item_where = f"{where}: items[{position}]"
            if isinstance(item, dict):
                yield Record(item_where, item, str(item.get("kind") or item_kind))
            elif isinstance(item, Undecodable):
                yield Record(item_where, Rejected(item_where, item.detail, item.reason), "Invalid")
            else:
                yield Record(item_where, {"item": item}, "Invalid")
        return
    if "type" in value and "object" in value:  # a watch event
        if value["type"] in ("BOOKMARK", "ERROR"):
            return
        value = value["object"]
        if not isinstance(value, dict):
            yield Record(where, {"object": value}, "Invalid")
            return
    yield Record(where, value, str(value.get("kind") or ""))
