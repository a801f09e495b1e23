"""From event states to occurrences: a new Event, or a rise in its count, is new; the rest
(re-lists, replays, message-only updates, stale states) is not."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from eventtrace.core.model import EventState, Occurrence
from eventtrace.core.recent import Recent


class OccurrenceTracker:
    """Remembers, per event uid, the highest count seen and its latest occurrence. Feed
    states in `sort_key` order.

    It forgets by arrival (`turn`, the housekeeping's), never by event time: a node clock
    hours behind must not make a live event look forgotten. `exported`, where given, says
    how many occurrences of a uid it has not seen were exported before (a restart's saved
    progress): those are not new."""

    __slots__ = ("_exported", "_seen")

    def __init__(self, exported: Callable[[str], int] | None = None) -> None:
        # uid → (highest count, latest occurrence) packed into one int (_pack): kept for
        # hours for every event, it is most of the tracker's size, 36 bytes and not 100.
        self._seen: Recent[str, int] = Recent()
        self._exported = exported

    def __len__(self) -> int:
        return len(self._seen)

    def observe(self, state: EventState) -> Occurrence | None:
        seen = self._seen.get(state.uid)
        if seen is None:
            before = self._exported(state.uid) if self._exported is not None else 0
            if before >= state.count:
                self._seen[state.uid] = _pack(before, state.last_ns)
                return None
            self._seen[state.uid] = _pack(state.count, state.last_ns)
            # First sight: one span from the first to the last occurrence, however many
            # (of them, those exported before this process started are not new again).
            return Occurrence(state, before, start_ns=state.first_ns, end_ns=state.last_ns)
        previous_count, previous_last = _unpack(seen)
        if state.count <= previous_count:
            return None
        self._seen[state.uid] = _pack(state.count, max(previous_last, state.last_ns))
        # One new occurrence happened at its lastTimestamp; a jump (updates missed) spans
        # the time since the last occurrence we saw.
        jumped = state.count - previous_count > 1
        start = min(previous_last, state.last_ns) if jumped else state.last_ns
        return Occurrence(state, previous_count, start_ns=start, end_ns=state.last_ns)

    def counts(self) -> Iterator[tuple[str, int]]:
        """(uid, highest count) of every event remembered."""
        for uid, packed in self._seen.items():
            yield uid, _unpack(packed)[0]

    def turn(self) -> list[str]:
        """Forget the events not seen since the last turn; their uids."""
        return self._seen.turn()


# Times as parse makes them fit in 72 bits once offset (years 1 to 9999 are within ±2**71
# ns); the count (never negative) goes above them.
_TIME_BITS = 72
_TIME_OFFSET = 1 << (_TIME_BITS - 1)
_TIME_MASK = (1 << _TIME_BITS) - 1


def _pack(count: int, last_ns: int) -> int:
    return (count << _TIME_BITS) | (last_ns + _TIME_OFFSET)


def _unpack(packed: int) -> tuple[int, int]:
    return packed >> _TIME_BITS, (packed & _TIME_MASK) - _TIME_OFFSET


_SECOND = 1_000_000_000


def first_occurrence_ns(name: str, first_ns: int) -> int:
    """The first occurrence's time, to the nanosecond where the event's name says it.

    core/v1 times have whole seconds, so a container's Pulled, Created and Started often
    share one. The recorder names an event `<object>.<hex UnixNano of its creation>`
    (client-go tools/record and tools/events): where that falls within the first
    occurrence's second, it is the first occurrence (DESIGN §1, order within a second).
    A time that has a fraction already (an events.k8s.io eventTime) stands as it is."""
    _, dot, suffix = name.rpartition(".")
    if first_ns % _SECOND or not dot or not 8 <= len(suffix) <= 16:
        return first_ns
    try:
        created = int(suffix, 16)
    except ValueError:
        return first_ns
    return created if first_ns <= created < first_ns + _SECOND else first_ns
