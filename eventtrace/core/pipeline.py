"""The pure pipeline: event states and objects in, spans out, with time passed in.

It puts the parts of the core together: a reorder window (so arrival order does not leak
into the result), the occurrence tracker, owner chains from the object index, and the
assembler. `run` and `replay` drive the same object; only where "now" comes from differs.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from eventtrace.core.episodes import Assembler, TraceRules
from eventtrace.core.model import EventState, KubeObject, Span
from eventtrace.core.occurrences import OccurrenceTracker
from eventtrace.core.owners import ObjectIndex

# What waits in the reorder window: (*state.sort_key, arrival number, arrival time, state).
# One flat tuple, so the heap compares in C and a waiting event costs one tuple; the
# arrival number only orders states whose sort keys are equal (the same version of the
# same event), and never reaches `state`.
_Pending = tuple[Any, ...]


@dataclass(slots=True)
class PipelineStats:
    occurrences: int = 0  # occurrences (not spans): a count jump of 4 counts 4
    stale: int = 0  # states with nothing new


class Pipeline:
    __slots__ = (
        "_arrivals",
        "_firsts",
        "_head",
        "_marks",
        "_pending",
        "_settled",
        "_turned",
        "assembler",
        "index",
        "reorder_window_ns",
        "stats",
        "tracker",
    )

    def __init__(
        self,
        rules: TraceRules,
        reorder_window_ns: int,
        index: ObjectIndex | None = None,
        *,
        tracker: OccurrenceTracker | None = None,
        assembler: Assembler | None = None,
    ) -> None:
        self.reorder_window_ns = reorder_window_ns
        self.index = index if index is not None else ObjectIndex()
        self.tracker = tracker if tracker is not None else OccurrenceTracker()
        self.assembler = assembler if assembler is not None else Assembler(rules)
        self.stats = PipelineStats()
        self._pending: list[_Pending] = []
        # When the state pending longest arrived, without an entry a state: one mark per
        # run of offers with the same "now", [time, states of it still pending], and the
        # first arrival number of each (for bisect). Marks before `_head` have none left
        # and take no more: every arrival belongs to a mark at or after it.
        self._marks: list[list[int]] = []
        self._firsts: list[int] = []
        self._head = 0
        self._arrivals = 0
        self._settled = 0  # states offered up to this arrival number need not wait
        self._turned = 0  # "now" when the events' memory last turned

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def arrivals(self) -> int:
        """How many states have been offered: the arrival number of the latest."""
        return self._arrivals

    def add_object(self, obj: KubeObject) -> None:
        self.index.put(obj)

    def offer(self, state: EventState, now: int) -> None:
        """An event state arrived. It waits out the reorder window before it counts."""
        # The object it is about, as the index already holds it: one reference shared by
        # all its events while they wait, not one each.
        known = self.index.find(state.involved)
        if known is not None and known.ref == state.involved:
            state.involved = known.ref
        self.index.learn_from(state)
        self._arrivals += 1
        heapq.heappush(self._pending, (*state.sort_key, self._arrivals, now, state))
        marks = self._marks
        if self._head == len(marks) or marks[-1][0] != now:  # all used up, or another time
            marks.append([now, 0])
            self._firsts.append(self._arrivals)
        marks[-1][1] += 1

    def settle(self, through: int) -> None:
        """The states offered up to arrival number `through` are all there is before them
        (a list is complete and the owners they need are known): nothing the window waits
        for can still come, so they are due at once, in occurrence order as ever. States
        offered after them still wait, and one of those due earlier holds them back."""
        self._settled = max(self._settled, through)

    def release(self, now: int, *, listing: bool = False) -> Iterator[list[Span]]:
        """Process what has waited out the window (or been settled), in occurrence-time
        order, then close what is due by `now`.

        The earliest state goes once it has waited the window itself, or once the state
        that arrived first has waited twice the window: events that keep arriving with
        old times (a node clock hours behind) are always the earliest and always just
        arrived, and would otherwise hold everything back for ever. Not while a list is
        being taken in (`listing`): its states arrive in no order of time, and wait for
        it to be complete (`settle`) to go in order.

        Lazily, one list of spans per state or closed episode: a caller may wait (for
        room to export) between two lists, and nothing is half done meanwhile."""
        pending = self._pending
        waited, settled = now - self.reorder_window_ns, self._settled
        overdue = waited - self.reorder_window_ns
        while pending and (
            pending[0][-2] <= waited
            or pending[0][-3] <= settled
            or (not listing and self._first_arrival() <= overdue)
        ):
            yield self._process(self._pop(), now)
        yield from self.assembler.close_due(now)

    def _first_arrival(self) -> int:
        """When the state pending longest arrived."""
        return self._marks[self._head][0]

    def _pop(self) -> EventState:
        entry = heapq.heappop(self._pending)
        arrival, state = entry[-3], entry[-1]
        marks = self._marks
        mark = marks[bisect.bisect_right(self._firsts, arrival, self._head) - 1]
        mark[1] -= 1
        while self._head < len(marks) and not marks[self._head][1]:
            self._head += 1
        if self._head > 1024 and self._head * 2 > len(marks):  # now and then, not each pop
            del marks[: self._head], self._firsts[: self._head]
            self._head = 0
        processed: EventState = state
        return processed

    def drain(self, now: int | None = None, *, close: bool = True) -> Iterator[list[Span]]:
        """Process everything pending and close every episode (shutdown, end of replay),
        lazily as `release` does. With `close` False, the episodes due by `now` close and
        the rest stay open (a shutdown whose state carries them on).

        With `now` None the clock is the events' own time: a replay closes episodes as
        it goes, exactly as the rules say, whatever order the input came in."""
        pending = self._pending
        processed = 0
        while pending:
            state = self._pop()
            clock = state.last_ns if now is None else now
            yield self._process(state, clock)
            processed += 1
            if now is None and processed % 1024 == 0:
                yield from self.assembler.close_due(clock)
        if close:
            yield from self.assembler.close_all()
        elif now is not None:
            yield from self.assembler.close_due(now)

    def forget_old_events(self, now: int, memory_ns: int) -> list[str]:
        """Forget the events, and the owners their messages named, not seen for between
        half of `memory_ns` and all of it, by arrival ("now" as the caller's clock says,
        never by the events' own times); the events' uids. Call it often."""
        if now - self._turned < memory_ns // 2:
            return []
        self._turned = now
        self.index.forget_hints()
        return self.tracker.turn()

    def _process(self, state: EventState, now: int) -> list[Span]:
        occurrence = self.tracker.observe(state)
        if occurrence is None:
            self.stats.stale += 1
            return []
        self.stats.occurrences += occurrence.occurrences
        chain = self.index.chain(state.involved)
        return self.assembler.add(occurrence, chain, now)


def trace_recording(
    states: list[EventState], objects: list[KubeObject], rules: TraceRules
) -> tuple[list[Span], PipelineStats]:
    """Every span of a recording, the same whatever order states and objects come in."""
    pipeline = Pipeline(rules, reorder_window_ns=0)
    for obj in objects:
        pipeline.add_object(obj)
    for state in states:
        pipeline.offer(state, now=0)
    return [span for spans in pipeline.drain() for span in spans], pipeline.stats
