"""The heart: occurrences and their owner chains in, spans out. No I/O, no clock.

A trace is one episode of one root (DESIGN §1). Event spans leave as soon as they are
added; object spans leave when their episode closes, because an object span covers its
whole subtree and takes as parent the event that caused it, the earliest in the episode.
The caller passes "now" (wall time when live, event time in a replay) to close episodes.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from eventtrace.core import ids
from eventtrace.core.model import (
    AttributeValue,
    KubeObject,
    ObjectRef,
    Occurrence,
    Span,
    SpanKind,
    SpanStatus,
)
from eventtrace.core.owners import Chain, Link, names

FALLBACK_SERVICE = "kubernetes"

# Kinds with an OpenTelemetry semantic-convention pair (k8s.<kind>.name / .uid).
_SEMCONV = {
    "Pod": "k8s.pod",
    "ReplicaSet": "k8s.replicaset",
    "Deployment": "k8s.deployment",
    "StatefulSet": "k8s.statefulset",
    "DaemonSet": "k8s.daemonset",
    "Job": "k8s.job",
    "CronJob": "k8s.cronjob",
    "Node": "k8s.node",
    "Namespace": "k8s.namespace",
}


@dataclass(frozen=True, slots=True)
class TraceRules:
    cluster_name: str
    trace_idle_ns: int
    trace_max_ns: int


@dataclass(frozen=True, slots=True)
class _EventNote:
    """The first occurrence of one event in an episode: a candidate cause. Only what the
    cause rules read, not the whole EventState: episodes keep these until they close (the
    span id is worked out again from uid and count when needed rather than kept)."""

    start_ns: int
    name: str
    message: str
    component: str
    instance: str
    uid: str
    event_count: int

    @property
    def span_id(self) -> str:
        return ids.event_span_id(self.uid, self.event_count)


@dataclass(slots=True)
class _ObjectEntry:
    link: Link
    owner: str | None  # identity of its owner on the chain
    span_id: str  # its object span's id in this episode
    start_ns: int  # its own occurrences; the subtree extent is computed at close
    end_ns: int
    events: dict[str, _EventNote] = field(default_factory=dict)  # by event uid


@dataclass(slots=True)
class Episode:
    root: Link
    trace_id: str
    start_ns: int  # occurrence time of its first occurrence
    last_ns: int  # latest occurrence time in it
    opened_at: int  # "now" when it opened, and when it last took an occurrence
    touched_at: int
    number: int = 0  # in the order episodes were opened: the order they close in
    objects: dict[str, _ObjectEntry] = field(default_factory=dict)

    def accepts(self, time_ns: int, rules: TraceRules) -> bool:
        if time_ns < self.start_ns:
            return True  # late and older than the episode: join rather than rewrite ids
        return (
            time_ns < self.last_ns + rules.trace_idle_ns
            and time_ns < self.start_ns + rules.trace_max_ns
        )

    def due_at(self, rules: TraceRules) -> int:
        """When it closes: idle for trace_idle, or open for trace_max. Only ever later."""
        return min(self.touched_at + rules.trace_idle_ns, self.opened_at + rules.trace_max_ns)


class Assembler:
    """Keeps the open episodes. `add` returns spans ready to export; so do the closers."""

    __slots__ = ("_deadlines", "_open", "_opened", "rules")

    def __init__(self, rules: TraceRules) -> None:
        self.rules = rules
        self._open: dict[str, Episode] = {}  # by root identity, in the order they opened
        # (due_at, number, root identity) as of when it was pushed: a heap, so finding what
        # is due does not look at every open episode. An episode touched since is due
        # later than its entry says, and is pushed again when the entry comes up.
        self._deadlines: list[tuple[int, int, str]] = []
        self._opened = 0

    @property
    def open_episodes(self) -> int:
        return len(self._open)

    def add(self, occurrence: Occurrence, chain: Chain, now: int) -> list[Span]:
        root = chain[-1]
        spans: list[Span] = []
        episode = self._open.get(root.identity)
        if episode is not None and not episode.accepts(occurrence.time_ns, self.rules):
            spans.extend(self._close(episode))
            episode = None
        if episode is None:
            start = occurrence.time_ns
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
        episode.last_ns = max(episode.last_ns, occurrence.time_ns)
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
                objects[identity] = _ObjectEntry(
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
        note = involved.events.get(event.uid)
        # (start, span id) < the note's: its span id only matters on equal starts.
        if (
            note is None
            or start < note.start_ns
            or (start == note.start_ns and span_id < note.span_id)
        ):
            involved.events[event.uid] = _EventNote(
                start,
                event.name,
                event.message,
                event.component,
                event.instance,
                event.uid,
                event.count,
            )
        return event_span(
            occurrence,
            trace_id=episode.trace_id,
            span_id=span_id,
            parent_id=involved.span_id,
            involved=involved.link,
            cluster=self.rules.cluster_name,
        )

    def _close(self, episode: Episode) -> list[Span]:
        del self._open[episode.root.identity]
        return object_spans(episode, self.rules.cluster_name)


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
    root_manager = _spec_manager(episode.root.known)
    spans = []
    for identity in sorted(episode.objects):
        entry = episode.objects[identity]
        cause = _cause(entry, episode) if entry.owner is not None else None
        if cause is not None:
            parent_id: str | None = cause.span_id
        elif entry.owner is not None:
            parent_id = episode.objects[entry.owner].span_id
        else:
            parent_id = None
        service = (cause.component if cause else "") or root_manager or FALLBACK_SERVICE
        instance = cause.instance if cause else ""
        start, end = extent[identity]
        spans.append(
            Span(
                trace_id=episode.trace_id,
                span_id=entry.span_id,
                parent_id=parent_id,
                name=entry.link.ref.display_name,
                kind=SpanKind.OBJECT,
                start_ns=start,
                end_ns=max(start, end),
                status=SpanStatus.UNSET,
                status_message="",
                resource=_resource(service, instance, cluster),
                attributes=_object_attributes(entry.link),
            )
        )
    return spans


def _cause(entry: _ObjectEntry, episode: Episode) -> _EventNote | None:
    """The earliest event of its owner, in this episode, whose message names it (ties: the
    lower name, then the lower span id, which is only worked out for a tie)."""
    assert entry.owner is not None
    name = entry.link.ref.name
    best: _EventNote | None = None
    for note in episode.objects[entry.owner].events.values():
        if best is not None and (note.start_ns, note.name) > (best.start_ns, best.name):
            continue
        if not names(note.message, name):
            continue
        if (
            best is None
            or (note.start_ns, note.name) < (best.start_ns, best.name)
            or note.span_id < best.span_id
        ):
            best = note
    return best


def _spec_manager(known: KubeObject | None) -> str:
    return known.spec_manager if known is not None else ""


def event_span(
    occurrence: Occurrence,
    *,
    trace_id: str,
    span_id: str,
    parent_id: str,
    involved: Link,
    cluster: str,
) -> Span:
    event = occurrence.event
    warning = event.is_warning
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        name=event.reason,
        kind=SpanKind.EVENT,
        start_ns=occurrence.start_ns,
        end_ns=max(occurrence.start_ns, occurrence.end_ns),
        status=SpanStatus.ERROR if warning else SpanStatus.UNSET,
        status_message=event.message if warning else "",
        resource=_resource(event.component or FALLBACK_SERVICE, event.instance, cluster),
        attributes=_event_attributes(occurrence, involved),
    )


@lru_cache(maxsize=4096)  # a few per component and node: the same tuple, built once
def _resource(service: str, instance: str, cluster: str) -> tuple[tuple[str, AttributeValue], ...]:
    items: list[tuple[str, AttributeValue]] = [
        ("k8s.cluster.name", cluster),
        ("service.name", service),
    ]
    if instance:
        items.append(("service.instance.id", instance))
    return tuple(sorted(items))


def _event_attributes(
    occurrence: Occurrence, involved: Link
) -> tuple[tuple[str, AttributeValue], ...]:
    event = occurrence.event
    ref = event.involved
    object_uid = _uid(involved.ref, ref)
    values: tuple[AttributeValue, ...] = (
        event.reason,
        event.message,
        event.type,
        event.count,
        event.uid,
        event.name,
        occurrence.occurrences,
        ref.kind,
        ref.name,
        object_uid,
        ref.api_version,
        event.field_path,
        event.action,
        event.host,
        ref.namespace,
        ref.name,  # k8s.<kind>.name
        object_uid,  # k8s.<kind>.uid
    )
    return _laid_out(ref.kind, values, _EVENT_KEYS, _EVENT_LAYOUTS)


# (key, index into a span's values) by kind, sorted by key: see _layout.
_Layouts = dict[str, tuple[tuple[str, int], ...]]

# The attribute keys of an event span, in the order of `values` above.
_EVENT_KEYS = (
    "k8s.event.reason",
    "k8s.event.message",
    "k8s.event.type",
    "k8s.event.count",
    "k8s.event.uid",
    "k8s.event.name",
    "eventtrace.core.occurrences",
    "k8s.object.kind",
    "k8s.object.name",
    "k8s.object.uid",
    "k8s.object.api_version",
    "k8s.object.fieldpath",
    "k8s.event.action",
    "k8s.node.name",
    "k8s.namespace.name",
)
_EVENT_LAYOUTS: _Layouts = {}


def _laid_out(
    kind: str, values: tuple[AttributeValue, ...], keys: tuple[str, ...], layouts: _Layouts
) -> tuple[tuple[str, AttributeValue], ...]:
    """`values` (in the order of `keys`, then the kind's semantic-convention name and uid)
    as attributes sorted by key, without empty strings: no dict per span."""
    layout = layouts.get(kind)
    if layout is None:
        layout = _layout(kind, keys, layouts)
    return tuple([(key, value) for key, at in layout if (value := values[at]) or value != ""])


def _layout(kind: str, keys: tuple[str, ...], known: _Layouts) -> tuple[tuple[str, int], ...]:
    """(key, index into the values) for a span about an object of this kind, sorted by key:
    `keys` first, then the semantic-convention pair, which wins where it names the same key
    (k8s.node.name of a Node, k8s.namespace.name of a Namespace)."""
    slots = dict(zip(keys, range(len(keys)), strict=True))
    semconv = _SEMCONV_KEYS.get(kind)
    if semconv is not None:
        slots[semconv[0]] = len(keys)
        slots[semconv[1]] = len(keys) + 1
    layout = tuple(sorted(slots.items()))
    if len(known) < 1024:  # kinds are few; CRDs could be many
        known[kind] = layout
    return layout


def _object_attributes(link: Link) -> tuple[tuple[str, AttributeValue], ...]:
    ref = link.ref
    uid = _uid(ref, ref)
    values: tuple[AttributeValue, ...] = (
        ref.kind,
        ref.name,
        uid,
        ref.api_version,
        ref.namespace,
        True if link.known is None else "",
        ref.name,  # k8s.<kind>.name
        uid,  # k8s.<kind>.uid
    )
    return _laid_out(ref.kind, values, _OBJECT_KEYS, _OBJECT_LAYOUTS)


# The attribute keys of an object span, in the order of `values` above.
_OBJECT_KEYS = (
    "k8s.object.kind",
    "k8s.object.name",
    "k8s.object.uid",
    "k8s.object.api_version",
    "k8s.namespace.name",
    "eventtrace.object.unresolved",
)
_OBJECT_LAYOUTS: _Layouts = {}


def _uid(resolved: ObjectRef, reported: ObjectRef) -> str:
    """The object's real uid where known. kubelet reports a Node's name as its uid: that
    is no uid, so leave it out rather than mislead."""
    uid = resolved.uid or reported.uid
    return "" if uid == reported.name else uid


# (k8s.<kind>.name, k8s.<kind>.uid) by kind.
_SEMCONV_KEYS = {kind: (f"{prefix}.name", f"{prefix}.uid") for kind, prefix in _SEMCONV.items()}


def spans_in_order(spans: Iterable[Span]) -> list[Span]:
    """A canonical order, for output and for comparing runs."""
    return sorted(spans, key=lambda span: (span.trace_id, span.start_ns, span.span_id))
