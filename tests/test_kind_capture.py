"""The real kind capture gives exactly the tree its README describes (DESIGN §1)."""

from __future__ import annotations

import random

from eventtrace.core.model import SpanKind, SpanStatus
from eventtrace.core.pipeline import trace_recording
from eventtrace.metrics import Metrics
from eventtrace.replay import load_recording
from eventtrace.settings import load_settings
from eventtrace.source.files import read_records
from helpers import KIND_CAPTURE, tree

DEPLOY, RS, POD = "deployment-controller", "replicaset-controller", "kubelet"
SCHED = "default-scheduler"

# Within a second, in the order the recorder created the events (the UnixNano in their
# names, DESIGN §1), not alphabetical: Pulled before Created before Started.
NEW_POD_1 = [
    ("Scheduled", SCHED, []),
    ("Pulling", POD, []),
    ("Pulled", POD, []),
    ("Created", POD, []),
    ("Started", POD, []),
]
NEW_POD_2 = [
    ("Scheduled", SCHED, []),
    ("Pulled", POD, []),
    ("Created", POD, []),
    ("Started", POD, []),
]

EXPECTED = [
    ("deployment/px", "kubectl-client-side-apply", [
        ("ScalingReplicaSet", DEPLOY, [
            ("replicaset/px-5d567cc74c", DEPLOY, [
                ("SuccessfulCreate", RS, [("pod/px-5d567cc74c-ss4lb", RS, NEW_POD_1)]),
                ("SuccessfulCreate", RS, [("pod/px-5d567cc74c-pmvzr", RS, NEW_POD_2)]),
            ]),
        ]),
        ("ScalingReplicaSet", DEPLOY, [
            ("replicaset/px-7df978b9bf", DEPLOY, [
                ("SuccessfulDelete", RS, [("pod/px-7df978b9bf-jm22q", RS, [("Killing", POD, [])])]),
                ("SuccessfulDelete", RS, [("pod/px-7df978b9bf-bfdrj", RS, [("Killing", POD, [])])]),
            ]),
        ]),
        ("ScalingReplicaSet", DEPLOY, []),
        ("ScalingReplicaSet", DEPLOY, []),
    ]),
]  # fmt: skip


def _spans(order_seed: int | None = None) -> list:
    settings = load_settings({"cluster_name": "kind"})
    recording = load_recording([str(KIND_CAPTURE)], settings, Metrics())
    if order_seed is not None:
        random.Random(order_seed).shuffle(recording.states)
        random.Random(order_seed + 1).shuffle(recording.objects)
    spans, _ = trace_recording(recording.states, recording.objects, settings.trace_rules)
    return spans


def test_capture_has_26_documents_19_events_7_objects() -> None:
    records = list(read_records([str(KIND_CAPTURE)]))
    assert len(records) == 26
    assert sum(record.is_event for record in records) == 19


def test_one_trace_rooted_at_the_deployment_shaped_as_described() -> None:
    spans = _spans()
    assert len({span.trace_id for span in spans}) == 1
    assert tree(spans) == EXPECTED
    assert sum(span.kind is SpanKind.EVENT for span in spans) == 19
    assert sum(span.kind is SpanKind.OBJECT for span in spans) == 7
    assert all(span.status is SpanStatus.UNSET for span in spans)


def test_the_new_replicaset_hangs_under_the_first_scale_up_that_names_it() -> None:
    spans = _spans()
    by_id = {span.span_id: span for span in spans}
    new_rs = next(span for span in spans if span.name == "replicaset/px-5d567cc74c")
    cause = by_id[new_rs.parent_id]
    assert cause.attribute("k8s.event.message") == "Scaled up replica set px-5d567cc74c to 1"
    old_rs = next(span for span in spans if span.name == "replicaset/px-7df978b9bf")
    assert by_id[old_rs.parent_id].attribute("k8s.event.message") == (
        "Scaled down replica set px-7df978b9bf to 1"
    )


def test_scheduler_events_in_the_new_api_shape_keep_microseconds() -> None:
    spans = _spans()
    scheduled = sorted(span.start_ns for span in spans if span.name == "Scheduled")
    assert [ns % 1_000_000_000 for ns in scheduled] == [638_469_000, 232_051_000]


def test_any_order_of_the_26_documents_gives_byte_identical_spans() -> None:
    reference = sorted(_spans(), key=lambda s: s.span_id)
    for seed in range(20):
        assert sorted(_spans(seed), key=lambda s: s.span_id) == reference
