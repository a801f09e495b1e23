"""`eventtrace run`: watch a cluster's events and export them as traces.

The imperative shell around the pure pipeline: watches parse events into a bounded queue;
one pump filters and offers them, and releases spans on a short tick, with wall time as
"now". Every task belongs to one TaskGroup and ends on SIGTERM/SIGINT, after which every
open episode is closed and flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import time
from typing import Any

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from eventtrace.core.model import EventState, Rejected
from eventtrace.core.pipeline import Pipeline
from eventtrace.export import SpanSink, burst_piece, open_sink
from eventtrace.health import HealthServer
from eventtrace.metrics import Metrics
from eventtrace.settings import Settings
from eventtrace.source.frames import EventFrames
from eventtrace.source.kube import (
    CORE_EVENTS,
    EVENTS_V1,
    TRANSPORT_ERRORS,
    WORKLOADS,
    ApiError,
    KubeApi,
    KubeConfigError,
    Resource,
    load_client,
)
from eventtrace.source.parse import message_was_truncated, parse_event
from eventtrace.source.resolve import Resolver
from eventtrace.source.shapes import EventShape
from eventtrace.source.watch import Watcher

log = logging.getLogger("eventtrace.run")

TICK_SECONDS = 0.05
HOUSEKEEPING_SECONDS = 60.0
SHUTDOWN_FLUSH_SECONDS = 8.0  # within Kubernetes' default 30 s grace, and our own 10 s
QUEUE_SIZE = 2_000  # parsed events waiting for the pump
CACHE_WAIT_SECONDS = 60.0
# Events accepted, and spans released, between two turns of the event loop: small enough
# that the export task (which needs a turn for each step of each batch) keeps pace.
BATCH = 500


class StartupError(Exception):
    """Cannot start: the message says what and what to do."""


class _Shutdown(Exception):
    pass


async def run(settings: Settings, metrics: Metrics) -> int:
    try:
        client, source = await load_client(settings.kubeconfig, settings.context)
    except KubeConfigError as error:
        print(f"eventtrace: {error}", file=sys.stderr)
        return 1
    api = KubeApi(client)
    try:
        events = await preflight(api, settings, source)
        service = LiveService(api, events, settings, metrics)
        await service.run()
    except StartupError as error:
        print(f"eventtrace: {error}", file=sys.stderr)
        return 1
    finally:
        await api.close()
    return 0


async def preflight(api: KubeApi, settings: Settings, source: str) -> Resource:
    """Reach the API server and list events once, retrying for `startup_timeout`.
    Chooses events.k8s.io/v1 where the server has it (discovery), else core/v1."""

    async def attempt() -> Resource:
        events = CORE_EVENTS
        try:
            await api.get("/apis/events.k8s.io/v1")
            events = EVENTS_V1
        except ApiError as error:
            if error.status != 404:
                raise
        namespace = settings.namespaces[0] if settings.namespaces else None
        await api.get(events.collection(namespace), {"limit": "1"})
        return events

    retrying = AsyncRetrying(
        stop=stop_after_delay(settings.startup_timeout),
        wait=wait_exponential(multiplier=0.25, max=5) + wait_random(0, 0.5),
        retry=retry_if_exception_type((ApiError, *TRANSPORT_ERRORS)),
        before_sleep=lambda state: log.info(
            "API server not usable yet (%s); retrying", state.outcome and state.outcome.exception()
        ),
        reraise=True,
    )
    try:
        async for try_ in retrying:
            with try_:
                return await attempt()
    except ApiError as error:
        raise StartupError(_explain(error, api.server, source)) from None
    except TRANSPORT_ERRORS as error:
        raise StartupError(
            f"cannot reach the Kubernetes API server at {api.server} ({_short(error)}) after "
            f"{settings.startup_timeout:g}s: check that the cluster is running and the server "
            f"address in {source}"
        ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _explain(error: ApiError, server: str, source: str) -> str:
    if error.status == 401:
        return (
            f"the API server at {server} rejected the credentials from {source} (401 "
            f"Unauthorized): they may have expired; log in again or refresh the token"
        )
    if error.status == 403:
        return (
            f"not allowed to list events ({error.message}): grant get/list/watch on events in "
            'API groups "" and events.k8s.io (the Helm chart\'s ClusterRole does)'
        )
    return f"the API server at {server} answered {error.status} {error.reason}: {error.message}"


def _short(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class LiveService:
    def __init__(self, api: KubeApi, events: Resource, settings: Settings, metrics: Metrics):
        self.settings = settings
        self.metrics = metrics
        self.pipeline = Pipeline(settings.trace_rules, int(settings.resolve_timeout * 1e9))
        self.resolver = Resolver(api, self.pipeline.index, metrics)
        self.keep = settings.event_filter
        self.queue: asyncio.Queue[EventState] = asyncio.Queue(QUEUE_SIZE)
        namespaces: list[str | None] = list(settings.namespaces) or [None]
        timeouts = (settings.watch_timeout, settings.inactivity_timeout)
        self.event_watchers = [
            Watcher(
                api,
                events,
                self._on_event,
                metrics,
                namespace=ns,
                timeouts=timeouts,
                on_synced=self._events_listed,
                frames=EventFrames(),
            )
            for ns in namespaces
        ]
        self.object_watchers = [
            self._object_watcher(api, resource, ns, timeouts)
            for resource in WORKLOADS
            for ns in (namespaces if resource.namespaced else [None])
        ]
        self._reported = (0, 0)
        # Events received since the last report, by type: counted here and added to the
        # metric each tick, as a counter's inc (a lock, in Python) cost more than a dict.
        self._received: dict[str, int] = {}
        # A complete list need not wait out the reorder window (see `_events_listed`):
        # how many of its states the queue still holds, and the pipeline's arrival number
        # to settle once the owners they asked for are in.
        self._list_left = 0
        self._to_settle: int | None = None
        self.description = f"{events.label} ({events.api_version}) in " + (
            ", ".join(settings.namespaces) if settings.namespaces else "all namespaces"
        )

    def _object_watcher(
        self, api: KubeApi, resource: Resource, namespace: str | None, timeouts: tuple[float, float]
    ) -> Watcher:
        feed = self.resolver.feed(resource.kind, resource.group, namespace)
        return Watcher(
            api,
            resource,
            feed,
            self.metrics,
            namespace=namespace,
            timeouts=timeouts,
            retry_forbidden=False,  # one warning, then chains stop at that kind
            on_forbidden=self.resolver.forbidden,
            on_listed=feed.listed,
        )

    def not_ready(self) -> str | None:
        for watcher in self.event_watchers:
            if not watcher.synced.is_set():
                return f"{watcher.name}: first list not done"
            if not watcher.healthy:
                return f"{watcher.name}: reconnecting to the API server"
        return None

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or _stop_on_signals()
        host, port = self.settings.metrics_host_port
        health = HealthServer(host, port, self.metrics, self.not_ready)
        try:
            await health.start()
        except OSError as error:
            raise StartupError(
                f"cannot serve metrics on {self.settings.metrics_addr} ({error.strerror}): "
                "set EVENTTRACE_METRICS_ADDR or --metrics-addr to a free address"
            ) from None
        output = self.settings.output or "otlp"
        sink = open_sink(
            output, self.settings, self.metrics, shutdown_timeout=SHUTDOWN_FLUSH_SECONDS
        )
        log.info(
            "watching %s; spans to %s; metrics on http://%s/metrics",
            self.description,
            output,
            self.settings.metrics_addr,
        )
        async with sink:
            try:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(health.serve())
                    for watcher in self.object_watchers:
                        tasks.create_task(watcher.run())
                    tasks.create_task(self._watch_events(tasks))
                    tasks.create_task(self.resolver.run())
                    tasks.create_task(self._pump(sink))
                    await stop.wait()
                    raise _Shutdown
            except* _Shutdown:
                pass
            await self._shutdown(sink)

    async def _watch_events(self, tasks: asyncio.TaskGroup) -> None:
        """Start the event watches once the workload caches are listed, so a re-list of
        an hour of events resolves owners from memory rather than by thousands of GETs.
        Not forever: a slow cache is filled in by GETs meanwhile."""
        settled = [asyncio.create_task(w.settled.wait()) for w in self.object_watchers]
        try:
            await asyncio.wait(settled, timeout=CACHE_WAIT_SECONDS)
        finally:
            for waiting in settled:
                waiting.cancel()
        for watcher in self.event_watchers:
            tasks.create_task(watcher.run())

    async def _shutdown(self, sink: SpanSink) -> None:
        now = time.time_ns()
        while not self.queue.empty():
            self._accept(self.queue.get_nowait(), now)
        # In pieces the export queue can hold, waiting for room until the flush deadline.
        deadline = time.monotonic() + SHUTDOWN_FLUSH_SECONDS
        piece = burst_piece(self.settings)
        flushed = 0
        while spans := self.pipeline.drain(now, budget=piece):
            if time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sink.room(), deadline - time.monotonic())
            sink.submit(spans)
            flushed += len(spans)
        self._report()
        log.info("stopped: closed every open trace (%d spans flushed)", flushed)

    async def _on_event(self, kind: str, raw: EventShape | dict[str, Any]) -> None:
        """Parsed as it comes off the stream, so the raw input is freed while still in the
        CPU's cache and only the small state waits."""
        if kind == "DELETED":
            return  # an event expiring (TTL) is no occurrence
        state = parse_event(raw, "watch", max_message_bytes=self.settings.max_message_bytes)
        if isinstance(state, Rejected):
            log.warning("%s", state)
            self.metrics.invalid_events.labels(reason=state.category).inc()
            return
        if self.queue.full():
            await self.queue.put(state)  # a full queue slows the watch: backpressure
        else:
            self.queue.put_nowait(state)  # no coroutine to make and run

    def _events_listed(self) -> None:
        """A list of events is complete, so what it held is all there was up to its
        resourceVersion: what comes next is newer. Its states need not wait out the
        reorder window (`resolve_timeout`), only for the owners they asked for; a re-list
        of an hour of events goes out as soon as it is in, not a window later.

        With several event watches (namespaces), only once none is half-way through a
        list: their items interleave in the queue, and a cut made while one is listing
        would settle the first part of that list before its rest is in."""
        if any(watcher.listing for watcher in self.event_watchers):
            return  # the last list to end makes the cut, for all of them
        self._list_left = self.queue.qsize()  # first in, first out: the cut is after them
        if not self._list_left:  # all taken already (or its last items rejected)
            self._to_settle = self.pipeline.arrivals

    async def _pump(self, sink: SpanSink) -> None:
        next_release = 0
        bursting = False  # releases have come in pieces since the pipeline was last empty
        next_housekeeping = time.monotonic() + HOUSEKEEPING_SECONDS
        while True:
            await sink.room()  # the exporter is behind: leave events in the queue meanwhile
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_SECONDS):
                    state = await self.queue.get()
                    now = time.time_ns()
                    self._accept(state, now)
                    for _ in range(BATCH):
                        if self.queue.empty():
                            break
                        self._accept(self.queue.get_nowait(), now)
            now = time.time_ns()
            if self._to_settle is not None and not self.resolver.busy:
                self.pipeline.settle(self._to_settle)
                self._to_settle = None
                next_release = now
            if now >= next_release:
                piece = max(1, min(self.settings.export_batch_size, BATCH))
                while True:
                    spans = self.pipeline.release(now, budget=piece)
                    if spans:
                        sink.submit(spans)
                    if not self.pipeline.due(now):
                        break
                    bursting = True
                    await sink.room()  # a burst (a re-list): as fast as the exporter takes it
                    await asyncio.sleep(0)
                if bursting and not self.pipeline.pending and self.queue.empty():
                    sink.send_now()  # the burst's last, partial batch has no company coming
                    bursting = False
                self._report()
                next_release = now + int(TICK_SECONDS * 1e9)
            if time.monotonic() >= next_housekeeping:
                self.pipeline.forget_old_events(now)
                self.resolver.sweep()
                gc.collect()  # the old generation, which the thresholds (cli.py) leave be
                next_housekeeping = time.monotonic() + HOUSEKEEPING_SECONDS

    def _accept(self, state: EventState, now: int) -> None:
        self._offer(state, now)
        if self._list_left:
            self._list_left -= 1
            if not self._list_left:  # the list's last state is in the pipeline
                self._to_settle = self.pipeline.arrivals

    def _offer(self, state: EventState, now: int) -> None:
        self._received[state.type] = self._received.get(state.type, 0) + 1
        if message_was_truncated(state):
            self.metrics.invalid_events.labels(reason="message_truncated").inc()
        excluded_by = self.keep.rejects(state)
        if excluded_by:
            self.metrics.events_filtered.labels(filter=excluded_by).inc()
            return
        self.resolver.request_chain(state.involved)
        self.pipeline.offer(state, now)

    def _report(self) -> None:
        for type_, count in self._received.items():
            self.metrics.events_received.labels(type=type_).inc(count)
        self._received.clear()
        stats = self.pipeline.stats
        occurrences, stale = self._reported
        self.metrics.occurrences.inc(stats.occurrences - occurrences)
        self.metrics.stale_states.inc(stats.stale - stale)
        self._reported = (stats.occurrences, stats.stale)
        self.metrics.open_episodes.set(self.pipeline.assembler.open_episodes)
        self.metrics.pending_events.set(self.pipeline.pending + self.queue.qsize())


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop
