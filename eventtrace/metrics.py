"""Prometheus metrics. One `Metrics` per pipeline, on its own registry (no process globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_received = Counter(
            "eventtrace_events_received",
            "Kubernetes Events received (list items and watch ADDED/MODIFIED), by event type.",
            ["type"],
            registry=r,
        )
        self.events_filtered = Counter(
            "eventtrace_events_filtered",
            "Events left out by the include/exclude filters, by the filter that matched.",
            ["filter"],
            registry=r,
        )
        self.invalid_events = Counter(
            "eventtrace_invalid_events",
            "Inputs rejected (each is also logged), by reason: schema, no_time, no_name, "
            "not_an_object, object, bad_utf8, too_deep, too_big, invalid_json; and "
            "message_truncated for messages cut, not dropped.",
            ["reason"],
            registry=r,
        )
        self.stale_states = Counter(
            "eventtrace_stale_event_states",
            "Event states with no new occurrence (re-lists, replays, message-only updates).",
            registry=r,
        )
        self.occurrences = Counter(
            "eventtrace_occurrences",
            "Event occurrences turned into spans (a count jump of 4 counts 4).",
            registry=r,
        )
        self.spans_exported = Counter(
            "eventtrace_spans_exported",
            "Spans the backend accepted, by span kind (event, object).",
            ["kind"],
            registry=r,
        )
        self.spans_failed = Counter(
            "eventtrace_spans_failed",
            "Spans that could not be delivered and were dropped, by reason.",
            ["reason"],
            registry=r,
        )
        self.export_retries = Counter(
            "eventtrace_export_retries",
            "Export attempts that failed and will be retried.",
            registry=r,
        )
        self.export_queue = Gauge(
            "eventtrace_export_queue_spans",
            "Spans waiting to be exported.",
            registry=r,
        )
        self.watch_restarts = Counter(
            "eventtrace_watch_restarts",
            "Watch streams restarted, by resource and reason (timeout, drop, expired, error, "
            "forbidden, short, unreadable).",
            ["resource", "reason"],
            registry=r,
        )
        self.open_episodes = Gauge(
            "eventtrace_open_episodes",
            "Traces (episodes) open and collecting occurrences.",
            registry=r,
        )
        self.pending_events = Gauge(
            "eventtrace_pending_events",
            "Events waiting in the reorder window or for their owners to resolve.",
            registry=r,
        )
        self.owner_lookups = Counter(
            "eventtrace_owner_lookups",
            "Object lookups for owner chains, by result "
            "(get, not_found, forbidden, error, queue_full).",
            ["result"],
            registry=r,
        )
        self.tracked_objects = Gauge(
            "eventtrace_tracked_objects",
            "Objects held for owner resolution, tombstones included.",
            registry=r,
        )
        self.export_lag = Histogram(
            "eventtrace_export_lag_seconds",
            "Per exported batch: from the occurrence time of its oldest span to its export.",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
            registry=r,
        )

        self.leader = Gauge(
            "eventtrace_leader",
            "1 while this replica holds the Lease and exports (always, without leader "
            "election); 0 on a standby.",
            registry=r,
        )
        self.state_saves = Counter(
            "eventtrace_state_saves",
            "Saves of the progress state, by result (ok, failed).",
            ["result"],
            registry=r,
        )
        self.state_bytes = Gauge(
            "eventtrace_state_bytes",
            "Size of the last progress state saved, compressed.",
            registry=r,
        )

        # Series whose label values are known from the start, at 0, so that /metrics shows
        # them before the first occurrence (and rate() has a starting point). The others
        # (invalid_events' reasons, watch_restarts' resources) appear when first counted.
        for event_type in ("Normal", "Warning"):
            self.events_received.labels(type=event_type)
        for verb in ("include", "exclude"):  # EventFilter.rejects's names
            for what in ("type", "reason", "kind", "namespace"):
                self.events_filtered.labels(filter=f"{verb}_{what}")
        for kind in ("event", "object"):
            self.spans_exported.labels(kind=kind)
        for reason in ("queue_full", "shutdown", "error"):
            self.spans_failed.labels(reason=reason)
        for result in ("get", "not_found", "forbidden", "error", "queue_full"):
            self.owner_lookups.labels(result=result)
        for result in ("ok", "failed"):
            self.state_saves.labels(result=result)

    def render(self) -> bytes:
        return generate_latest(self.registry)
