"""OTLP encoding in a second process, so it runs beside the pipeline rather than taking
turns with it for the one interpreter lock.

Encoding costs about as much per span as the pipeline spends per event. In a thread it
only competes for the GIL (and made the watch, parsing and the pipeline wait); in its own
process it uses the machine's second core. The child is small: it imports the span model
and protobuf.py, no gRPC, no SDK, and holds only the encoder's bounded caches.

If the child cannot start or dies, encoding falls back to a thread of this process, with
one warning: slower, but nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from eventtrace.export.encoding_worker import encode as _encode
from eventtrace.export.encoding_worker import start as _start
from eventtrace.export.protobuf import SpanEncoder
from eventtrace.model import Span, span_row

log = logging.getLogger(__name__)


class EncodingProcess:
    """Encodes batches of spans in a child process; `encode` awaits the bytes.

    One child, started on first use (spawned, not forked: this process runs threads,
    gRPC's among them). `close` stops it.
    """

    def __init__(self, scope_name: str, scope_version: str) -> None:
        self._scope = (scope_name, scope_version)
        self._local = SpanEncoder(scope_name, scope_version)  # the fallback
        self._pool: ProcessPoolExecutor | None = None
        self._broken = False

    async def encode(self, spans: Sequence[Span]) -> bytes:
        rows = [span_row(span) for span in spans]
        if not self._broken:
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    self._executor(), _encode, rows
                )
            except (BrokenProcessPool, OSError, RuntimeError) as error:
                self._fall_back(error)
        return await asyncio.to_thread(self._local.encode_rows, rows)

    def start(self) -> None:
        """Start the child now rather than at the first batch (it takes a moment)."""
        if not self._broken:
            self._executor().submit(_encode, ())

    def close(self) -> None:
        """Stop the child (it is idle: callers have their results)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start,
                initargs=self._scope,
            )
        return self._pool

    def _fall_back(self, error: BaseException) -> None:
        self._broken = True
        log.warning(
            "OTLP encoding process failed (%s: %s); encoding in this process from now on",
            type(error).__name__,
            error or "no detail",
        )
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
