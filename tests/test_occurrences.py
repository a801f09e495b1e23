"""The occurrence tracker by hand: first sight, a count bump, a jump, stale states, large
counts, forgetting by arrival, and counts exported before a restart."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from eventtrace.core.model import EventState, ObjectRef
from eventtrace.core.occurrences import OccurrenceTracker

POD = ObjectRef("Pod", "web-1", "shop", "pod-uid", "v1")
YEAR_9999 = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())


def state(count: int, first_ns: int, last_ns: int, uid: str = "e1") -> EventState:
    return EventState(
        uid=uid,
        name="web-1.17a",
        namespace="shop",
        reason="BackOff",
        message="Back-off restarting failed container",
        type="Warning",
        involved=POD,
        count=count,
        first_ns=first_ns,
        last_ns=last_ns,
    )


def test_first_sight_spans_first_to_last_then_each_bump_is_one_occurrence() -> None:
    tracker = OccurrenceTracker()
    first = tracker.observe(state(3, 100, 300))
    assert first is not None
    assert (first.previous_count, first.start_ns, first.end_ns) == (0, 100, 300)
    bump = tracker.observe(state(4, 100, 400))
    assert bump is not None
    assert (bump.previous_count, bump.start_ns, bump.end_ns, bump.occurrences) == (3, 400, 400, 1)


def test_a_jump_spans_the_time_since_the_last_occurrence_seen() -> None:
    tracker = OccurrenceTracker()
    tracker.observe(state(1, 100, 100))
    jump = tracker.observe(state(5, 100, 900))
    assert jump is not None
    assert (jump.previous_count, jump.start_ns, jump.end_ns, jump.occurrences) == (1, 100, 900, 4)


def test_the_same_or_a_lower_count_is_nothing_new() -> None:
    tracker = OccurrenceTracker()
    tracker.observe(state(2, 100, 200))
    assert tracker.observe(state(2, 100, 250)) is None
    assert tracker.observe(state(1, 100, 100)) is None
    assert len(tracker) == 1


@pytest.mark.parametrize("count", [1, 2**31 - 1, 2**40])
def test_large_counts_and_far_times_are_kept_exactly(count: int) -> None:
    tracker = OccurrenceTracker()
    at = YEAR_9999 * 10**9 + 999_999_999
    tracker.observe(state(count, at - 5, at))
    later = tracker.observe(state(count + 2, at - 5, at + 7))
    assert later is not None
    assert (later.previous_count, later.start_ns, later.end_ns) == (count, at, at + 7)


def test_it_forgets_by_arrival_never_by_event_time() -> None:
    """A node clock hours behind writes old times on live events: they are remembered as
    long as they keep arriving (each housekeeping turn), so a re-list exports nothing
    twice; what stops arriving is forgotten after two turns."""
    hours = 3600 * 10**9
    tracker = OccurrenceTracker()
    tracker.observe(state(1, 0, 9 * hours, uid="quiet"))
    tracker.observe(state(1, 0, 0, uid="behind"))  # event time: hours ago
    assert tracker.turn() == []
    assert tracker.observe(state(1, 0, 0, uid="behind")) is None  # still arriving (a re-list)
    assert tracker.turn() == ["quiet"]
    assert tracker.observe(state(1, 0, 0, uid="behind")) is None
    assert len(tracker) == 1


def test_counts_exported_before_a_restart_are_not_new_again() -> None:
    exported = {"e1": 3}
    tracker = OccurrenceTracker(exported=lambda uid: exported.get(uid, 0))
    assert tracker.observe(state(3, 100, 300)) is None  # re-listed, all exported
    bump = tracker.observe(state(5, 100, 500))
    assert bump is not None
    assert (bump.previous_count, bump.occurrences) == (3, 2)
    fresh = OccurrenceTracker(exported=lambda uid: exported.get(uid, 0))
    later = fresh.observe(state(4, 100, 400))  # first seen after the restart: 4th
    assert later is not None
    assert (later.previous_count, later.occurrences, later.start_ns) == (3, 1, 100)
