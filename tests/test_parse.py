"""Real event shapes map to one model; bad events are rejected one by one, with reasons."""

from __future__ import annotations

import copy
from datetime import datetime

import pytest

from eventtrace.core.model import EventState, KubeObject, Rejected
from eventtrace.source.parse import message_was_truncated, parse_event, parse_object, to_ns
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


def test_new_api_shape_through_core_v1() -> None:
    state = parse_event(SCHEDULED_NEW_API_VIA_CORE, "t")
    assert isinstance(state, EventState)
    assert state.count == 1
    assert state.first_ns == state.last_ns == 1621417378_638469000
    assert state.component == "default-scheduler"
    assert state.instance == "default-scheduler-kind-control-plane"
    assert state.action == "Binding"


def test_events_k8s_io_v1_shape_with_series() -> None:
    state = parse_event(EVENTS_V1, "t")
    assert isinstance(state, EventState)
    assert (state.count, state.message, state.type) == (
        7,
        "Back-off restarting failed container app",
        "Warning",
    )
    assert state.involved.name == "web-0" and state.field_path == "spec.containers{app}"
    assert state.component == "kubelet" and state.host == "node-a"
    assert state.last_ns - state.first_ns == 190_250_000_000


def test_legacy_event_without_count_and_with_only_last_timestamp() -> None:
    raw = core_event("x.1", ref("Pod", "x"), "Started", "Started container")
    del raw["count"]
    raw["firstTimestamp"] = None
    state = parse_event(raw, "t")
    assert isinstance(state, EventState)
    assert state.count == 1 and state.first_ns == state.last_ns


def test_last_before_first_is_clamped() -> None:
    raw = core_event("x.1", ref("Pod", "x"), "Pulled", "m", at=10, last=5, count=2)
    state = parse_event(raw, "t")
    assert isinstance(state, EventState) and state.last_ns == state.first_ns


@pytest.mark.parametrize(
    "unusable", ["0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "2262-04-12T00:00:00Z"]
)
def test_a_time_no_span_can_have_counts_as_null(unusable: str) -> None:
    # Kubernetes' zero time, before 1970, after 2262: OTLP has nanoseconds since 1970 in 64
    # bits (signed, in the backends). The event's other times stand in, as for a null.
    raw = core_event("x.1", ref("Pod", "x"), "Pulled", "m", at=10, last=20, count=2)
    good_first, good_last = raw["firstTimestamp"], raw["lastTimestamp"]
    raw["firstTimestamp"] = unusable
    state = parse_event(raw, "t")
    assert isinstance(state, EventState)
    assert state.first_ns == state.last_ns == to_ns(datetime.fromisoformat(good_last))
    raw["firstTimestamp"], raw["lastTimestamp"] = good_first, unusable
    state = parse_event(raw, "t")
    assert isinstance(state, EventState)
    assert state.first_ns == state.last_ns == to_ns(datetime.fromisoformat(good_first))
    raw["firstTimestamp"] = raw["metadata"]["creationTimestamp"] = unusable
    rejected = parse_event(raw, "t")
    assert isinstance(rejected, Rejected) and rejected.category == "no_time"
    assert "before 1970 or after 2262" in rejected.reason


def test_times_are_exact_to_the_nanosecond() -> None:
    assert to_ns(datetime.fromisoformat("2021-05-19T09:42:58.638469+00:00")) == 1621417378638469000


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda e: e.pop("involvedObject"), "event default/x.1: involvedObject is missing"),
        (
            lambda e: e.update(involvedObject=None),
            "event default/x.1: involvedObject: Input should be",
        ),
        (
            lambda e: e["involvedObject"].pop("name"),
            "event default/x.1: involvedObject.name is missing",
        ),
        (lambda e: e.update(firstTimestamp="yesterday"), "event default/x.1: firstTimestamp"),
        (
            lambda e: e.update(count="many"),
            "event default/x.1: count: Input should be a valid integer",
        ),
        (
            lambda e: e.update(firstTimestamp=None, lastTimestamp=None),
            "event default/x.1: no usable time",
        ),
        (lambda e: e.update(metadata={}), "event without metadata.name or metadata.uid"),
    ],
)
def test_bad_events_are_rejected_with_a_reason(mutate, expected: str) -> None:
    raw = copy.deepcopy(core_event("x.1", ref("Pod", "x"), "Started", "m"))
    mutate(raw)
    result = parse_event(raw, "events.json:7")
    assert isinstance(result, Rejected)
    assert str(result).startswith("events.json:7: " + expected), str(result)


def test_not_an_object_at_all() -> None:
    result = parse_event(["a"], "f:1")
    assert isinstance(result, Rejected) and result.category == "not_an_object"


def test_a_huge_message_is_cut_not_dropped() -> None:
    raw = core_event("x.1", ref("Pod", "x"), "Failed", "é" * 600_000)  # 1.2 MB of UTF-8
    state = parse_event(raw, "t", max_message_bytes=4096)
    assert isinstance(state, EventState)
    assert message_was_truncated(state)
    assert len(state.message.encode()) < 4200


def test_objects_keep_controller_owner_and_spec_manager() -> None:
    raw = {
        "kind": "ReplicaSet", "apiVersion": "apps/v1",
        "metadata": {"name": "rs", "namespace": "ns", "uid": "r1", "resourceVersion": "5",
            "ownerReferences": [
                {"kind": "Foo", "name": "other", "uid": "o1", "apiVersion": "x/v1"},
                {"kind": "Deployment", "name": "d", "uid": "d1", "apiVersion": "apps/v1", "controller": True}],
            "managedFields": [
                {"manager": "kubectl", "time": "2026-01-01T00:00:00Z", "fieldsV1": {"f:spec": {}}},
                {"manager": "helm", "time": "2026-01-02T00:00:00Z", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
                {"manager": "kube-controller-manager", "time": "2026-01-03T00:00:00Z", "fieldsV1": {"f:status": {}}}]},
    }  # fmt: skip
    obj = parse_object(raw, "t")
    assert isinstance(obj, KubeObject)
    assert obj.controller is not None and obj.controller.name == "d"
    assert obj.controller.namespace == "ns"
    assert obj.spec_manager == "helm"


def test_list_items_without_kind_take_the_lists_kind() -> None:
    obj = parse_object({"metadata": {"name": "n1", "uid": "x"}}, "t", kind="Node")
    assert isinstance(obj, KubeObject) and obj.ref.kind == "Node"
    assert isinstance(parse_object({"metadata": {"name": "n1"}}, "t"), Rejected)
