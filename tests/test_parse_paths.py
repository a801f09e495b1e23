"""The parser's fast paths (msgspec shapes for events, plain dict reads for objects) and
its strict path (pydantic) must agree on everything the fast path claims to understand.
Random real-shaped events and objects, mutated the ways real data goes wrong, go through
both."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_parse import EVENTS_V1, SCHEDULED_NEW_API_VIA_CORE

from eventtrace.core.model import Rejected
from eventtrace.source.fast_path import fast_event, fast_object
from eventtrace.source.parse import parse_event, parse_event_strictly, parse_object_strictly
from eventtrace.source.shapes import EventShape
from helpers import core_event, kube_object, ref

TIMES = [
    None, "", "2026-03-01T12:00:00Z", "2026-03-01T12:00:00.5Z", "2026-03-01T12:00:00.123456Z",
    "2026-03-01T12:00:00.123456789Z", "2026-03-01T12:00:00+02:00", "2026-03-01 12:00:00Z",
    "2026-02-30T12:00:00Z", "2026-03-01T24:00:00Z", "yesterday", 1772366400, 12.5, [],
    "2026-03-01T12:00:00.Z", "2026-03-01T12:00:00.1a3Z", "2026-03-01T12:00:00.１２Z",
    "2026-03-01T12:00:00.000001Z", "2026-03-01T12:00:00,5Z", "2026-03-0１T12:00:00Z",
    # Times no span can have (before 1970, after 2262-04-11T23:47:16.854775807Z), and
    # those next to them that it can.
    "0001-01-01T00:00:00Z", "1969-12-31T23:59:59.999999Z", "1970-01-01T00:00:00Z",
    "2262-04-11T23:47:16.854775Z", "2262-04-11T23:47:16.854776Z", "9999-12-31T23:59:59Z",
]  # fmt: skip
ODD = [None, "", "x", "é" * 3, 0, -1, 3, 3.0, True, [], {}, {"a": 1}, "3"]


def base_events() -> list[dict[str, Any]]:
    legacy = core_event("web.1", ref("Pod", "web-1"), "BackOff", "Back-off", at=3, last=9, count=4,
                        host="node-a", type="Warning")  # fmt: skip
    return [legacy, SCHEDULED_NEW_API_VIA_CORE, EVENTS_V1]


PATHS = [
    ("metadata",), ("metadata", "name"), ("metadata", "namespace"), ("metadata", "uid"),
    ("metadata", "resourceVersion"), ("metadata", "creationTimestamp"),
    ("involvedObject",), ("involvedObject", "kind"), ("involvedObject", "name"),
    ("involvedObject", "uid"), ("involvedObject", "fieldPath"), ("regarding",), ("regarding", "name"),
    ("reason",), ("message",), ("note",), ("type",), ("source",), ("source", "component"),
    ("source", "host"), ("deprecatedSource",), ("firstTimestamp",), ("lastTimestamp",),
    ("eventTime",), ("deprecatedFirstTimestamp",), ("count",), ("deprecatedCount",),
    ("series",), ("series", "count"), ("series", "lastObservedTime"), ("action",),
    ("reportingComponent",), ("reportingController",), ("reportingInstance",),
]  # fmt: skip


@st.composite
def mutated(
    draw: st.DrawFn, bases: list[dict[str, Any]], paths: list[tuple[str, ...]]
) -> dict[str, Any]:
    raw = copy.deepcopy(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(0, 4))):
        path = draw(st.sampled_from(paths))
        parent = raw
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        action = draw(st.sampled_from(["drop", "odd", "time"]))
        if action == "drop":
            parent.pop(path[-1], None)
        elif action == "odd":
            # A copy: the same {} set at two paths, then changed, would nest in itself.
            parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(ODD)))
        else:
            parent[path[-1]] = draw(st.sampled_from(TIMES))
    return raw


def same(fast: Any, strict: Any) -> bool:
    if isinstance(fast, Rejected) or isinstance(strict, Rejected):
        return (
            isinstance(fast, Rejected)
            and isinstance(strict, Rejected)
            and fast.category == strict.category
        )
    return bool(fast == strict)


@settings(max_examples=3000, deadline=None)
@given(mutated(base_events(), PATHS), st.sampled_from([64, 4096]))
def test_the_fast_event_path_agrees_with_pydantic(raw: dict[str, Any], limit: int) -> None:
    strict = parse_event_strictly(copy.deepcopy(raw), "t", max_message_bytes=limit)
    # From a dict (files, tests) and from JSON bytes read into the shape (a watch frame).
    assert same(parse_event(copy.deepcopy(raw), "t", max_message_bytes=limit), strict)
    try:
        shape = msgspec.json.decode(orjson.dumps(raw), type=EventShape)
    except msgspec.ValidationError:
        return  # the watch reads such a frame as a dict: parse_event, above
    from_shape = parse_event(shape, "t", max_message_bytes=limit)
    assert same(from_shape, strict), (shape, strict)
    if isinstance(strict, Rejected):  # in the models' own words, as from the input itself
        assert str(from_shape) == str(strict)
    fast = fast_event(shape, limit)
    if fast is not None:
        assert same(fast, strict), (fast, strict)


@pytest.mark.parametrize("moment", [moment for moment in TIMES if isinstance(moment, str)])
@pytest.mark.parametrize("field", ["eventTime", "lastTimestamp"])
def test_every_time_reads_the_same_either_way(field: str, moment: str) -> None:
    """Each time form above, twice over: the second reading comes from the fast path's
    caches (by whole text, and by the second it falls in)."""
    for _ in range(2):
        raw = copy.deepcopy(base_events()[0])
        raw[field] = moment
        strict = parse_event_strictly(copy.deepcopy(raw), "t")
        fast = fast_event(msgspec.convert(raw, EventShape), 4096)
        if fast is not None:
            assert fast == strict, (moment, fast, strict)
        elif moment in WELL_FORMED:
            raise AssertionError(f"the fast path deferred {moment!r}")
        assert same(parse_event(raw, "t"), strict)


# The forms the fast path must read itself (the rest it may leave to pydantic).
WELL_FORMED = {
    "2026-03-01T12:00:00Z", "2026-03-01T12:00:00.5Z", "2026-03-01T12:00:00.123456Z",
    "2026-03-01T12:00:00.000001Z", "1970-01-01T00:00:00Z", "1969-12-31T23:59:59.999999Z",
}  # fmt: skip


def test_the_fast_event_path_takes_the_common_shapes() -> None:
    """Well-formed events of both APIs are the fast path's (else the property above would
    hold for a fast path that always deferred)."""
    for raw in base_events():
        shape = msgspec.convert(raw, EventShape)
        fast = fast_event(shape, 4096)
        assert fast is not None, raw
        assert fast == parse_event_strictly(raw, "t")


def base_objects() -> list[dict[str, Any]]:
    owner = ref("Deployment", "web", api="apps/v1")
    rs = kube_object("ReplicaSet", "web-1", owner, api="apps/v1")
    rs["metadata"]["managedFields"] = [
        {"manager": "kubectl", "time": "2026-01-01T00:00:00Z", "fieldsV1": {"f:spec": {}}},
        {
            "manager": "kube-controller-manager",
            "time": "2026-01-02T00:00:00Z",
            "fieldsV1": {"f:status": {}},
        },
        {
            "manager": "helm",
            "time": "2026-01-01T00:00:00Z",
            "fieldsV1": {"f:spec": {"f:replicas": {}}},
        },
    ]
    node = kube_object("Node", "node-a", namespace="")
    return [rs, node]


OBJECT_PATHS = [
    ("kind",), ("apiVersion",), ("metadata",), ("metadata", "name"), ("metadata", "namespace"),
    ("metadata", "uid"), ("metadata", "resourceVersion"), ("metadata", "creationTimestamp"),
    ("metadata", "ownerReferences"), ("metadata", "managedFields"),
]  # fmt: skip


@settings(max_examples=2000, deadline=None)
@given(mutated(base_objects(), OBJECT_PATHS))
def test_the_fast_object_path_agrees_with_pydantic(raw: dict[str, Any]) -> None:
    fast = fast_object(copy.deepcopy(raw))
    if fast is not None:
        strict = parse_object_strictly(copy.deepcopy(raw), "t")
        assert same(fast, strict), (fast, strict)
