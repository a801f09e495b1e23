"""`eventtrace run`: watch a cluster's events and export them as traces.

The imperative shell around the pure pipeline: watches parse events into a bounded queue;
one pump filters and offers them, and releases spans on a short tick, with wall time as
"now". Every task belongs to a TaskGroup and ends on SIGTERM/SIGINT. With leader election
only the replica holding the Lease runs a `Term` (watches events and exports); all keep
the workload caches warm. A term ends with a flush and a save of the state: the next
process carries on its open episodes; without a state they close at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tenacity import RetryCallState

from eventtrace.core.episodes import Assembler
from eventtrace.core.model import EventState, Rejected, Span
from eventtrace.core.occurrences import OccurrenceTracker
from eventtrace.core.owners import ObjectIndex
from eventtrace.core.pipeline import Pipeline
from eventtrace.export import SpanSink, open_sink
from eventtrace.health import HealthServer
from eventtrace.leader import Leadership
from eventtrace.metrics import Metrics
from eventtrace.settings import Settings
from eventtrace.source.frames import EventFrames, ObjectFrames
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
from eventtrace.source.watch import Change, Item, Listed, Listing, Watcher, retrying
from eventtrace.state import Progress, StateError, load_progress, open_store

log = logging.getLogger("eventtrace.run")

TICK_SECONDS = 0.05
QUEUE_SIZE = 2_000  # parsed events waiting for the pump
CACHE_WAIT_SECONDS = 60.0
SAVE_SECONDS = 5.0  # the longest a state save may take
POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
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
            await api.get_bytes("/apis/events.k8s.io/v1")
            events = EVENTS_V1
        except ApiError as error:
            if error.status != 404:
                raise
        namespace = settings.namespaces[0] if settings.namespaces else None
        await api.get_bytes(events.collection(namespace), {"limit": "1"})
        return events

    last: BaseException | None = None

    def retrying_after(state: RetryCallState) -> None:
        nonlocal last
        last = state.outcome.exception() if state.outcome else None
        log.info("API server not usable yet (%s); retrying", last)

    # A deadline, not a count of attempts: a request that hangs ends with it too.
    try:
        async with asyncio.timeout(settings.startup_timeout):
            # The watches' one retry policy; RBAC (403) is not waited for here.
            async for try_ in retrying(_worth_retrying_at_start, before_sleep=retrying_after):
                with try_:
                    return await attempt()
    except TimeoutError:
        pass  # the deadline: say what the last attempt met
    except ApiError as error:  # refused for good (403)
        raise StartupError(_explain(error, api.server, source)) from None
    if isinstance(last, ApiError):
        raise StartupError(_explain(last, api.server, source))
    reason = f" ({_short(last)})" if last is not None else " (no answer)"
    raise StartupError(
        f"cannot reach the Kubernetes API server at {api.server}{reason} after "
        f"{settings.startup_timeout:g}s: check that the cluster is running and the server "
        f"address in {source}"
    )


def _worth_retrying_at_start(error: BaseException) -> bool:
    return isinstance(error, TRANSPORT_ERRORS) or (
        isinstance(error, ApiError) and error.status != 403
    )


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
    """What runs for the life of the process: the health server, the workload caches and
    owner lookups (kept warm on a standby too), and the leadership that decides whether
    this replica exports. The exporting itself is a `Term`."""

    def __init__(self, api: KubeApi, events: Resource, settings: Settings, metrics: Metrics):
        self.api = api
        self.events = events
        self.settings = settings
        self.metrics = metrics
        self.index = ObjectIndex()
        self.resolver = Resolver(api, self.index, metrics, tombstone_seconds=settings.object_memory)
        namespaces: list[str | None] = list(settings.namespaces) or [None]
        self.namespaces = namespaces
        self.object_watchers = [
            Watcher(
                api,
                resource,
                self.resolver.feed(resource.kind, resource.group, ns, resource.version),
                metrics,
                namespace=ns,
                timeouts=(settings.watch_timeout, settings.inactivity_timeout),
                on_forbidden=self.resolver.forbidden,
                frames=ObjectFrames(),
            )
            for resource in WORKLOADS
            for ns in (namespaces if resource.namespaced else [None])
        ]
        pod_namespace = _pod_namespace()
        location = settings.state_location(pod_namespace, api.server)
        self.store = open_store(location, api.client)
        lease = settings.lease
        self.leadership = (
            Leadership(
                api.client,
                lease,
                settings.identity or socket.gethostname(),
                (settings.lease_duration, settings.renew_deadline, settings.retry_period),
                metrics,
            )
            if lease is not None
            else None
        )
        self.term: Term | None = None
        self.description = f"{events.label} ({events.api_version}) in " + (
            ", ".join(settings.namespaces) if settings.namespaces else "all namespaces"
        )

    def unhealthy(self) -> str | None:
        """Why Kubernetes should restart this process: credentials refused for too long."""
        since = self.api.unauthorized_since
        limit = self.settings.unauthorized_timeout
        if since is not None and time.monotonic() - since > limit:
            return f"the API server has refused the credentials for over {limit:g}s"
        return None

    def not_ready(self) -> str | None:
        term = self.term
        if term is None:
            return None  # a healthy standby is ready
        return term.not_ready()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or _stop_on_signals()
        host, port = self.settings.metrics_host_port
        health = HealthServer(host, port, self.metrics, self.not_ready, self.unhealthy)
        try:
            await health.start()
        except OSError as error:
            raise StartupError(
                f"cannot serve metrics on {self.settings.metrics_addr} ({error.strerror}): "
                "set EVENTTRACE_METRICS_ADDR or --metrics-addr to a free address"
            ) from None
        log.info(
            "watching %s; spans to %s; state in %s; metrics on http://%s:%d/metrics",
            self.description,
            self.settings.output or "otlp",
            self.store.describe() if self.store is not None else "none",
            health.host,
            health.port,
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(health.serve())
                for watcher in self.object_watchers:
                    tasks.create_task(watcher.run())
                tasks.create_task(self.resolver.run())
                if self.leadership is None:
                    self.metrics.leader.set(1)
                    leading = tasks.create_task(self._lead())
                else:
                    leading = tasks.create_task(self.leadership.run(self._lead))
                await stop.wait()
                await self._stop_leading(leading)
                raise _Shutdown
        except* _Shutdown:
            pass

    async def _lead(self) -> None:
        """One term of exporting, from the saved state to a flush and a save at its end."""
        await self._caches_listed()
        term = Term(self)
        self.term = term
        try:
            await term.run()
        finally:
            self.term = None

    async def _stop_leading(self, leading: asyncio.Task[None]) -> None:
        """A clean stop: the term flushes and saves, then the Lease is released."""
        term = self.term
        if term is not None:
            term.stopping.set()
        if self.leadership is None:
            await asyncio.wait({leading}, timeout=self.settings.shutdown_timeout + SAVE_SECONDS)
        else:
            await self.leadership.finish(self.settings.shutdown_timeout + SAVE_SECONDS)
            leading.cancel()
            await asyncio.wait({leading})
            await self.leadership.release()

    async def _caches_listed(self) -> None:
        """Start the event watches once the workload caches are listed, so a re-list of
        an hour of events resolves owners from memory rather than by thousands of GETs.
        Not forever: a slow cache is filled in by GETs meanwhile."""
        settled = [asyncio.create_task(w.settled.wait()) for w in self.object_watchers]
        try:
            await asyncio.wait(settled, timeout=CACHE_WAIT_SECONDS)
        finally:
            for waiting in settled:
                waiting.cancel()


class Term:
    """One term of exporting: the event watches (resumed where the state says), the
    pipeline (carrying on the state's open episodes), the exporter, and the state saves.
    It ends cleanly when `stopping` is set (flush, then save), or is cancelled at once
    when the Lease is lost (nothing more is exported or saved)."""

    def __init__(self, service: LiveService) -> None:
        self.service = service
        self.settings = settings = service.settings
        self.metrics = service.metrics
        self.resolver = service.resolver
        self.keep = settings.event_filter
        self.stopping = asyncio.Event()
        self.progress = Progress(_cluster_identity(settings, service.api))
        self.pipeline = Pipeline(settings.trace_rules, int(settings.resolve_timeout * 1e9))
        # Parsed events, and the event watches' list markers in their place among them.
        self.queue: asyncio.Queue[EventState | Listing | Listed] = asyncio.Queue(QUEUE_SIZE)
        self.event_watchers: list[Watcher] = []
        self._reported = (0, 0)
        # Events received since the last report, by type: counted here and added to the
        # metric each tick, as a counter's inc (a lock, in Python) cost more than a dict.
        self._received: dict[str, int] = {}
        # The event watches whose list the pump is taking in (between their markers), and
        # the arrival number to settle once the owners that list asked for are in.
        self._listing: set[str] = set()
        self._to_settle: int | None = None

    def not_ready(self) -> str | None:
        if not self.event_watchers:
            return "loading the saved state"
        for watcher in self.event_watchers:
            if not watcher.synced.is_set():
                return f"{watcher.name}: first list not done"
            if not watcher.healthy:
                return f"{watcher.name}: reconnecting to the API server"
        return None

    async def run(self) -> None:
        service, settings = self.service, self.settings
        self.progress = await load_progress(service.store, self.progress.cluster)
        keeping = service.store is not None  # without a store, nothing to keep track of
        tracker = OccurrenceTracker(
            exported=self.progress.exported_count if self.progress.exported else None
        )
        assembler = Assembler(
            settings.trace_rules, on_close=self.progress.closed if keeping else None
        )
        assembler.restore(self.progress.restored_episodes)
        self.progress.restored_episodes = []
        self.pipeline = Pipeline(
            settings.trace_rules,
            int(settings.resolve_timeout * 1e9),
            service.index,
            tracker=tracker,
            assembler=assembler,
        )
        self.event_watchers = [
            Watcher(
                service.api,
                service.events,
                self._on_event,
                self.metrics,
                namespace=ns,
                timeouts=(settings.watch_timeout, settings.inactivity_timeout),
                frames=EventFrames(),
                resource_version=self.progress.resource_versions.get(
                    _watch_name(service.events, ns), ""
                ),
            )
            for ns in service.namespaces
        ]
        sink = open_sink(
            settings.output or "otlp",
            settings,
            self.metrics,
            shutdown_timeout=settings.shutdown_timeout,
            on_delivered=self.progress.delivered if keeping else None,
        )
        async with sink:
            try:
                async with asyncio.TaskGroup() as tasks:
                    for watcher in self.event_watchers:
                        tasks.create_task(watcher.run())
                    tasks.create_task(self._pump(sink))
                    tasks.create_task(self._save_every_interval())
                    await self.stopping.wait()
                    raise _Shutdown
            except* _Shutdown:
                pass
            await self._flush(sink)
        # Every watch position is safe to resume from only if all before it went out.
        complete = sink.lost == 0
        if complete:
            self.progress.resource_versions = {
                _watch_name(service.events, w.namespace): w.resource_version
                for w in self.event_watchers
                if w.resource_version
            }
        await self._save()

    async def _flush(self, sink: SpanSink) -> None:
        now = time.time_ns()
        while not self.queue.empty():
            self._take(self.queue.get_nowait(), now)
        # With a state, open episodes are carried on by the next process (the same trace
        # ids); without one, they close now.
        closing = self.service.store is None
        deadline = time.monotonic() + self.settings.shutdown_timeout
        flushed = await self._submit(self.pipeline.drain(now, close=closing), sink, deadline)
        self._report()
        log.info(
            "stopped: %d spans flushed; %s",
            flushed,
            "closed every open trace"
            if closing
            else f"{self.pipeline.assembler.open_episodes} open traces carried on in the state",
        )

    async def _save_every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.settings.state_interval)
            if self.progress.changed:
                # No watch positions in between: after a crash, a re-list (deduplicated by
                # what was exported) is what loses nothing.
                self.progress.resource_versions = {}
                await self._save()

    async def _save(self) -> None:
        store = self.service.store
        if store is None:
            return
        snapshot = self.progress.snapshot(self.pipeline.assembler.episodes())
        data = await asyncio.to_thread(snapshot.encode)  # ~0.1 s at 100,000 events
        try:
            async with asyncio.timeout(SAVE_SECONDS):
                await store.save(data)
        except (StateError, TimeoutError, *TRANSPORT_ERRORS) as error:
            self.progress.changed = True
            self.metrics.state_saves.labels(result="failed").inc()
            log.warning("could not save the state to %s: %s", store.describe(), error)
            return
        self.metrics.state_saves.labels(result="ok").inc()
        self.metrics.state_bytes.set(len(data))

    async def _on_event(self, item: Item) -> None:
        """Parsed as it comes off the stream, so the raw input is freed while still in the
        CPU's cache and only the small state waits. List markers keep their place."""
        if isinstance(item, Change):
            if item.type == "DELETED":
                return  # an event expiring (TTL) is no occurrence
            state = parse_event(
                item.object, "watch", max_message_bytes=self.settings.max_message_bytes
            )
            if isinstance(state, Rejected):
                log.warning("%s", state)
                self.metrics.invalid_events.labels(reason=state.category).inc()
                return
            await self.queue.put(state)  # a full queue slows the watch: backpressure
        else:
            await self.queue.put(item)

    async def _pump(self, sink: SpanSink) -> None:
        every = self.settings.housekeeping_interval
        next_housekeeping = time.monotonic() + every
        bursting = False  # a release of over a batch (a re-list), its last batch not sent
        while True:
            await sink.room()  # the exporter is behind: leave events in the queue meanwhile
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_SECONDS):
                    item = await self.queue.get()
                    now = time.time_ns()
                    self._take(item, now)
                    for _ in range(BATCH):
                        if self.queue.empty():
                            break
                        self._take(self.queue.get_nowait(), now)
            now = time.time_ns()
            if self._to_settle is not None and not self.resolver.busy:
                self.pipeline.settle(self._to_settle)
                self._to_settle = None
            released = await self._submit(
                self.pipeline.release(now, listing=bool(self._listing)), sink
            )
            bursting = bursting or released > self.settings.export_batch_size
            if bursting and not self.pipeline.pending and self.queue.empty():
                sink.send_now()  # a burst's last, partial batch has no company coming
                bursting = False
            self._report()
            if time.monotonic() >= next_housekeeping:
                memory = int(self.settings.event_memory * 1e9)
                forgotten = self.pipeline.forget_old_events(now, memory)
                if self.service.store is not None:
                    self.progress.forget(forgotten)
                self.resolver.sweep()
                gc.collect()  # the old generation, which the thresholds (cli.py) leave be
                next_housekeeping = time.monotonic() + every

    async def _submit(
        self, pieces: Iterator[list[Span]], sink: SpanSink, deadline: float | None = None
    ) -> int:
        """Hand the spans to the exporter, waiting for room after every `sink.burst_piece`
        (until `deadline`, a monotonic time, if given). Returns how many."""
        piece, submitted, since_room = sink.burst_piece, 0, 0
        for spans in pieces:
            sink.submit(spans)
            submitted += len(spans)
            since_room += len(spans)
            if since_room >= piece:
                since_room = 0
                self._report()  # a re-list releases for seconds: the gauges keep up
                if deadline is None:
                    await sink.room()
                elif (left := deadline - time.monotonic()) > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(sink.room(), left)
        return submitted

    def _take(self, item: EventState | Listing | Listed, now: int) -> None:
        if isinstance(item, Listing):
            self._listing.add(item.watcher)
        elif isinstance(item, Listed):
            self._listing.discard(item.watcher)
            if not self._listing:
                # Everything listed is in the pipeline, and nothing half-listed is (with
                # several namespaces, their lists interleave): it need not wait out the
                # reorder window, only for the owners it asked for.
                self._to_settle = self.pipeline.arrivals
        else:
            self._offer(item, now)

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


def _watch_name(events: Resource, namespace: str | None) -> str:
    return f"{events.label}/{namespace or ''}"


def _cluster_identity(settings: Settings, api: KubeApi) -> str:
    """What a saved state must match: the cluster's name and its API server."""
    return f"{settings.cluster_name} {api.server}"


def _pod_namespace() -> str | None:
    """The namespace of the pod this runs in, where it runs in one."""
    try:
        return POD_NAMESPACE_FILE.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop
