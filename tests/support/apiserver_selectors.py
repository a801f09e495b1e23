"""fieldSelector and labelSelector parsing and matching, as the real server does it.

A selector compiles to a predicate over the *stored* object (core/v1 shape for Events).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from support.apiserver_resources import JSON, ResourceType, bad_request

Predicate = Callable[[JSON], bool]
FieldGetter = Callable[[JSON], str]


def _path(*keys: str) -> FieldGetter:
    def get(obj: JSON) -> str:
        value: Any = obj
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return ""
        return str(value).lower() if isinstance(value, bool) else str(value)

    return get


def _event_source(event: JSON) -> str:
    # [KK] pkg/registry/core/event/strategy.go: source.component, else reportingController
    return (event.get("source") or {}).get("component") or event.get("reportingComponent") or ""


_METADATA_FIELDS: dict[str, FieldGetter] = {
    "metadata.name": _path("metadata", "name"),
    "metadata.namespace": _path("metadata", "namespace"),
}

_EVENT_FIELDS: dict[str, FieldGetter] = {
    **_METADATA_FIELDS,
    **{
        f"involvedObject.{key}": _path("involvedObject", key)
        for key in (
            "kind",
            "namespace",
            "name",
            "uid",
            "apiVersion",
            "resourceVersion",
            "fieldPath",
        )
    },
    "reason": _path("reason"),
    "reportingComponent": _path("reportingComponent"),
    "source": _event_source,
    "type": _path("type"),
}

_EXTRA_FIELDS: dict[str, dict[str, FieldGetter]] = {
    "pods": {
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "status.phase": _path("status", "phase"),
        "status.podIP": _path("status", "podIP"),
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
    "nodes": {"spec.unschedulable": _path("spec", "unschedulable")},
    "namespaces": {"status.phase": _path("status", "phase")},
}


def _field_getter(resource: ResourceType, field: str) -> FieldGetter:
    if resource.is_event:
        if resource.is_events_v1:
            # [KK] pkg/apis/events/v1/conversion.go maps regarding.* onto involvedObject.*
            field = field.replace("regarding.", "involvedObject.", 1)
            if field == "reportingController":
                field = "reportingComponent"
        getter = _EVENT_FIELDS.get(field)
    else:
        getter = _METADATA_FIELDS.get(field) or _EXTRA_FIELDS.get(resource.plural, {}).get(field)
    if getter is None:
        raise bad_request(f"field label not supported: {field}")
    return getter


def _split_unescaped(text: str, separator: str) -> list[str]:
    """Split on `separator` unless it is backslash-escaped (fields.ParseSelector does this)."""
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


_FIELD_TERM = re.compile(r"^(?P<field>[^=!]+?)(?P<op>==|!=|=)(?P<value>.*)$")


def field_selector(resource: ResourceType, text: str | None) -> Predicate | None:
    if not text:
        return None
    terms: list[tuple[FieldGetter, bool, str]] = []
    for term in _split_unescaped(text, ","):
        if not term.strip():
            continue
        match = _FIELD_TERM.match(term.strip())
        if not match:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        getter = _field_getter(resource, match["field"].strip())
        terms.append((getter, match["op"] != "!=", match["value"]))

    def matches(obj: JSON) -> bool:
        return all((getter(obj) == value) == wanted for getter, wanted, value in terms)

    return matches


_LABEL_TERM = re.compile(
    r"""\s*(?:
        !\s*(?P<absent>[^\s,!=()]+)
      | (?P<key>[^\s,!=()]+)\s*(?:
            (?P<op>==|=|!=)\s*(?P<value>[^\s,()]*)
          | \s+(?P<set_op>in|notin)\s*\((?P<values>[^)]*)\)
        )?
    )\s*(?:,|$)""",
    re.VERBOSE,
)


def label_selector(text: str | None) -> Predicate | None:
    if not text or not text.strip():
        return None
    checks: list[Predicate] = []
    position = 0
    while position < len(text):
        match = _LABEL_TERM.match(text, position)
        if not match or match.end() == position:
            raise bad_request(f"unable to parse requirement: invalid label selector: {text!r}")
        checks.append(_label_check(match))
        position = match.end()

    def matches(obj: JSON) -> bool:
        return all(check((obj.get("metadata") or {}).get("labels") or {}) for check in checks)

    return matches


def _label_check(match: re.Match[str]) -> Callable[[dict[str, str]], bool]:
    if match["absent"]:
        key = match["absent"]
        return lambda labels: key not in labels
    key = match["key"]
    if match["op"] in ("=", "=="):
        value = match["value"]
        return lambda labels: labels.get(key) == value
    if match["op"] == "!=":
        value = match["value"]
        return lambda labels: labels.get(key) != value
    if match["set_op"]:
        values = {v.strip() for v in match["values"].split(",")}
        if match["set_op"] == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    return lambda labels: key in labels


def combine(*predicates: Predicate | None) -> Predicate | None:
    active = [p for p in predicates if p is not None]
    if not active:
        return None
    if len(active) == 1:
        return active[0]
    return lambda obj: all(p(obj) for p in active)
