"""`eventtrace replay` and `eventtrace demo`: the pipeline on recorded input, no cluster."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from importlib import resources

from eventtrace.core.model import EventState, KubeObject, Rejected
from eventtrace.core.pipeline import trace_recording
from eventtrace.export import open_sink
from eventtrace.metrics import Metrics
from eventtrace.settings import Settings
from eventtrace.source.files import read_records
from eventtrace.source.parse import message_was_truncated, parse_event, parse_object

log = logging.getLogger("eventtrace.replay")

DEMO_FILES = ("rollout.jsonl", "image-pull-backoff.jsonl", "objects.json")


@dataclass(slots=True)
class Recording:
    states: list[EventState] = field(default_factory=list)
    objects: list[KubeObject] = field(default_factory=list)


def load_recording(paths: list[str], settings: Settings, metrics: Metrics) -> Recording:
    """Everything usable in the files. Bad items are logged and counted, one by one;
    a file that cannot be read at all raises InputFileError."""
    recording = Recording()
    keep = settings.event_filter
    for record in read_records(paths):
        if record.is_event:
            state = parse_event(
                record.raw, record.where, max_message_bytes=settings.max_message_bytes
            )
            if isinstance(state, Rejected):
                reject(state, metrics)
                continue
            if message_was_truncated(state):
                log.warning(
                    "%s: event %s: message cut to %d bytes",
                    record.where,
                    state.name,
                    settings.max_message_bytes,
                )
                metrics.invalid_events.labels(reason="message_truncated").inc()
            metrics.events_received.labels(type=state.type).inc()
            excluded_by = keep.rejects(state)
            if excluded_by:
                metrics.events_filtered.labels(filter=excluded_by).inc()
                continue
            recording.states.append(state)
        else:
            obj = parse_object(record.raw, record.where, kind=record.kind)
            if isinstance(obj, Rejected):
                reject(obj, metrics)
            else:
                recording.objects.append(obj)
    return recording


def reject(rejected: Rejected, metrics: Metrics) -> None:
    log.warning("%s", rejected)
    metrics.invalid_events.labels(reason=rejected.category).inc()


async def replay(paths: list[str], settings: Settings, metrics: Metrics, output: str) -> int:
    recording = load_recording(paths, settings, metrics)
    spans, stats = trace_recording(recording.states, recording.objects, settings.trace_rules)
    metrics.occurrences.inc(stats.occurrences)
    metrics.stale_states.inc(stats.stale)
    async with open_sink(output, settings, metrics) as sink:
        await sink.submit_burst(spans)
    log.info(
        "replayed %d events and %d objects into %d spans",
        len(recording.states),
        len(recording.objects),
        len(spans),
    )
    if sink.lost:
        # The batcher logged why; the exit code must not say all went well.
        print(
            f"eventtrace: {sink.lost} of {len(spans)} spans could not be delivered",
            file=sys.stderr,
        )
        return 1
    return 0


def demo_paths() -> list[str]:
    folder = resources.files("eventtrace") / "demo"
    return [str(folder / name) for name in DEMO_FILES]
