"""Real event shapes map to one model; bad events are rejected one by one, with reasons.

Every event here is read both ways `eventtrace` reads one: as a dict (files) and from
the bytes of a watch frame (`read_both_ways`), to the same result."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

import orjson
import pytest

from eventtrace.core.model import EventState, KubeObject, ObjectRef, OwnerRef, Rejected
from eventtrace.source.frames import EventFrames
from eventtrace.source.parse import (
    TRUNCATED,
    message_was_truncated,
    parse_event,
    parse_object,
    to_ns,
)
from eventtrace.source.schema import Event
from helpers import core_event, ref

SCHEDULED_NEW_API_VIA_CORE = {  # as in the kind capture: the scheduler's events.k8s.io event
    "apiVersion": "v1", "kind": "Event",
    "metadata": {"name": "px-5d567cc74c-ss4lb.16806e83e6f5", "namespace": "default", "uid": "u1",
                 "resourceVersion": "5361650"},
    "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "px-5d567cc74c-ss4lb",
                       "namespace": "default", "uid": "p1"},
    "reason": "Scheduled", "message": "Successfully assigned default/px-5d567cc74c-ss4lb to kind-control-plane",
    "source": {}, "firstTimestamp": None, "lastTimestamp": None,
    "eventTime": "2021-05-19T09:42:58.638469Z", "action": "Binding", "type": "Normal",
    "reportingComponent": "default-scheduler", "reportingInstance": "default-scheduler-kind-control-plane",
}  # fmt: skip

EVENTS_V1 = {  # the same kind of event read through events.k8s.io/v1, repeated (series)
    "apiVersion": "events.k8s.io/v1", "kind": "Event",
    "metadata": {"name": "web-0.17a", "namespace": "shop", "uid": "u2", "resourceVersion": "9"},
    "regarding": {"kind": "Pod", "name": "web-0", "namespace": "shop", "uid": "p2",
                  "fieldPath": "spec.containers{app}"},
    "reason": "BackOff", "note": "Back-off restarting failed container app", "type": "Warning",
    "eventTime": "2026-03-01T12:00:00.250000Z",
    "series": {"count": 7, "lastObservedTime": "2026-03-01T12:03:10.500000Z"},
    "deprecatedSource": {"component": "kubelet", "host": "node-a"},
    "deprecatedFirstTimestamp": None, "deprecatedLastTimestamp": None,
    "reportingController": "kubelet", "reportingInstance": "node-a", "action": "",
}  # fmt: skip

T_3S = 1772366403_000000000  # helpers.stamp(3): 2026-03-01T12:00:03Z
T_9S = 1772366409_000000000


def read_both_ways(raw: dict[str, Any], where: str = "t", limit: int = 4096) -> Any:
    """`parse_event` on the dict, and on what a watch frame of it decodes to: the same."""
    from_dict = parse_event(copy.deepcopy(raw), where, max_message_bytes=limit)
    frame = EventFrames().frame(orjson.dumps({"type": "MODIFIED", "object": raw}))
    from_bytes = parse_event(frame.object, where, max_message_bytes=limit)
    assert from_bytes == from_dict
    if isinstance(from_dict, EventState):  # decoded straight into the schema's struct
        assert isinstance(frame.object, Event)
    return from_dict


def accepted(raw: dict[str, Any], limit: int = 4096) -> EventState:
    state = read_both_ways(raw, limit=limit)
    assert isinstance(state, EventState), str(state)
    return state


def pod_event(**fields: Any) -> dict[str, Any]:
    """A core/v1 event first seen at 12:00:03 and last at 12:00:09, then `fields` set."""
    raw = core_event("x.1", ref("Pod", "x"), "Pulled", "m", at=3, last=9, count=2)
    raw["metadata"]["creationTimestamp"] = raw["firstTimestamp"]
    raw.update(fields)
    return raw


def test_new_api_shape_through_core_v1() -> None:
    state = accepted(SCHEDULED_NEW_API_VIA_CORE)
    assert state == EventState(
        uid="u1",
        name="px-5d567cc74c-ss4lb.16806e83e6f5",
        namespace="default",
        reason="Scheduled",
        message="Successfully assigned default/px-5d567cc74c-ss4lb to kind-control-plane",
        type="Normal",
        involved=ObjectRef("Pod", "px-5d567cc74c-ss4lb", "default", "p1", "v1"),
        count=1,
        first_ns=1621417378_638469000,
        last_ns=1621417378_638469000,
        component="default-scheduler",
        instance="default-scheduler-kind-control-plane",
        action="Binding",
        resource_version="5361650",
    )


def test_events_k8s_io_v1_shape_with_series() -> None:
    state = accepted(EVENTS_V1)
    assert state == EventState(
        uid="u2",
        name="web-0.17a",
        namespace="shop",
        reason="BackOff",
        message="Back-off restarting failed container app",
        type="Warning",
        involved=ObjectRef("Pod", "web-0", "shop", "p2"),
        count=7,
        first_ns=1772366400_250000000,
        last_ns=1772366590_500000000,
        field_path="spec.containers{app}",
        component="kubelet",
        instance="node-a",
        host="node-a",
        resource_version="9",
    )


def test_events_k8s_io_v1_deprecated_fields() -> None:
    raw = copy.deepcopy(EVENTS_V1)
    del raw["series"], raw["eventTime"], raw["deprecatedSource"]
    raw.update(
        deprecatedFirstTimestamp="2026-03-01T12:00:03Z",
        deprecatedLastTimestamp="2026-03-01T12:00:09Z",
        deprecatedCount=4,
        reportingInstance="",
    )
    state = accepted(raw)
    assert (state.first_ns, state.last_ns, state.count) == (T_3S, T_9S, 4)
    assert (state.component, state.instance, state.host) == ("kubelet", "", "")


def test_legacy_event_without_count_and_with_only_last_timestamp() -> None:
    raw = core_event("x.1", ref("Pod", "x"), "Started", "Started container")
    del raw["count"]
    raw["firstTimestamp"] = None
    state = accepted(raw)
    assert state.count == 1 and state.first_ns == state.last_ns


def test_last_before_first_is_clamped() -> None:
    raw = core_event("x.1", ref("Pod", "x"), "Pulled", "m", at=10, last=5, count=2)
    state = accepted(raw)
    assert state.last_ns == state.first_ns


@pytest.mark.parametrize(
    ("fields", "first", "last"),
    [
        ({}, T_3S, T_9S),
        ({"eventTime": "2026-03-01T12:00:01.5Z"}, 1772366401_500000000, T_9S),
        ({"firstTimestamp": None}, T_9S, T_9S),  # then lastTimestamp
        ({"firstTimestamp": None, "lastTimestamp": None}, T_3S, T_3S),  # creationTimestamp
        (
            {"series": {"count": 3, "lastObservedTime": "2026-03-01T12:00:30Z"}},
            T_3S,
            1772366430_000000000,
        ),
        (  # the series' last time stands in for first, before creationTimestamp
            {
                "firstTimestamp": None,
                "lastTimestamp": None,
                "series": {"count": 3, "lastObservedTime": "2026-03-01T12:00:30Z"},
            },
            1772366430_000000000,
            1772366430_000000000,
        ),
    ],
)
def test_the_order_times_stand_in_for_each_other(
    fields: dict[str, Any], first: int, last: int
) -> None:
    state = accepted(pod_event(**fields))
    assert (state.first_ns, state.last_ns) == (first, last)


@pytest.mark.parametrize(
    "unusable",
    [
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "1969-12-31T23:59:59.999999Z",
        "2262-04-11T23:47:16.854776Z",
        "2262-04-12T00:00:00Z",
        "9999-12-31T23:59:59Z",
    ],
)
def test_a_time_no_span_can_have_counts_as_null(unusable: str) -> None:
    # Kubernetes' zero time, before 1970, after 2262: OTLP has nanoseconds since 1970 in 64
    # bits (signed, in the backends). The event's other times stand in, as for a null.
    raw = core_event("x.1", ref("Pod", "x"), "Pulled", "m", at=10, last=20, count=2)
    good_first, good_last = raw["firstTimestamp"], raw["lastTimestamp"]
    raw["firstTimestamp"] = unusable
    state = accepted(raw)
    assert state.first_ns == state.last_ns == to_ns(datetime.fromisoformat(good_last))
    raw["firstTimestamp"], raw["lastTimestamp"] = good_first, unusable
    state = accepted(raw)
    assert state.first_ns == state.last_ns == to_ns(datetime.fromisoformat(good_first))
    raw["eventTime"] = unusable
    assert accepted(raw).first_ns == to_ns(datetime.fromisoformat(good_first))
    raw["firstTimestamp"] = raw["metadata"]["creationTimestamp"] = unusable
    rejected = read_both_ways(raw)
    assert isinstance(rejected, Rejected) and rejected.category == "no_time"
    assert rejected.reason == (
        "event default/x.1: no usable time (eventTime, firstTimestamp, lastTimestamp and "
        "creationTimestamp are all null, or before 1970 or after 2262)"
    )


@pytest.mark.parametrize(
    ("written", "nanoseconds"),
    [
        ("2026-03-01T12:00:00Z", 1772366400_000000000),
        ("2026-03-01T12:00:00.5Z", 1772366400_500000000),
        ("2026-03-01T12:00:00.123456Z", 1772366400_123456000),
        ("2026-03-01T12:00:00.000001Z", 1772366400_000001000),
        # Beyond microseconds, rounded to the nearest (Kubernetes writes at most six digits).
        ("2026-03-01T12:00:00.123456789Z", 1772366400_123457000),
        ("2026-03-01T12:00:00+02:00", 1772359200_000000000),
        ("2026-03-01T12:00:00-0130", 1772371800_000000000),
        ("2026-03-01 12:00:00Z", 1772366400_000000000),
        ("2026-03-01t12:00:00z", 1772366400_000000000),
        ("2026-03-01T12:00:00", 1772366400_000000000),  # no zone: UTC
        (1772366400, 1772366400_000000000),  # seconds since 1970
        ("1772366400", 1772366400_000000000),
        (12.5, 12_500000000),
        ("1970-01-01T00:00:00Z", 0),
        ("2262-04-11T23:47:16.854775Z", 9223372036854775000),  # the last microsecond
    ],
)
def test_every_time_form_read(written: Any, nanoseconds: int) -> None:
    assert accepted(pod_event(eventTime=written)).first_ns == nanoseconds


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ("yesterday", 'eventTime = "yesterday": invalid RFC3339 encoded datetime'),
        ("", 'eventTime = "": invalid RFC3339 encoded datetime'),
        ("2026-02-30T12:00:00Z", 'eventTime = "2026-02-30T12:00:00Z": invalid RFC3339 encoded datetime'),
        ("2026-03-01T24:00:00Z", 'eventTime = "2026-03-01T24:00:00Z": invalid RFC3339 encoded datetime'),
        ("2026-03-01T12:00:00.Z", 'eventTime = "2026-03-01T12:00:00.Z": invalid RFC3339 encoded datetime'),
        ("2026-03-01T12:00:00.1a3Z", 'eventTime = "2026-03-01T12:00:00.1a3Z": invalid RFC3339 encoded datetime'),
        ("2026-03-01T12:00:00.１２Z", 'eventTime = "2026-03-01T12:00:00.１２Z": invalid RFC3339 encoded datetime'),
        ("2026-03-0１T12:00:00Z", 'eventTime = "2026-03-0１T12:00:00Z": invalid RFC3339 encoded datetime'),
        ("2026-03-01T12:00:00,5Z", 'eventTime = "2026-03-01T12:00:00,5Z": invalid RFC3339 encoded datetime'),
        ("2026-03-01", 'eventTime = "2026-03-01": invalid RFC3339 encoded datetime'),
        (17723664000000, "eventTime = 17723664000000: timestamp is out of range"),
        (True, "eventTime = true: expected datetime | null, got bool"),
        ([], "eventTime: expected datetime | null, got array"),
        ({}, "eventTime: expected datetime | null, got object"),
    ],
)  # fmt: skip
def test_a_time_that_is_no_time_is_rejected_by_name(written: Any, problem: str) -> None:
    rejected = read_both_ways(pod_event(eventTime=written), "events.json:7")
    assert isinstance(rejected, Rejected) and rejected.category == "schema"
    assert str(rejected) == f"events.json:7: event default/x.1: {problem}"


@pytest.mark.parametrize(
    "path",
    [
        ("firstTimestamp",),
        ("lastTimestamp",),
        ("eventTime",),
        ("deprecatedFirstTimestamp",),
        ("deprecatedLastTimestamp",),
        ("metadata", "creationTimestamp"),
        ("series", "lastObservedTime"),
    ],
)
def test_every_time_field_is_read_and_named(path: tuple[str, ...]) -> None:
    raw = pod_event(series={"count": 2})
    parent = raw
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = "2026-03-01T12:00:00.000001Z"
    assert isinstance(accepted(raw), EventState)
    parent[path[-1]] = "noon"
    rejected = read_both_ways(raw)
    assert isinstance(rejected, Rejected)
    assert rejected.reason == (
        f'event default/x.1: {".".join(path)} = "noon": invalid RFC3339 encoded datetime'
    )


def test_times_are_exact_to_the_nanosecond() -> None:
    assert to_ns(datetime.fromisoformat("2021-05-19T09:42:58.638469+00:00")) == 1621417378638469000
    assert to_ns(datetime.fromisoformat("2021-05-19T09:42:58.638469")) == 1621417378638469000


@pytest.mark.parametrize(
    ("fields", "count"),
    [
        ({}, 2),
        ({"count": None}, 1),
        ({"count": 0}, 1),
        ({"count": -3}, 1),
        ({"count": "3"}, 3),  # lax: a number written as a string
        ({"count": "3.0"}, 3),
        ({"count": 3.0}, 3),  # lax: a whole number written as a float
        ({"count": None, "deprecatedCount": 5}, 5),
        ({"series": {"count": 7}}, 7),  # the series' count wins
        ({"series": {"count": 2.0}}, 2),
        ({"series": {"count": "4"}}, 4),
        ({"series": {"count": 0}}, 2),  # not a count: the event's own
    ],
)
def test_the_count(fields: dict[str, Any], count: int) -> None:
    assert accepted(pod_event(**fields)).count == count


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {"component": "kubelet", "instance": "", "host": ""}),
        (
            {"source": {"component": "kubelet", "host": "node-a"}},
            {"component": "kubelet", "instance": "node-a", "host": "node-a"},
        ),
        (
            {"source": {"host": "node-a"}, "reportingComponent": "kubelet"},
            {"component": "kubelet", "instance": "node-a", "host": "node-a"},
        ),
        (
            {"source": {}, "reportingComponent": None, "reportingController": "ctl"},
            {"component": "ctl", "instance": "", "host": ""},
        ),
        (
            {"source": None, "reportingInstance": "node-b"},
            {"component": "", "instance": "node-b", "host": ""},
        ),
        ({"reason": "", "type": ""}, {"reason": "Unknown", "type": "Normal"}),
        ({"action": None}, {"action": ""}),
    ],
)
def test_components_and_defaults(fields: dict[str, Any], expected: dict[str, str]) -> None:
    state = accepted(pod_event(**fields))
    assert {key: getattr(state, key) for key in expected} == expected


def test_uid_falls_back_to_namespace_and_name() -> None:
    raw = pod_event()
    del raw["metadata"]["uid"]
    assert accepted(raw).uid == "default/x.1"
    raw["metadata"] = {"uid": "only-a-uid"}
    state = accepted(raw)
    assert (state.uid, state.name, state.namespace) == ("only-a-uid", "", "")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda e: e.pop("involvedObject"), "event default/x.1: involvedObject is missing (or regarding, in events.k8s.io/v1)"),
        (lambda e: e.update(involvedObject=None), "event default/x.1: involvedObject is missing (or regarding, in events.k8s.io/v1)"),
        (lambda e: e["involvedObject"].pop("name"), "event default/x.1: involvedObject.name is missing"),
        (lambda e: e["involvedObject"].update(kind=""), 'event default/x.1: involvedObject.kind = "": expected str of length >= 1'),
        (lambda e: e["involvedObject"].update(uid=7), "event default/x.1: involvedObject.uid = 7: expected str, got int"),
        (lambda e: e.update(firstTimestamp="yesterday"), 'event default/x.1: firstTimestamp = "yesterday": invalid RFC3339 encoded datetime'),
        (lambda e: e.update(count="many"), 'event default/x.1: count = "many": expected int | null, got str'),
        (lambda e: e.update(count=3.5), "event default/x.1: count = 3.5: expected int | null, got float"),
        (lambda e: e.update(count=True), "event default/x.1: count = true: expected int | null, got bool"),
        (lambda e: e.update(count=[1]), "event default/x.1: count: expected int | null, got array"),
        (lambda e: e.update(reason=3), "event default/x.1: reason = 3: expected str, got int"),
        (lambda e: e.update(type=None), "event default/x.1: type = null: expected str, got null"),
        (lambda e: e.update(series={}), "event default/x.1: series.count is missing"),
        (lambda e: e.update(series={"count": -2}), "event default/x.1: series.count = -2: expected int >= 0"),
        (lambda e: e.update(series={"count": 2.5}), "event default/x.1: series.count = 2.5: expected int, got float"),
        (lambda e: e.update(source="kubelet"), 'event default/x.1: source = "kubelet": expected object | null, got str'),
        (lambda e: e.update(message="x" * 100), None),  # not every change is wrong
        (lambda e: e["metadata"].update(namespace=["a"]), "event x.1: metadata.namespace: expected str, got array"),
        (lambda e: e["metadata"].update(name=3), "event (unnamed): metadata.name = 3: expected str, got int"),
        (lambda e: e.update(metadata=None), "event (unnamed): metadata = null: expected object, got null"),
        (lambda e: e.pop("metadata"), "event (unnamed): metadata is missing"),
        (lambda e: e.update(firstTimestamp=None, lastTimestamp=None), "event default/x.1: no usable time"),
        (lambda e: e.update(metadata={}), "event without metadata.name or metadata.uid"),
    ],
)  # fmt: skip
def test_bad_events_are_rejected_with_a_reason(mutate: Any, expected: str | None) -> None:
    raw = copy.deepcopy(core_event("x.1", ref("Pod", "x"), "Started", "m"))
    mutate(raw)
    result = read_both_ways(raw, "events.json:7")
    if expected is None:
        assert isinstance(result, EventState)
        return
    assert isinstance(result, Rejected)
    assert str(result).startswith("events.json:7: " + expected), str(result)
    if not expected.endswith(("no usable time", "metadata.uid")):
        assert str(result) == "events.json:7: " + expected
    category = {"no usable time": "no_time", "metadata.uid": "no_name"}
    assert result.category == next(
        (label for end, label in category.items() if expected.endswith(end)), "schema"
    )


def test_a_long_value_is_shown_cut() -> None:
    rejected = read_both_ways(pod_event(eventTime="x" * 100))
    assert isinstance(rejected, Rejected)
    assert rejected.reason == (
        f'event default/x.1: eventTime = "{"x" * 56}...: invalid RFC3339 encoded datetime'
    )


def test_not_an_object_at_all() -> None:
    result = parse_event(["a"], "f:1")
    assert result == Rejected("f:1", "expected an Event object, got list", "not_an_object")


def test_a_rejected_list_item_is_handed_back_as_it_is() -> None:
    """frames.py makes a list item that does not fit a Rejected; the caller counts it."""
    rejected = Rejected("page item 3", "event a/b: count is wrong", "schema")
    assert parse_event(rejected, "watch") is rejected


def test_a_huge_message_is_cut_not_dropped() -> None:
    state = accepted(pod_event(message="é" * 600_000), limit=4096)  # 1.2 MB of UTF-8
    assert message_was_truncated(state)
    assert state.message == "é" * 2048 + TRUNCATED


@pytest.mark.parametrize(
    ("message", "limit", "kept"),
    [
        ("x" * 10, 10, "x" * 10),  # at the limit: whole
        ("x" * 11, 10, "x" * 10 + TRUNCATED),
        ("é" * 5, 10, "é" * 5),
        ("é" * 6, 10, "é" * 5 + TRUNCATED),
        ("é" * 6, 11, "é" * 5 + TRUNCATED),  # never half a character
        ("", 10, ""),
    ],
)
def test_messages_are_bounded_in_utf8_bytes(message: str, limit: int, kept: str) -> None:
    state = accepted(pod_event(message=message), limit=limit)
    assert state.message == kept
    assert message_was_truncated(state) == kept.endswith(TRUNCATED)


def test_the_note_is_the_message_in_events_k8s_io_v1() -> None:
    assert accepted(EVENTS_V1, limit=8).message == "Back-off" + TRUNCATED


def replica_set(**meta: Any) -> dict[str, Any]:
    return {
        "kind": "ReplicaSet",
        "apiVersion": "apps/v1",
        "metadata": {"name": "rs", "namespace": "ns", "uid": "r1", "resourceVersion": "5", **meta},
    }


def test_objects_keep_controller_owner_and_spec_manager() -> None:
    raw = replica_set(
        ownerReferences=[
            {"kind": "Foo", "name": "other", "uid": "o1", "apiVersion": "x/v1"},
            {"kind": "Deployment", "name": "d", "uid": "d1", "apiVersion": "apps/v1", "controller": True},
            {"kind": "Node", "name": "n", "uid": "n1", "controller": False},
        ],
        managedFields=[
            {"manager": "kubectl", "time": "2026-01-01T00:00:00Z", "fieldsV1": {"f:spec": {}}},
            {"manager": "helm", "time": "2026-01-02T00:00:00Z", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "kube-controller-manager", "time": "2026-01-03T00:00:00Z", "fieldsV1": {"f:status": {}}},
        ],
    )  # fmt: skip
    assert parse_object(raw, "t") == KubeObject(
        ref=ObjectRef("ReplicaSet", "rs", "ns", "r1", "apps/v1"),
        owners=(
            OwnerRef(ObjectRef("Foo", "other", "ns", "o1", "x/v1"), controller=False),
            OwnerRef(ObjectRef("Deployment", "d", "ns", "d1", "apps/v1"), controller=True),
            OwnerRef(ObjectRef("Node", "n", "", "n1"), controller=False),  # cluster-scoped
        ),
        spec_manager="helm",
        resource_version="5",
    )


@pytest.mark.parametrize(
    ("entries", "manager"),
    [
        ([], ""),
        ([{"manager": "a", "fieldsV1": {"f:status": {}}}], ""),
        ([{"manager": "", "time": "2026-01-02T00:00:00Z", "fieldsV1": {"f:spec": {}}}], ""),
        ([{"manager": "a", "time": "2026-01-02T00:00:00Z"}], ""),
        ([{"manager": "a", "fieldsV1": None}], ""),
        (  # as new: the later entry
            [
                {"manager": "a", "time": "2026-01-02T00:00:00Z", "fieldsV1": {"f:spec": {}}},
                {"manager": "b", "time": "2026-01-02T00:00:00Z", "fieldsV1": {"f:spec": {}}},
            ],
            "b",
        ),
        (  # newer first
            [
                {"manager": "a", "time": "2026-01-03T00:00:00+02:00", "fieldsV1": {"f:spec": {}}},
                {"manager": "b", "time": "2026-01-02T23:00:00Z", "fieldsV1": {"f:spec": {}}},
            ],
            "b",
        ),
        (  # no time: as of 1970; a time without zone: UTC
            [
                {"manager": "a", "time": "2026-01-02T00:00:00", "fieldsV1": {"f:spec": {}}},
                {"manager": "b", "fieldsV1": {"f:spec": {}}},
            ],
            "a",
        ),
    ],
)
def test_the_spec_manager_is_the_newest_to_touch_the_spec(
    entries: list[dict[str, Any]], manager: str
) -> None:
    obj = parse_object(replica_set(managedFields=entries), "t")
    assert isinstance(obj, KubeObject) and obj.spec_manager == manager


@pytest.mark.parametrize(
    ("controller", "read"), [(None, False), ("true", True), (1, True), (0, False), ("false", False)]
)
def test_lax_controller_flags(controller: Any, read: bool) -> None:
    raw = replica_set(
        ownerReferences=[{"kind": "Deployment", "name": "d", "controller": controller}]
    )
    obj = parse_object(raw, "t")
    assert isinstance(obj, KubeObject) and obj.owners[0].controller is read


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        (
            {"ownerReferences": [{"kind": "Deployment", "name": 5}]},
            "objects.json:3: ReplicaSet ns/rs: metadata.ownerReferences[0].name = 5: expected str, got int",
        ),
        (
            {"ownerReferences": [{"kind": "Deployment"}]},
            "objects.json:3: ReplicaSet ns/rs: metadata.ownerReferences[0].name is missing",
        ),
        (
            {"ownerReferences": [{"kind": "D", "name": "d", "controller": "yes"}]},
            'objects.json:3: ReplicaSet ns/rs: metadata.ownerReferences[0].controller = "yes": expected bool | null, got str',
        ),
        (
            {"ownerReferences": None},
            "objects.json:3: ReplicaSet ns/rs: metadata.ownerReferences = null: expected array, got null",
        ),
        (
            {"managedFields": [{"manager": "a", "time": "x"}]},
            'objects.json:3: ReplicaSet ns/rs: metadata.managedFields[0].time = "x": invalid RFC3339 encoded datetime',
        ),
        (
            {"creationTimestamp": "x"},
            'objects.json:3: ReplicaSet ns/rs: metadata.creationTimestamp = "x": invalid RFC3339 encoded datetime',
        ),
    ],
)  # fmt: skip
def test_bad_objects_are_rejected_with_a_reason(meta: dict[str, Any], expected: str) -> None:
    result = parse_object(replica_set(**meta), "objects.json:3")
    assert isinstance(result, Rejected) and result.category == "schema"
    assert str(result) == expected


def test_a_fields_v1_that_is_no_object_touches_nothing() -> None:
    """Only the spec manager reads fieldsV1: an odd one costs the object nothing else."""
    obj = parse_object(replica_set(managedFields=[{"manager": "a", "fieldsV1": []}]), "t")
    assert isinstance(obj, KubeObject) and obj.spec_manager == ""


def test_objects_that_are_not_or_have_no_name() -> None:
    assert parse_object("pod", "f:1") == Rejected(
        "f:1", "expected an object, got str", "not_an_object"
    )
    assert parse_object({"kind": "Pod", "metadata": {}}, "f:1") == Rejected(
        "f:1", "Pod without metadata.name", "no_name"
    )
    assert parse_object({"metadata": {"name": "p"}}, "f:1") == Rejected(
        "f:1", "object p: kind is missing", "schema"
    )


def test_list_items_without_kind_take_the_lists_kind() -> None:
    obj = parse_object({"metadata": {"name": "n1", "uid": "x"}}, "t", kind="Node")
    assert isinstance(obj, KubeObject) and obj.ref.kind == "Node"
    assert isinstance(parse_object({"metadata": {"name": "n1"}}, "t"), Rejected)
