"""The ways an event reaches the parser give the same result: a dict (files, tests), a
watch frame's bytes, a list page's item. Random real-shaped events and objects, mutated
the ways real data goes wrong, go through each."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from test_parse import EVENTS_V1, SCHEDULED_NEW_API_VIA_CORE

from eventtrace.core.model import EventState, KubeObject, Rejected
from eventtrace.source.frames import EventFrames
from eventtrace.source.parse import CLUSTER_SCOPED, parse_event, parse_object
from eventtrace.source.schema import Event
from helpers import core_event, kube_object, ref

TIMES = [
    None, "", "2026-03-01T12:00:00Z", "2026-03-01T12:00:00.5Z", "2026-03-01T12:00:00.123456Z",
    "2026-03-01T12:00:00.123456789Z", "2026-03-01T12:00:00+02:00", "2026-03-01 12:00:00Z",
    "2026-02-30T12:00:00Z", "2026-03-01T24:00:00Z", "yesterday", 1772366400, 12.5, [],
    "2026-03-01T12:00:00.Z", "2026-03-01T12:00:00.1a3Z", "2026-03-01T12:00:00.１２Z",
    "2026-03-01T12:00:00.000001Z", "2026-03-01T12:00:00,5Z", "2026-03-0１T12:00:00Z",
    "2026-03-01T12:00:00", "1772366400", 17723664000000,
    # Times no span can have (before 1970, after 2262-04-11T23:47:16.854775807Z), and
    # those next to them that it can.
    "0001-01-01T00:00:00Z", "1969-12-31T23:59:59.999999Z", "1970-01-01T00:00:00Z",
    "2262-04-11T23:47:16.854775Z", "2262-04-11T23:47:16.854776Z", "9999-12-31T23:59:59Z",
]  # fmt: skip
ODD = [None, "", "x", "é" * 3, 0, -1, 3, 3.0, 2.5, True, [], {}, {"a": 1}, "3", "3.0", "true"]


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


@settings(max_examples=3000, deadline=None)
@given(mutated(base_events(), PATHS), st.sampled_from([64, 4096]))
def test_a_dict_a_frame_and_a_page_item_read_the_same(raw: dict[str, Any], limit: int) -> None:
    from_dict = parse_event(copy.deepcopy(raw), "t", max_message_bytes=limit)
    assert isinstance(from_dict, EventState | Rejected)
    if isinstance(from_dict, Rejected):
        assert from_dict.category in {"schema", "no_time", "no_name"}

    frame = EventFrames().frame(orjson.dumps({"type": "ADDED", "object": raw}))
    assert parse_event(frame.object, "t", max_message_bytes=limit) == from_dict
    if isinstance(from_dict, EventState):
        assert isinstance(frame.object, Event)  # decoded straight from the bytes

    page = EventFrames().page(orjson.dumps({"metadata": {}, "items": [raw]}))
    (item,) = page.items
    from_page = parse_event(item, "t", max_message_bytes=limit)
    if isinstance(item, Rejected):  # named by its place on the page, in the same words
        assert isinstance(from_dict, Rejected) and from_dict.category == "schema"
        assert from_page == Rejected("page item 0", from_dict.reason, from_dict.category)
    else:
        assert from_page == from_dict


def base_objects() -> list[dict[str, Any]]:
    owner = ref("Deployment", "web", api="apps/v1")
    rs = kube_object("ReplicaSet", "web-1", owner, api="apps/v1")
    rs["metadata"]["ownerReferences"].append({"kind": "Node", "name": "node-a", "uid": "n1"})
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


@settings(max_examples=1000, deadline=None)
@given(mutated(base_objects(), OBJECT_PATHS))
def test_any_object_is_read_or_rejected_by_name(raw: dict[str, Any]) -> None:
    obj = parse_object(copy.deepcopy(raw), "objects.json:4")
    if isinstance(obj, Rejected):
        assert obj.where == "objects.json:4"
        assert obj.category in {"schema", "no_name"}
        return
    assert isinstance(obj, KubeObject)
    meta = raw["metadata"]
    assert (obj.ref.kind, obj.ref.name) == (raw["kind"], meta["name"])
    for owner in obj.owners:
        expected = "" if owner.ref.kind in CLUSTER_SCOPED else meta.get("namespace", "")
        assert owner.ref.namespace == expected
    assert obj.spec_manager in {"", "helm", "kubectl"}
