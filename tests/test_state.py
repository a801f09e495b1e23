"""The saved progress by itself: what counts as exported, what a save carries, and that a
state read back is the state written, or a clear reason it cannot be used."""

from __future__ import annotations

import base64
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventtrace.core.episodes import Assembler, Episode, EventNote, ObjectEntry, TraceRules
from eventtrace.core.model import KubeObject, ObjectRef, OwnerRef, Span, SpanKind, SpanStatus
from eventtrace.core.owners import Link
from eventtrace.state import (
    FileStore,
    Progress,
    StateError,
    _pack_hashes,
    _unpack_hashes,
    load_progress,
    uid_hash,
)

CLUSTER = "prod https://10.0.0.1:6443"


def span(kind: SpanKind, trace: str, uid: str = "", count: int = 0) -> Span:
    attributes = {"k8s.event.count": count, "k8s.event.uid": uid} if uid else {}
    return Span(trace, "1" * 16, None, "x", kind, 0, 0, SpanStatus.UNSET, "", (), attributes)


def episode(trace: str = "a" * 32) -> Episode:
    rs = ObjectRef("ReplicaSet", "web-1", "shop", "rs-uid", "apps/v1")
    pod = ObjectRef("Pod", "web-1-x", "shop", "pod-uid", "v1")
    owner = OwnerRef(ObjectRef("Deployment", "web", "shop", "d-uid", "apps/v1"), True)
    rs_link = Link("rs-uid", rs, KubeObject(rs, (owner,), "kubectl", "42"))
    pod_link = Link("pod-uid", pod, None)
    found = Episode(rs_link, trace, 10, 20, 100, 200, 1)
    found.objects["rs-uid"] = ObjectEntry(rs_link, None, "b" * 16, 10, 12)
    found.objects["rs-uid"].events["e1"] = EventNote(
        10, "web-1.1", "Created pod: web-1-x", "replicaset-controller", "", "e1", 1, 10, 1
    )
    # A pod's events are no cause: the assembler keeps no note of them.
    found.objects["pod-uid"] = ObjectEntry(pod_link, "rs-uid", "c" * 16, 11, 20)
    return found


def test_only_delivered_event_spans_count_as_exported_and_the_highest_count_wins() -> None:
    progress = Progress(CLUSTER)
    progress.delivered([span(SpanKind.EVENT, "t", "e1", 3), span(SpanKind.EVENT, "t", "e1", 2)])
    assert progress.exported_count("e1") == 3
    assert progress.exported_count("e2") == 0
    assert progress.changed


def test_a_closed_episode_is_saved_until_its_object_spans_are_delivered() -> None:
    progress = Progress(CLUSTER)
    closed = episode()
    progress.closed(closed, [span(SpanKind.OBJECT, closed.trace_id)] * 2)
    assert [e.trace_id for e in progress.snapshot([]).episodes] == [closed.trace_id]
    progress.delivered([span(SpanKind.OBJECT, closed.trace_id)])
    assert len(progress.snapshot([]).episodes) == 1  # one of its two spans still out
    progress.delivered([span(SpanKind.OBJECT, closed.trace_id)])
    assert progress.snapshot([]).episodes == []


def test_what_is_written_is_what_is_read_back() -> None:
    progress = Progress(CLUSTER, resource_versions={"events/": "123"})
    progress.delivered([span(SpanKind.EVENT, "t", "e1", 3), span(SpanKind.EVENT, "t", "e9", 1)])
    carried = episode()
    back = Progress.decode(progress.encode([carried]), CLUSTER)
    assert back.exported == progress.exported
    assert back.resource_versions == {"events/": "123"}
    (restored,) = back.restored_episodes
    assert (restored.trace_id, restored.start_ns, restored.last_ns) == (
        carried.trace_id,
        carried.start_ns,
        carried.last_ns,
    )
    assert restored.objects["rs-uid"].events == carried.objects["rs-uid"].events
    # What closing reads is kept: whether the root was known, and its spec manager.
    assert restored.root.known is not None and restored.root.known.spec_manager == "kubectl"
    assert restored.objects["pod-uid"].link.known is None
    assert (restored.objects["pod-uid"].start_ns, restored.objects["pod-uid"].end_ns) == (11, 20)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x00 not a state", "not a state eventtrace can read"),
        (Progress("another https://x").encode([]), "saved for cluster 'another https://x'"),
    ],
)
def test_a_state_that_cannot_be_used_says_why(data: bytes, why: str) -> None:
    with pytest.raises(StateError, match=why):
        Progress.decode(data, CLUSTER)


async def test_an_unusable_state_is_one_warning_and_a_fresh_progress(tmp_path, caplog) -> None:
    store = FileStore(tmp_path / "state")
    await store.save(b"garbage")
    progress = await load_progress(store, CLUSTER)
    assert progress.exported == {} and progress.restored_episodes == []
    assert [r.levelname for r in caplog.records if "not used" in r.getMessage()] == ["WARNING"]


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(0, 2**48 - 1), max_size=300))
def test_hashes_pack_and_unpack_exactly(values: set[int]) -> None:
    hashes = sorted(values)
    assert _unpack_hashes(_pack_hashes(hashes)) == hashes


def test_a_hundred_thousand_exported_events_fit_a_configmap_with_room() -> None:
    """A ConfigMap holds at most 1 MiB, here as base64: the events alone take under half
    (bench/state.py measures it with the open episodes of a real hour)."""
    progress = Progress(CLUSTER)
    progress.exported = {uid_hash(str(uuid.uuid4())): 1 + i % 7 for i in range(100_000)}
    encoded = base64.b64encode(progress.encode([]))
    assert len(encoded) < (1 << 20) * 0.7


def test_restored_episodes_keep_no_pod_events_as_causes() -> None:
    """A state saved by a version that kept a pod's events (a pod owning something) is
    carried on as this version records: a Pod's events are nobody's cause."""
    saved = episode()
    saved.objects["pod-uid"].events["e2"] = EventNote(
        11, "web-1-x.2", "Created pod: other", "kubelet", "node-a", "e2", 1, 11, 1
    )
    (restored,) = Progress.decode(Progress(CLUSTER).encode([saved]), CLUSTER).restored_episodes
    assembler = Assembler(TraceRules(CLUSTER, 120 * 10**9, 900 * 10**9))
    assembler.restore([restored])
    assert restored.objects["pod-uid"].events == {}
    assert restored.objects["rs-uid"].events == saved.objects["rs-uid"].events
