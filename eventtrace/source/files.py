"""Recorded input for `replay` and `demo`: whatever kubectl and watch streams write.

Accepted, in any mix, one or many files (`-` is standard input):
- `kubectl get events -o json|yaml` lists, and object dumps (`kubectl get pods,rs,deploy
  -o json`) whose objects resolve owners;
- `kubectl get events -w -o json`: concatenated JSON objects;
- JSON lines of watch events (`{"type": "ADDED", "object": {...}}`);
- YAML documents separated by `---`, with comment lines (the fixtures' capture format).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

_WHITESPACE = re.compile(r"\s*")


class InputFileError(Exception):
    """A file that cannot be read at all: `file:line: what is wrong`."""


@dataclass(frozen=True, slots=True)
class Record:
    where: str  # file:line, for messages
    raw: dict[str, Any]
    kind: str  # the object's kind, or the list's item kind when the item has none

    @property
    def is_event(self) -> bool:
        return self.kind == "Event" or "involvedObject" in self.raw or "regarding" in self.raw


def read_records(paths: list[str]) -> Iterator[Record]:
    for path in paths:
        name = "<stdin>" if path == "-" else path
        yield from _records_in(name, _read_text(path))


def _read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a directory, not a file") from None
    except UnicodeDecodeError as error:
        raise InputFileError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise InputFileError(f"{path}: cannot read: {error.strerror}") from None


def _records_in(name: str, text: str) -> Iterator[Record]:
    start = text.lstrip()[:1]
    if not start:
        return
    values = _json_values(name, text) if start in "{[" else _yaml_documents(name, text)
    for line, value in values:
        yield from _unpack(f"{name}:{line}", value)


def _json_values(name: str, text: str) -> Iterator[tuple[int, Any]]:
    """JSON lines fast, else concatenated (pretty-printed) JSON values."""
    lines = text.splitlines()
    try:
        parsed = [
            (number, orjson.loads(line)) for number, line in enumerate(lines, 1) if line.strip()
        ]
    except orjson.JSONDecodeError:
        parsed = None
    if parsed is not None:
        yield from parsed
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


def _yaml_documents(name: str, text: str) -> Iterator[tuple[int, Any]]:
    """Split on `---` ourselves, so every document keeps its own line number."""
    document: list[str] = []
    first_line = 1
    for number, line in enumerate([*text.splitlines(), "---"], 1):
        if line.rstrip() == "---" or line.startswith("--- "):
            body = "\n".join(document)
            if body.strip():
                yield first_line, _load_yaml(name, body, first_line)
            document, first_line = [], number + 1
        else:
            document.append(line)


def _load_yaml(name: str, body: str, first_line: int) -> Any:
    try:
        return yaml.load(body, Loader=_Loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = first_line + mark.line if mark is not None else first_line
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise InputFileError(f"{name}:{line}: invalid YAML: {problem}") from None


class _Loader(yaml.SafeLoader):
    """Safe YAML with timestamps left as strings: Kubernetes times are parsed later, once."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _unpack(where: str, value: Any) -> Iterator[Record]:
    if value is None:
        return
    if not isinstance(value, dict):
        raise InputFileError(f"{where}: expected a Kubernetes object, got {type(value).__name__}")
    if isinstance(value.get("items"), list):
        item_kind = str(value.get("kind") or "").removesuffix("List")
        for position, item in enumerate(value["items"]):
            item_where = f"{where}: items[{position}]"
            if isinstance(item, dict):
                yield Record(item_where, item, str(item.get("kind") or item_kind))
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
