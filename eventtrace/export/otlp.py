"""OTLP export: finished spans to Jaeger or any OTLP backend, over gRPC or HTTP/protobuf.

The wire format and transport are the OpenTelemetry SDK's own exporters; this module adds
what they lack for "nothing lost" (peers.md): our own bounded queue (drop the oldest when
full, counted), a background task that sends batches and retries a failed batch with
backoff for as long as we run, and a bounded flush at shutdown that counts what it could
not deliver.

Configuration follows the standard `OTEL_EXPORTER_OTLP_*` variables, which the exporters
read themselves; `--otlp-endpoint` / `--otlp-protocol` (Settings) override endpoint and
protocol. A scheme-less gRPC endpoint (`host:4317`) uses TLS unless
`OTEL_EXPORTER_OTLP_(TRACES_)INSECURE=true`, as the OpenTelemetry spec says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from types import TracebackType
from typing import Any, Self, cast

from opentelemetry.exporter.otlp.proto.grpc.exporter import InvalidCompressionValueException
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_base, wait_exponential, wait_random

from eventtrace.core.model import AttributeValue, Span, SpanStatus
from eventtrace.export.protobuf import MAX_CACHED_RESOURCES, SpanEncoder
from eventtrace.metrics import Metrics
from eventtrace.settings import Settings, SettingsError

log = logging.getLogger(__name__)

GRPC = "grpc"
HTTP_PROTOBUF = "http/protobuf"
PROTOCOLS = (GRPC, HTTP_PROTOBUF)
TRACES_PATH = "/v1/traces"
PROTOCOL_ENV = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")

# Backoff between attempts at one batch: 0.5 s doubling to ~30 s, plus up to 1 s of jitter
# so replicas that lost the same backend do not come back in lockstep.
RETRY_WAIT: wait_base = wait_exponential(multiplier=0.5, max=29.0) + wait_random(0, 1.0)
# While shutting down the deadline is short: try again soon rather than sleep past it.
CLOSING_MAX_WAIT = 0.5
# After the deadline, how long an aborted in-flight export may take to report back.
ABORT_GRACE = 1.0
# A full queue that drains below this fraction ends a drop burst (next drop warns again).
BURST_END_FRACTION = 0.5
# room() stops waiting for an export that has taken this long: the backend is in trouble.
ROOM_STALL_SECONDS = 2.0
# Batches on their way at once: one is encoded while the other is sent. More only added
# thread switching (measured: 4 in flight cost ~10 % more CPU for no more events/s).
IN_FLIGHT = 2
# room() lets producers on once this many batches or fewer wait (at most half the queue):
# enough that the exporter never waits for work, and the rest of the queue stays free for
# an outage rather than holding ~1.3 KB a span in steady state (measured: 10 000 spans).
ROOM_BATCHES = 4


def _version() -> str:
    try:
        return metadata.version("eventtrace")
    except metadata.PackageNotFoundError:
        return ""


SCOPE = InstrumentationScope("eventtrace", _version())
SAMPLED = TraceFlags(TraceFlags.SAMPLED)


# -- Span → ReadableSpan ------------------------------------------------------------------


def make_resource(attributes: Sequence[tuple[str, AttributeValue]]) -> Resource:
    """Exactly these attributes: no SDK defaults merged in (Resource.create would add some)."""
    return Resource(dict(attributes))


class ResourceCache:
    """One SDK Resource per distinct resource tuple: the encoder groups spans by resource."""

    def __init__(self, limit: int = MAX_CACHED_RESOURCES) -> None:
        self._resources: dict[tuple[tuple[str, AttributeValue], ...], Resource] = {}
        self._limit = limit

    def get(self, attributes: tuple[tuple[str, AttributeValue], ...]) -> Resource:
        resource = self._resources.get(attributes)
        if resource is None:
            if len(self._resources) >= self._limit:
                self._resources.clear()  # bounded: instances come and go over months
            resource = self._resources[attributes] = make_resource(attributes)
        return resource


def to_readable_span(span: Span, resource: Resource | None = None) -> ReadableSpan:
    """Our Span as the SDK's ReadableSpan, ids and times exactly as given.

    Pass `resource` (e.g. from a ResourceCache) to share one Resource between spans.
    """
    trace_id = int(span.trace_id, 16)
    parent = (
        SpanContext(trace_id, int(span.parent_id, 16), is_remote=False, trace_flags=SAMPLED)
        if span.parent_id
        else None
    )
    status = (
        Status(StatusCode.ERROR, span.status_message)
        if span.status is SpanStatus.ERROR
        else Status(StatusCode.UNSET)
    )
    return ReadableSpan(
        name=span.name,
        context=SpanContext(trace_id, int(span.span_id, 16), is_remote=False, trace_flags=SAMPLED),
        parent=parent,
        resource=resource if resource is not None else make_resource(span.resource),
        attributes=dict(span.attributes),
        kind=SpanKind.INTERNAL,
        status=status,
        start_time=span.start_ns,
        end_time=span.end_ns,
        instrumentation_scope=SCOPE,
    )


class EncodedSpans:
    """A batch for `_GrpcExporter.export`: our spans and their encoding (protobuf.py)."""

    __slots__ = ("payload", "spans")

    def __init__(self, spans: Sequence[Span], payload: bytes) -> None:
        self.spans = spans
        self.payload = payload

    def __len__(self) -> int:
        return len(self.spans)


class _RawTraceService:
    """TraceService's stub, taking a request as its protobuf bytes as well as a message."""

    def __init__(self, channel: Any) -> None:
        self.Export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=_serialize_request,
            response_deserializer=ExportTraceServiceResponse.FromString,
            _registered_method=True,
        )


def _serialize_request(request: bytes | ExportTraceServiceRequest) -> bytes:
    if isinstance(request, bytes):
        return request
    return cast(bytes, request.SerializeToString())


class _GrpcExporter(GrpcSpanExporter):
    """The SDK's gRPC exporter (transport, settings, retries), sending batches we encoded:
    as they are where its channel takes bytes, else parsed back into the message."""

    def _initialize_channel_and_stub(self) -> None:
        super()._initialize_channel_and_stub()  # type: ignore[no-untyped-call]
        self._client = _RawTraceService(self._channel)  # type: ignore[assignment]

    def _translate_data(self, data: Any) -> Any:
        if isinstance(data, EncodedSpans):
            if isinstance(getattr(self, "_client", None), _RawTraceService):
                return data.payload
            return ExportTraceServiceRequest.FromString(data.payload)
        return super()._translate_data(data)


# -- configuration ------------------------------------------------------------------------


def resolve_protocol(flag: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """--otlp-protocol, else the traces env var, else the general one, else grpc."""
    candidates = [("--otlp-protocol", flag)] + [(name, environ.get(name)) for name in PROTOCOL_ENV]
    for source, value in candidates:
        if value and value.strip():
            protocol = value.strip().lower()
            if protocol not in PROTOCOLS:
                raise SettingsError(
                    f"{source}: OTLP protocol {value!r} is not supported "
                    f"(use {' or '.join(PROTOCOLS)})"
                )
            return protocol
    return GRPC


def http_traces_url(endpoint: str) -> str:
    """A base URL as --otlp-endpoint takes it → the traces URL the HTTP exporter posts to.

    The exporter uses an explicit endpoint verbatim, so add `/v1/traces` as the
    OTEL_EXPORTER_OTLP_ENDPOINT convention does, unless it is already there.
    """
    url = endpoint.strip()
    if "://" not in url:
        url = f"http://{url}"
    url = url.rstrip("/")
    return url if url.endswith(TRACES_PATH) else url + TRACES_PATH


def build_exporter(protocol: str, endpoint: str | None) -> SpanExporter:
    """The SDK exporter; everything but an explicit endpoint comes from OTEL_* variables."""
    try:
        if protocol == HTTP_PROTOBUF:
            return HttpSpanExporter(endpoint=http_traces_url(endpoint) if endpoint else None)
        # gRPC takes http://host:port, https://host:port and host:port as they are.
        return _GrpcExporter(endpoint=endpoint.strip() if endpoint else None)
    except (ValueError, RuntimeError, InvalidCompressionValueException) as error:
        raise SettingsError(f"OTLP exporter ({protocol}): {error}") from error


def describe_endpoint(exporter: SpanExporter) -> str:
    """Where the exporter really sends, as a URL, for the startup log line."""
    endpoint = str(getattr(exporter, "_endpoint", "?"))
    if isinstance(exporter, GrpcSpanExporter) and "://" not in endpoint:
        scheme = "http" if getattr(exporter, "_insecure", False) else "https"
        return f"{scheme}://{endpoint}"
    return endpoint


# -- the sink -----------------------------------------------------------------------------


class ExportFailed(Exception):
    """One attempt at a batch failed; the retry loop will try again."""


@dataclass(slots=True)
class _Delivery:
    """A batch taken from the queue, on its way until the backend accepts it."""

    spans: list[Span]
    attempt: asyncio.Future[bool] | None = None  # the latest export, in a thread
    started: float | None = None  # monotonic: when the latest attempt started


class OtlpSink:
    """SpanSink over OTLP. `submit` only queues; a task owned by the context sends.

    Queue: at most settings.export_queue_size spans waiting; when full the OLDEST are
    dropped and counted (reason="queue_full"). Batches of at most export_batch_size go
    every export_interval, as soon as a batch is full, or when the producer says a burst
    is over (`send_now`), IN_FLIGHT at a time (so their order at the backend is not
    fixed). A failed batch is kept and
    retried with backoff until it is delivered or the sink is closed. Leaving the context
    flushes for at most `shutdown_timeout` seconds; what is left is counted
    (reason="shutdown") and logged. Call `submit` from the event loop's thread.
    """

    def __init__(
        self, settings: Settings, metrics: Metrics, *, shutdown_timeout: float = 10.0
    ) -> None:
        self._protocol = resolve_protocol(settings.otlp_protocol)
        self._exporter = build_exporter(self._protocol, settings.otlp_endpoint)
        self._endpoint = describe_endpoint(self._exporter)
        self._metrics = metrics
        self._batch_size = settings.export_batch_size
        self._interval = settings.export_interval
        self._capacity = settings.export_queue_size
        self._room_level = max(1, min(self._capacity // 2, ROOM_BATCHES * self._batch_size))
        self._shutdown_timeout = shutdown_timeout
        self._resources = ResourceCache()
        self._encoder = SpanEncoder(SCOPE.name, SCOPE.version or "")

        self._queue: deque[Span] = deque(maxlen=self._capacity)
        self._deliveries: list[_Delivery] = []  # taken from the queue, not yet delivered
        self._dropped_in_burst = 0
        self._wakeup = asyncio.Event()
        self._hurry = False  # send_now(): partial batches go until the queue is empty
        self._closing = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._exporter_shut_down = False
        self._failing = False  # the latest attempt failed: the backend is down or refusing
        self._room = asyncio.Event()  # see room()
        self._room.set()

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def protocol(self) -> str:
        return self._protocol

    # -- SpanSink ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._worker = asyncio.create_task(self._run(), name="eventtrace-otlp-export")
        self._worker.add_done_callback(_log_crash)
        self._worker.add_done_callback(lambda _: self._room.set())  # room() waits no more
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._stop_worker()
            self._closed = True
            await self._settle_in_flight()
            self._count_lost()
        finally:
            self._closed = True
            await asyncio.to_thread(self._shutdown_exporter)

    async def room(self) -> None:
        """Wait until at most a few batches wait (ROOM_BATCHES, and never more than half
        the queue), so what comes next need not push anything out: backpressure for a
        producer faster than the backend (a re-list of an hour of events, a replay).
        Returns at once while exports fail or once the sink is closing: then the bounded
        queue drops the oldest, as above."""
        while (
            len(self._queue) > self._room_level
            and not self._failing
            and not self._closed
            and not self._closing.is_set()
            and self._worker is not None
            and not self._worker.done()
        ):
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), ROOM_STALL_SECONDS / 4)
            started = [d.started for d in self._deliveries if d.started is not None]
            if started and time.monotonic() - min(started) > ROOM_STALL_SECONDS:
                return  # one export this slow: the backend is in trouble, don't wait on it

    def submit(self, spans: Sequence[Span]) -> None:
        if not spans:
            return
        if self._closed:
            self._lose(len(spans), "after the sink was closed")
            return
        overflow = len(self._queue) + len(spans) - self._capacity
        if overflow > 0:
            self._drop_oldest(overflow)
        self._queue.extend(spans)  # the deque's maxlen pushes out the oldest
        self._update_gauge()
        if len(self._queue) >= self._batch_size:
            self._wakeup.set()

    def send_now(self) -> None:
        if self._queue:
            self._hurry = True
            self._wakeup.set()

    # -- the background task ----------------------------------------------------------

    async def _run(self) -> None:
        slots = asyncio.Semaphore(IN_FLIGHT)
        sending: set[asyncio.Task[None]] = set()
        try:
            while True:
                await self._wait_for_work()
                if not self._queue:
                    if self._closing.is_set():
                        break
                    continue
                await slots.acquire()
                delivery = _Delivery(self._take_batch())
                self._deliveries.append(delivery)
                task = asyncio.create_task(self._deliver(delivery))
                sending.add(task)
                task.add_done_callback(sending.discard)
                task.add_done_callback(lambda _: slots.release())
            if sending:
                await asyncio.wait(sending)
        finally:
            for task in sending:
                task.cancel()
            if sending:
                await asyncio.wait(sending)

    async def _wait_for_work(self) -> None:
        """Until a batch is full, the interval has passed, we are told to hurry, or we
        are closing."""
        self._hurry = self._hurry and bool(self._queue)
        if self._closing.is_set() or self._hurry or len(self._queue) >= self._batch_size:
            return
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), self._interval)

    def _take_batch(self) -> list[Span]:
        count = min(self._batch_size, len(self._queue))
        return [self._queue.popleft() for _ in range(count)]

    async def _deliver(self, delivery: _Delivery) -> None:
        """Send one batch, retrying with backoff until it is accepted (or we are cancelled)."""
        try:
            # Once per batch, for all its attempts.
            encoded = await self._convert(delivery.spans)
            # Nothing of the batch may be bound into the AsyncRetrying: it is in a reference
            # cycle of its own, so what it holds waits for the garbage collector (each
            # batch's spans did, 1.3 KB an event). The batch goes as the call's arguments.
            retrying = AsyncRetrying(
                retry=retry_if_exception_type(ExportFailed),
                wait=self._backoff,
                sleep=self._sleep,
                before_sleep=self._on_retry,
            )
            await retrying(self._export_once, delivery, encoded)
        except Exception:  # our bug: say so, count the batch, keep sending the others
            log.exception("OTLP export of %d spans failed", len(delivery.spans))
            self._deliveries.remove(delivery)
            self._lose(len(delivery.spans), "after an internal error", reason="error")
            self._update_gauge()
            return
        # No await between success and forgetting the batch: a cancel cannot split them.
        self._deliveries.remove(delivery)
        self._record_delivered(delivery.spans)
        self._update_gauge()

    async def _convert(self, batch: list[Span]) -> EncodedSpans | list[ReadableSpan]:
        """Once per batch, for all its attempts. gRPC sends our own encoding (protobuf.py),
        made here on the event loop: ~5 ms for 500 spans, and a thread would only take
        turns with the loop for the GIL (measured: 20 % more CPU for the whole run).
        OTLP/HTTP takes the SDK's spans (its exporter encodes them), slow enough (~70 µs a
        span) to be made in a thread."""
        if isinstance(self._exporter, _GrpcExporter):
            return EncodedSpans(batch, self._encoder.encode(batch))
        return await asyncio.to_thread(self._readable, batch)

    def _readable(self, batch: list[Span]) -> list[ReadableSpan]:
        return [to_readable_span(span, self._resources.get(span.resource)) for span in batch]

    async def _export_once(
        self, delivery: _Delivery, readable: EncodedSpans | list[ReadableSpan]
    ) -> None:
        delivery.started = time.monotonic()
        # Shielded: if the deadline cancels us mid-export, __aexit__ still learns the outcome.
        attempt = asyncio.ensure_future(asyncio.to_thread(self._export_blocking, readable))
        delivery.attempt = attempt
        if not await asyncio.shield(attempt):
            raise ExportFailed

    def _export_blocking(self, readable: EncodedSpans | list[ReadableSpan]) -> bool:
        try:
            return self._exporter.export(readable) is SpanExportResult.SUCCESS  # type: ignore[arg-type]
        except Exception:  # the exporter's bug or a broken transport: retry like a failure
            log.exception("OTLP export to %s raised", self._endpoint)
            return False

    def _backoff(self, retry_state: RetryCallState) -> float:
        delay = RETRY_WAIT(retry_state)
        return min(delay, CLOSING_MAX_WAIT) if self._closing.is_set() else delay

    async def _sleep(self, delay: float) -> None:
        """Sleep between attempts; cut short when shutdown starts (flush now, not in 30 s)."""
        if self._closing.is_set():
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), delay)

    def _on_retry(self, retry_state: RetryCallState) -> None:
        delivery: _Delivery = retry_state.args[0]
        self._failing = True
        self._room.set()  # don't hold producers back while the backend is down
        self._metrics.export_retries.inc()
        log.warning(
            "OTLP export of %d spans to %s failed (attempt %d); retrying in %.1fs, "
            "%d more spans queued",
            len(delivery.spans),
            self._endpoint,
            retry_state.attempt_number,
            retry_state.upcoming_sleep,
            len(self._queue),
        )

    # -- shutdown ---------------------------------------------------------------------

    async def _stop_worker(self) -> None:
        """Let the worker flush until the deadline, then cancel it."""
        worker = self._worker
        if worker is None:
            return
        self._closing.set()
        self._room.set()
        self._wakeup.set()
        try:
            await asyncio.wait({worker}, timeout=self._shutdown_timeout)
        finally:
            if not worker.done():
                worker.cancel()
                await asyncio.wait({worker})

    async def _settle_in_flight(self) -> None:
        """Batches being sent at the deadline: abort their exports, then count them
        honestly."""
        attempts = {d.attempt for d in self._deliveries if d.attempt is not None}
        if not attempts:
            return
        if not all(attempt.done() for attempt in attempts):
            # Shutting the exporter down cancels its RPCs and ends its own retry sleeps.
            await asyncio.to_thread(self._shutdown_exporter)
            await asyncio.wait(attempts, timeout=ABORT_GRACE)
        for delivery in list(self._deliveries):
            attempt = delivery.attempt
            if attempt is None:
                continue
            if (
                attempt.done()
                and not attempt.cancelled()
                and attempt.exception() is None
                and attempt.result()
            ):
                self._deliveries.remove(delivery)
                self._record_delivered(delivery.spans)
            elif not attempt.done():
                log.warning(
                    "OTLP export of %d spans to %s still running after shutdown; counting "
                    "them as lost, though they may still arrive",
                    len(delivery.spans),
                    self._endpoint,
                )

    def _count_lost(self) -> None:
        lost = len(self._queue) + sum(len(d.spans) for d in self._deliveries)
        self._queue.clear()
        self._deliveries.clear()
        self._update_gauge()
        if lost:
            self._lose(lost, f"within the {self._shutdown_timeout:g}s shutdown deadline")

    def _lose(self, count: int, when: str, reason: str = "shutdown") -> None:
        self._metrics.spans_failed.labels(reason=reason).inc(count)
        log.error(
            "OTLP export to %s: %d spans could not be delivered %s and are lost",
            self._endpoint,
            count,
            when,
        )

    def _shutdown_exporter(self) -> None:
        if not self._exporter_shut_down:
            self._exporter_shut_down = True
            self._exporter.shutdown()

    # -- accounting -------------------------------------------------------------------

    def _drop_oldest(self, count: int) -> None:
        self._metrics.spans_failed.labels(reason="queue_full").inc(count)
        if not self._dropped_in_burst:
            log.warning(
                "OTLP export queue full (%d spans; %s is slow or down): dropping the oldest "
                "spans until it catches up",
                self._capacity,
                self._endpoint,
            )
        self._dropped_in_burst += count

    def _record_delivered(self, batch: list[Span]) -> None:
        self._failing = False
        if len(self._queue) <= self._room_level:
            self._room.set()
        by_kind = Counter(span.kind.value for span in batch)
        for kind, count in by_kind.items():
            self._metrics.spans_exported.labels(kind=kind).inc(count)
        # One observation a batch, its oldest span's age. One a span cost ~7 % of the
        # instructions an event takes (the histogram takes a lock and walks its buckets in
        # Python); how far behind export is, a batch says as well as each of its spans.
        if batch:
            oldest = min(span.end_ns for span in batch)
            self._metrics.export_lag.observe(max(0, time.time_ns() - oldest) / 1e9)
        if self._dropped_in_burst and len(self._queue) < self._capacity * BURST_END_FRACTION:
            log.warning(
                "OTLP export caught up: %d spans were dropped while the queue was full",
                self._dropped_in_burst,
            )
            self._dropped_in_burst = 0

    def _update_gauge(self) -> None:
        waiting = len(self._queue) + sum(len(d.spans) for d in self._deliveries)
        self._metrics.export_queue.set(waiting)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("OTLP export task crashed; spans are no longer sent", exc_info=task.exception())
