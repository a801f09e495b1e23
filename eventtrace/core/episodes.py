"""Episodes: which occurrences make one trace, and where each object span hangs.

A trace is one episode of one root (DESIGN §1). Event spans leave as soon as they are
added; object spans leave when their episode closes, because an object span covers its
whole subtree and takes as parent the event that caused it, the earliest in the episode.
The caller passes "now" (wall time when live, event time in a replay) to close episodes.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

from eventtrace.core import ids, spans
from eventtrace.core.model import Occurrence, Span
from eventtrace.core.owners import Chain, Link, names

# Kinds that are no controllers: their events (most events, a kubelet's and a
# scheduler's) are nobody's cause, so no note of them is kept while an episode is open.
# What a Pod owns nonetheless (a Spark driver's executors) goes under its owner's span.
LEAF_KINDS = frozenset({"Pod"})


@dataclass(frozen=True, slots=True)
class TraceRules:
    cluster_name: str
    trace_idle_ns: int
    trace_max_ns: int


@dataclass(slots=True)
class EventNote:
    """One event of an object in an episode: a candidate cause. Its first occurrence in
    the episode (start, and the count it reached), and its latest (end, count), which
    tells incarnations of one name apart. Only what the cause rules read."""

    start_ns: int
    name: str
    message: str
    component: str
    instance: str
    uid: str
    event_count: int
    end_ns: int = 0
    end_count: int = 0

    @property
    def span_id(self) -> str:
        return ids.event_span_id(self.uid, self.event_count)

    @property
    def latest_span_id(self) -> str:
        return ids.event_span_id(self.uid, self.end_count or self.event_count)


@dataclass(slots=True)
class ObjectEntry:
    link: Link
    owner: str | None  # identity of its owner on the chain
    span_id: str  # its object span's id in this episode
    start_ns: int  # its own occurrences; the subtree extent is computed at close
    end_ns: int
    events: dict[str, EventNote] = field(default_factory=dict)  # by event uid


@dataclass(slots=True)
class Episode:
    root: Link
    trace_id: str
    start_ns: int  # occurrence time of its first occurrence
    last_ns: int  # latest occurrence time in it
    opened_at: int  # "now" when it opened, and when it last took an occurrence
    touched_at: int
    number: int = 0  # in the order episodes were opened: the order they close in
    objects: dict[str, ObjectEntry] = field(default_factory=dict)

    def accepts(self, occurrence: Occurrence, rules: TraceRules) -> bool:
        """Does the occurrence join? Its occurrences lie somewhere in [start, end] (one
        point, unless first seen with a count or after a jump): it joins when that range
        touches the episode within trace_idle, and begins within trace_max of its start."""
        if occurrence.end_ns < self.start_ns:
            return True  # late and older than the episode: join rather than rewrite ids
        return (
            occurrence.start_ns < self.last_ns + rules.trace_idle_ns
            and occurrence.start_ns < self.start_ns + rules.trace_max_ns
        )

    def clip(self, occurrence: Occurrence, rules: TraceRules) -> Occurrence:
        """The occurrence within the episode's bounds, [start, start + trace_max]: no trace
        is longer than trace_max. Its count stays, and its true first time is the event's
        (k8s.event.start_time)."""
        latest = self.start_ns + rules.trace_max_ns
        start = min(max(occurrence.start_ns, self.start_ns), latest)
        end = min(max(occurrence.end_ns, start), latest)
        if (start, end) == (occurrence.start_ns, occurrence.end_ns):
            return occurrence
        return replace(occurrence, start_ns=start, end_ns=end)

    def due_at(self, rules: TraceRules) -> int:
        """When it closes: idle for trace_idle, or open for trace_max. Only ever later."""
        return min(self.touched_at + rules.trace_idle_ns, self.opened_at + rules.trace_max_ns)


class Assembler:
    """Keeps the open episodes. `add` returns spans ready to export; so do the closers."""

    __slots__ = ("_deadlines", "_on_close", "_open", "_opened", "rules")

    def __init__(
        self, rules: TraceRules, on_close: Callable[[Episode, list[Span]], None] | None = None
    ) -> None:
        self.rules = rules
        # Told of each episode as it closes, with its object spans (the state keeps an
        # episode until they are delivered).
        self._on_close = on_close
        self._open: dict[str, Episode] = {}  # by root identity, in the order they opened
        # (due_at, number, root identity) as of when it was pushed: a heap, so finding what
        # is due does not look at every open episode. An episode touched since is due
        # later than its entry says, and is pushed again when the entry comes up.
        self._deadlines: list[tuple[int, int, str]] = []
        self._opened = 0

    @property
    def open_episodes(self) -> int:
        return len(self._open)

    def episodes(self) -> list[Episode]:
        """The open episodes, in the order they opened (what a restart carries on)."""
        return list(self._open.values())

    def restore(self, episodes: Iterable[Episode]) -> None:
        """Carry on episodes a previous process left open: the same trace ids, closed when
        due as if it had never stopped. An episode of a root already open here stays
        closed-over by the one here (the restored one goes first, in the given order)."""
        for episode in episodes:
            if episode.root.identity in self._open:
                continue
            for entry in episode.objects.values():  # saved by a version that kept them
                if entry.link.ref.kind in LEAF_KINDS:
                    entry.events.clear()
            self._opened += 1
            episode.number = self._opened
            self._open[episode.root.identity] = episode
            heapq.heappush(
                self._deadlines,
                (episode.due_at(self.rules), episode.number, episode.root.identity),
            )

    def add(self, occurrence: Occurrence, chain: Chain, now: int) -> list[Span]:
        root = chain[-1]
        spans: list[Span] = []
        episode = self._open.get(root.identity)
        if episode is not None and not episode.accepts(occurrence, self.rules):
            spans.extend(self._close(episode))
            episode = None
        if episode is None:
            # At its first occurrence; a range longer than a trace can be (a count over
            # days) at its last, the one occurrence known to be this recent.
            first, last = occurrence.start_ns, occurrence.end_ns
            start = first if last - first < self.rules.trace_max_ns else last
            self._opened += 1
            episode = Episode(
                root=root,
                trace_id=ids.trace_id(self.rules.cluster_name, root.identity, start),
                start_ns=start,
                last_ns=start,
                opened_at=now,
                touched_at=now,
                number=self._opened,
            )
            self._open[root.identity] = episode
            heapq.heappush(
                self._deadlines, (episode.due_at(self.rules), episode.number, root.identity)
            )
        occurrence = episode.clip(occurrence, self.rules)
        episode.last_ns = max(episode.last_ns, occurrence.end_ns)
        episode.touched_at = max(episode.touched_at, now)
        spans.append(self._record(episode, occurrence, chain))
        return spans

    def close_due(self, now: int) -> Iterator[list[Span]]:
        """Close every episode idle for trace_idle, or open for trace_max, as of `now`:
        the object spans of each, in the order they opened."""
        deadlines, rules = self._deadlines, self.rules
        due = []
        while deadlines and deadlines[0][0] <= now:
            _, number, identity = heapq.heappop(deadlines)
            episode = self._open.get(identity)
            if episode is None or episode.number != number:
                continue  # closed already
            due_at = episode.due_at(rules)
            if due_at <= now:
                due.append(episode)
            else:  # touched since: due later
                heapq.heappush(deadlines, (due_at, number, identity))
        due.sort(key=lambda episode: episode.number)
        for episode in due:
            yield self._close(episode)

    def close_all(self) -> Iterator[list[Span]]:
        """Close every open episode, in the order they opened."""
        for episode in list(self._open.values()):
            if self._open.get(episode.root.identity) is episode:  # not closed meanwhile
                yield self._close(episode)

    def _record(self, episode: Episode, occurrence: Occurrence, chain: Chain) -> Span:
        event = occurrence.event
        span_id = ids.event_span_id(event.uid, event.count)
        objects = episode.objects
        owner: str | None = None
        for link in reversed(chain):  # root first, so each link's owner is at hand
            identity = link.identity
            if identity not in objects:
                objects[identity] = ObjectEntry(
                    link,
                    owner,
                    ids.object_span_id(episode.trace_id, identity),
                    start_ns=_NEVER_START,
                    end_ns=_NEVER_END,
                )
            owner = identity
        involved = objects[chain[0].identity]
        start = occurrence.start_ns
        if start < involved.start_ns:
            involved.start_ns = start
        if occurrence.end_ns > involved.end_ns:
            involved.end_ns = occurrence.end_ns
        if involved.link.ref.kind not in LEAF_KINDS:
            _note(involved, occurrence, span_id)
        return spans.event_span(
            occurrence,
            trace_id=episode.trace_id,
            span_id=span_id,
            parent_id=involved.span_id,
            involved=involved.link,
            cluster=self.rules.cluster_name,
        )

    def _close(self, episode: Episode) -> list[Span]:
        del self._open[episode.root.identity]
        spans = object_spans(episode, self.rules.cluster_name)
        if self._on_close is not None:
            self._on_close(episode, spans)
        return spans


def _note(involved: ObjectEntry, occurrence: Occurrence, span_id: str) -> None:
    """Keep the event as a candidate cause of what `involved` owns: its first occurrence in
    the episode, and its latest."""
    event = occurrence.event
    start = occurrence.start_ns
    note = involved.events.get(event.uid)
    end, end_count = occurrence.end_ns, event.count
    if note is not None and (note.end_ns, note.end_count) > (end, end_count):
        end, end_count = note.end_ns, note.end_count
    # (start, span id) < the note's: its span id only matters on equal starts.
    if note is None or start < note.start_ns or (start == note.start_ns and span_id < note.span_id):
        note = involved.events[event.uid] = EventNote(
            start,
            event.name,
            event.message,
            event.component,
            event.instance,
            event.uid,
            event.count,
        )
    note.end_ns, note.end_count = end, end_count


_NEVER_START = 2**63 - 1
_NEVER_END = -(2**63)


def object_spans(episode: Episode, cluster: str) -> list[Span]:
    """One span per object of the episode, covering its subtree, under its cause."""
    extent = {
        identity: (entry.start_ns, entry.end_ns) for identity, entry in episode.objects.items()
    }
    for entry in episode.objects.values():
        if entry.start_ns > entry.end_ns:
            continue  # no occurrence of its own
        owner, steps = entry.owner, 0
        while owner is not None and steps < len(extent):  # steps: no loop, whatever came in
            low, high = extent[owner]
            extent[owner] = (min(low, entry.start_ns), max(high, entry.end_ns))
            owner, steps = episode.objects[owner].owner, steps + 1
    known_root = episode.root.known
    root_manager = known_root.spec_manager if known_root is not None else ""
    causes = _causes(episode, extent)
    result = []
    for identity in sorted(episode.objects):
        entry = episode.objects[identity]
        cause = causes.get(identity)
        note = cause[1] if cause is not None else None
        if cause is not None:
            parent_id: str | None = cause[0]
        elif entry.owner is not None:
            parent_id = episode.objects[entry.owner].span_id
        else:
            parent_id = None
        start, end = extent[identity]
        result.append(
            spans.object_span(
                entry.link,
                trace_id=episode.trace_id,
                span_id=entry.span_id,
                parent_id=parent_id,
                start_ns=start,
                end_ns=end,
                service=(note.component if note else "") or root_manager,
                instance=note.instance if note else "",
                cluster=cluster,
            )
        )
    return result


def _causes(
    episode: Episode, extent: dict[str, tuple[int, int]]
) -> dict[str, tuple[str, EventNote]]:
    """The span id of each object's cause, and its note: the earliest event of its owner, in this
    episode, whose message names it. Where the owner has several incarnations of one
    name (a StatefulSet pod deleted and recreated: two uids), each takes the latest
    naming event at or before its own first occurrence, else the earliest."""
    children: dict[tuple[str, str, str], list[str]] = {}
    for identity, entry in episode.objects.items():
        if entry.owner is not None:
            ref = entry.link.ref
            children.setdefault((entry.owner, ref.kind, ref.name), []).append(identity)
    causes: dict[str, tuple[str, EventNote]] = {}
    for (owner, _, name), incarnations in children.items():
        naming = [n for n in episode.objects[owner].events.values() if names(n.message, name)]
        if not naming:
            continue
        earliest = min(naming, key=lambda n: (n.start_ns, n.name, n.span_id))
        if len(incarnations) == 1:
            causes[incarnations[0]] = (earliest.span_id, earliest)
            continue
        for identity in incarnations:
            entry = episode.objects[identity]
            first = entry.start_ns if entry.start_ns <= entry.end_ns else extent[identity][0]
            before = [n for n in naming if n.end_ns <= first]
            if before:
                latest = min(before, key=lambda n: (-n.end_ns, n.name, n.uid))
                causes[identity] = (latest.latest_span_id, latest)
            else:
                causes[identity] = (earliest.span_id, earliest)
    return causes
