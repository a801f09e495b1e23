"""The one queue between the pipeline and an exporter: batches, retries, a bounded flush.

Whatever the output (OTLP, the terminal, a file), spans go the same way: `submit` queues
them (never blocks), a task owned by the context hands batches to the exporter, a failed
batch is tried again with backoff for as long as we run, and leaving the context flushes
for a bounded time and counts what it could not deliver ("nothing lost", peers.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Self

from tenacity import AsyncRetrying, RetryCallState, retry_if_result
from tenacity.wait import wait_base, wait_exponential, wait_random

from eventtrace.core.model import Span
from eventtrace.metrics import Metrics

if TYPE_CHECKING:
    from eventtrace.export import Exporter

log = logging.getLogger(__name__)

# Backoff between attempts at one batch: 0.5 s doubling to ~30 s, plus up to 1 s of jitter
# so replicas that lost the same backend do not come back in lockstep.
RETRY_WAIT: wait_base = wait_exponential(multiplier=0.5, max=29.0) + wait_random(0, 1.0)
# While shutting down the deadline is short: try again soon rather than sleep past it.
CLOSING_MAX_WAIT = 0.5
# A full queue that drains below this fraction ends a drop burst (next drop warns again).
BURST_END_FRACTION = 0.5
# room() stops waiting for an export that has taken this long: the backend is in trouble.
ROOM_STALL_SECONDS = 2.0
# Batches on their way at once: one is encoded while the other is sent. More only added
# switching (measured: 4 in flight cost ~10 % more CPU for no more events/s).
IN_FLIGHT = 2
# room() lets producers on once this many batches or fewer wait (at most half the queue):
# enough that the exporter never waits for work, and the rest of the queue stays free for
# an outage rather than holding ~1.3 KB a span in steady state (measured: 10 000 spans).
ROOM_BATCHES = 4


@dataclass(slots=True)
class _Batch:
    """Spans taken from the queue, on their way until the exporter accepts them."""

    spans: list[Span]
    started: float | None = None  # monotonic: when the latest attempt started


class Batcher:
    """Spans in, batches out to one Exporter. `submit` only queues; a task owned by the
    context sends.

    Queue: at most `queue_size` spans wait; when full the OLDEST are dropped, counted
    (spans_failed{reason="queue_full"}) and logged once a burst. Batches of at most
    `batch_size` go every `interval` seconds, as soon as one is full, or when the producer
    says a burst is over (`send_now`), IN_FLIGHT at a time (so their order at the backend
    is not fixed; a local exporter, which does not await, writes them in order). An export
    that returns False is tried again with backoff until it succeeds or the context ends.
    Leaving the context flushes for at most `shutdown_timeout` seconds; what is left is
    counted (reason="shutdown") and logged.

    An export that raises cannot go on (stdout closed, a bug): nothing more is sent, what
    is held is counted lost (reason="error"), and the error is raised to the producer, by
    its next `submit` or `room`, or on leaving the context. Use it from the event loop's
    thread.
    """

    def __init__(
        self,
        exporter: Exporter,
        metrics: Metrics,
        *,
        batch_size: int = 512,
        interval: float = 1.0,
        queue_size: int = 20_000,
        shutdown_timeout: float = 10.0,
        on_delivered: Callable[[Sequence[Span]], None] | None = None,
    ) -> None:
        self._exporter = exporter
        # Told of every batch the exporter accepted: what counts as exported (the state).
        self._on_delivered = on_delivered
        self._where = exporter.describe()
        self._metrics = metrics
        self._batch_size = batch_size
        self._interval = interval
        self._capacity = queue_size
        self._room_level = max(1, min(queue_size // 2, ROOM_BATCHES * batch_size))
        self._shutdown_timeout = shutdown_timeout

        self._queue: deque[Span] = deque(maxlen=queue_size)
        self._in_flight: list[_Batch] = []
        self._delivered = 0
        self._lost = 0
        self._dropped_in_burst = 0
        self._wakeup = asyncio.Event()
        self._hurry = False  # send_now(): partial batches go until the queue is empty
        self._closing = asyncio.Event()
        self._closed = False
        self._worker: asyncio.Task[None] | None = None
        self._failing = False  # the latest attempt failed: the backend is down or refusing
        self._error: BaseException | None = None  # the exporter raised: it cannot go on
        self._room = asyncio.Event()  # see room()
        self._room.set()
        # Read when scraped, not set at every submit and delivery (a lock each); weakly, so
        # a batcher of a term that ended (and what it holds) is not kept for the gauge.
        metrics.export_queue.set_function(_weakly(self.waiting))

    @property
    def exporter(self) -> Exporter:
        return self._exporter

    @property
    def burst_piece(self) -> int:
        """How many spans a burst (a re-list, a replay, the flush at shutdown) submits
        after each `room()`: as many as `room()` leaves waiting, so nothing is pushed out
        and a burst holds at most twice that, not the whole queue."""
        return self._room_level

    async def submit_burst(self, spans: Sequence[Span]) -> None:
        """Submit many spans, in pieces the queue takes without dropping any."""
        piece = self._room_level
        for start in range(0, len(spans), piece):
            await self.room()
            self.submit(spans[start : start + piece])

    def waiting(self) -> int:
        """Spans queued or being exported."""
        return len(self._queue) + sum(len(batch.spans) for batch in self._in_flight)

    @property
    def delivered(self) -> int:
        """Spans the exporter accepted."""
        return self._delivered

    @property
    def lost(self) -> int:
        """Spans that will never be delivered: dropped from a full queue, left at the
        shutdown deadline, submitted after it, or held when the exporter failed for good."""
        return self._lost

    # -- what producers call ----------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._worker = asyncio.create_task(self._run(), name="eventtrace-export")
        self._worker.add_done_callback(_log_crash)
        self._worker.add_done_callback(lambda _: self._room.set())  # room() waits no more
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Cancelled (the Lease was lost): stop at once, nothing more goes out; what is
        # held was never acknowledged, so the next leader exports it.
        abandoned = exc_type is not None and issubclass(exc_type, asyncio.CancelledError)
        try:
            await self._stop_worker(flush=not abandoned)
        finally:
            self._closed = True
            self._count_lost()
            try:
                await self._exporter.shutdown()
            except Exception:
                if exc is None and self._error is None:
                    raise
        if exc is None and self._error is not None:
            raise self._error

    def submit(self, spans: Sequence[Span]) -> None:
        """Queue spans for export; never blocks (a full queue drops its oldest)."""
        if self._error is not None:
            raise self._error
        if not spans:
            return
        if self._closed:
            self._lose(len(spans), "shutdown", "after the export was closed")
            return
        overflow = len(self._queue) + len(spans) - self._capacity
        if overflow > 0:
            self._drop_oldest(overflow)
        self._queue.extend(spans)  # the deque's maxlen pushes out the oldest
        if len(self._queue) >= self._batch_size:
            self._wakeup.set()

    async def room(self) -> None:
        """Wait until at most a few batches wait (ROOM_BATCHES, and never more than half
        the queue), so what comes next need not push anything out: backpressure for a
        producer faster than the backend (a re-list of an hour of events, a replay).
        Returns at once while exports fail or once closing: then the bounded queue drops
        the oldest, as above."""
        while (
            len(self._queue) > self._room_level
            and not self._failing
            and not self._closing.is_set()
            and self._worker is not None
            and not self._worker.done()
        ):
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), ROOM_STALL_SECONDS / 4)
            started = [batch.started for batch in self._in_flight if batch.started is not None]
            if started and time.monotonic() - min(started) > ROOM_STALL_SECONDS:
                break  # one export this slow: the backend is in trouble, don't wait on it
        if self._error is not None:
            raise self._error

    def send_now(self) -> None:
        """Nothing more is coming soon (a burst is over): send what is held back for a
        fuller batch without waiting for company."""
        if self._queue:
            self._hurry = True
            self._wakeup.set()

    # -- the background task ----------------------------------------------------------

    async def _run(self) -> None:
        slots = asyncio.Semaphore(IN_FLIGHT)
        sending: set[asyncio.Task[None]] = set()
        try:
            while self._error is None:
                await self._wait_for_work()
                if not self._queue:
                    if self._closing.is_set():
                        break
                    continue
                await slots.acquire()
                if self._error is not None:
                    break
                batch = _Batch(self._take_batch())
                self._in_flight.append(batch)
                task = asyncio.create_task(self._deliver(batch))
                sending.add(task)
                task.add_done_callback(sending.discard)
                task.add_done_callback(lambda _: slots.release())
            if sending and self._error is None:
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

    async def _deliver(self, batch: _Batch) -> None:
        """Export one batch, again with backoff until accepted (or we are cancelled)."""
        # Nothing of the batch may be bound into the AsyncRetrying: it is in a reference
        # cycle of its own, so what it holds waits for the garbage collector (each batch's
        # spans did, 1.3 KB an event). The batch goes as the call's arguments.
        retrying = AsyncRetrying(
            retry=retry_if_result(_failed),
            wait=self._backoff,
            sleep=self._sleep,
            before_sleep=self._on_retry,
        )
        try:
            await retrying(self._attempt, batch)
        except Exception as error:  # the exporter cannot go on: stop, tell the producer
            if self._error is None:
                self._error = error
            self._closing.set()
            self._wakeup.set()
            self._room.set()
            return
        # No await between success and forgetting the batch: a cancel cannot split them.
        self._in_flight.remove(batch)
        self._record_delivered(batch.spans)

    async def _attempt(self, batch: _Batch) -> bool:
        batch.started = time.monotonic()
        return await self._exporter.export(batch.spans)

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
        batch: _Batch = retry_state.args[0]
        self._failing = True
        self._room.set()  # don't hold producers back while the backend is down
        self._metrics.export_retries.inc()
        log.warning(
            "export of %d spans to %s failed (attempt %d); retrying in %.1fs, %d more spans queued",
            len(batch.spans),
            self._where,
            retry_state.attempt_number,
            retry_state.upcoming_sleep,
            len(self._queue),
        )

    # -- shutdown ---------------------------------------------------------------------

    async def _stop_worker(self, *, flush: bool = True) -> None:
        """Let the worker flush until the deadline (if `flush`), then cancel it (and its
        exports)."""
        worker = self._worker
        if worker is None:
            return
        self._closing.set()
        self._room.set()
        self._wakeup.set()
        try:
            if flush:
                await asyncio.wait({worker}, timeout=self._shutdown_timeout)
        finally:
            if not worker.done():
                worker.cancel()
                await asyncio.wait({worker})

    def _count_lost(self) -> None:
        """What the queue and the exports in flight still hold will never be delivered
        (an export cut off at the deadline may still arrive: it is counted lost)."""
        lost = self.waiting()
        self._queue.clear()
        self._in_flight.clear()
        if not lost:
            return
        if self._error is not None:  # the producer hears of it from the error itself
            self._lost += lost
            self._metrics.spans_failed.labels(reason="error").inc(lost)
        else:
            deadline = f"within the {self._shutdown_timeout:g}s shutdown deadline"
            self._lose(lost, "shutdown", deadline)

    def _lose(self, count: int, reason: str, when: str) -> None:
        self._lost += count
        self._metrics.spans_failed.labels(reason=reason).inc(count)
        log.error(
            "export to %s: %d spans could not be delivered %s and are lost",
            self._where,
            count,
            when,
        )

    # -- accounting -------------------------------------------------------------------

    def _drop_oldest(self, count: int) -> None:
        self._lost += count
        self._metrics.spans_failed.labels(reason="queue_full").inc(count)
        if not self._dropped_in_burst:
            log.warning(
                "export queue full (%d spans; %s is slow or down): dropping the oldest "
                "spans until it catches up",
                self._capacity,
                self._where,
            )
        self._dropped_in_burst += count

    def _record_delivered(self, spans: list[Span]) -> None:
        self._failing = False
        self._delivered += len(spans)
        if self._on_delivered is not None:
            self._on_delivered(spans)
        if len(self._queue) <= self._room_level:
            self._room.set()
        for kind, count in Counter(span.kind.value for span in spans).items():
            self._metrics.spans_exported.labels(kind=kind).inc(count)
        # One observation a batch, its oldest span's age. One a span cost ~7 % of the
        # instructions an event takes (the histogram takes a lock and walks its buckets in
        # Python); how far behind export is, a batch says as well as each of its spans.
        if spans:
            oldest = min(span.end_ns for span in spans)
            self._metrics.export_lag.observe(max(0, time.time_ns() - oldest) / 1e9)
        if self._dropped_in_burst and len(self._queue) < self._capacity * BURST_END_FRACTION:
            log.warning(
                "export to %s caught up: %d spans were dropped while the queue was full",
                self._where,
                self._dropped_in_burst,
            )
            self._dropped_in_burst = 0


def _failed(delivered: bool) -> bool:
    return not delivered


def _weakly(method: Callable[[], int]) -> Callable[[], float]:
    """`method` as a gauge reads it: its value while its object lives, then 0."""
    reference = weakref.WeakMethod(method)

    def read() -> float:
        bound = reference()
        return bound() if bound is not None else 0

    return read


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("export task crashed; spans are no longer sent", exc_info=task.exception())
