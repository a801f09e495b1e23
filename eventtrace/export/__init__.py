"""Where finished spans go: OTLP, the terminal, or JSON lines. One narrow interface."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Protocol, Self

from eventtrace.core.model import Span
from eventtrace.metrics import Metrics
from eventtrace.settings import Settings


class SpanSink(Protocol):
    """Takes finished spans. `submit` never blocks; leaving the context flushes everything.

    A sink that needs background work (OTLP) owns its task between enter and exit.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def submit(self, spans: Sequence[Span]) -> None: ...

    async def room(self) -> None:
        """Wait until `submit` can take more without dropping any (backpressure)."""
        ...

    def send_now(self) -> None:
        """Nothing more is coming soon (a burst is over): send what is held back for a
        fuller batch without waiting for company."""
        ...


class LocalSink:
    """Base of the sinks that write here and now (terminal, file): no background task;
    leaving the context calls `close`."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Write out whatever is held back."""

    async def room(self) -> None:
        """Writing in place: always room."""

    def send_now(self) -> None:
        """Nothing is held back for company: a trace is written once it is whole."""


def burst_piece(settings: Settings) -> int:
    """How many spans to submit after each `room()` when a burst goes out (a replay, the
    flush at shutdown): half the export queue, which `room()` always leaves free."""
    return max(1, settings.export_queue_size // 2)


def open_sink(
    output: str, settings: Settings, metrics: Metrics, *, shutdown_timeout: float = 10.0
) -> SpanSink:
    """The sink for `--output`. OTLP is imported only when asked for (it loads gRPC)."""
    if output == "console":
        from eventtrace.export.console import ConsoleSink

        return ConsoleSink()
    if output == "jsonl":
        from eventtrace.export.jsonl import JsonLinesSink

        return JsonLinesSink()
    from eventtrace.export.otlp import OtlpSink

    return OtlpSink(settings, metrics, shutdown_timeout=shutdown_timeout)
