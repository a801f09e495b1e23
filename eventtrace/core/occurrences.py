"""From event states to occurrences: a new Event, or a rise in its count, is new; the rest
(re-lists, replays, message-only updates, stale states) is not."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from eventtrace.core.model import EventState, Occurrence


class OccurrenceTracker:
    """Remembers, per event uid, the highest count seen and its latest occurrence. Feed
    states in `sort_key` order.

    It forgets by arrival ("now" when a uid was last seen), never by event time: a node
    clock hours behind must not make a live event look forgotten. `exported`, where
    given, says how many occurrences of a uid it has not seen were exported before (a
    restart's saved progress): those are not new."""

    __slots__ = ("_exported", "_seen")

    def __init__(self, exported: Callable[[str], int] | None = None) -> None:
        # uid → (highest count, latest occurrence, seen at), least recently seen first.
        self._seen: dict[str, tuple[int, int, int]] = {}
        self._exported = exported

    def __len__(self) -> int:
        return len(self._seen)

    def observe(self, state: EventState, now: int) -> Occurrence | None:
        seen = self._seen.pop(state.uid, None)
        if seen is None:
            before = self._exported(state.uid) if self._exported is not None else 0
            if before >= state.count:
                self._seen[state.uid] = (before, state.last_ns, now)
                return None
            self._seen[state.uid] = (state.count, state.last_ns, now)
            # First sight: one span from the first to the last occurrence, however many
            # (of them, those exported before this process started are not new again).
            return Occurrence(state, before, start_ns=state.first_ns, end_ns=state.last_ns)
        previous_count, previous_last, _ = seen
        if state.count <= previous_count:
            self._seen[state.uid] = (previous_count, previous_last, now)
            return None
        self._seen[state.uid] = (state.count, max(previous_last, state.last_ns), now)
        # One new occurrence happened at its lastTimestamp; a jump (updates missed) spans
        # the time since the last occurrence we saw.
        jumped = state.count - previous_count > 1
        start = min(previous_last, state.last_ns) if jumped else state.last_ns
        return Occurrence(state, previous_count, start_ns=start, end_ns=state.last_ns)

    def counts(self) -> Iterator[tuple[str, int]]:
        """(uid, highest count) of every event remembered."""
        for uid, (count, _, _) in self._seen.items():
            yield uid, count

    def forget_unseen_since(self, cutoff: int) -> list[str]:
        """Forget the events not seen since `cutoff` ("now" as `observe` was given it: the
        API server keeps events about an hour); returns their uids."""
        forgotten = []
        for uid, (_, _, seen_at) in self._seen.items():
            if seen_at >= cutoff:
                break  # least recently seen first: the rest were seen since
            forgotten.append(uid)
        for uid in forgotten:
            del self._seen[uid]
        return forgotten


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
