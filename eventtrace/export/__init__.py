"""Where finished spans go: OTLP, the terminal, or JSON lines.

One Batcher (batcher.py: queue, batches, retries, shutdown flush) in front of one narrow
Exporter, chosen by `--output`: OTLP over gRPC or HTTP/protobuf (otlp.py), the waterfall
printer (console.py) or JSON lines (jsonl.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from eventtrace.core.model import Span
from eventtrace.export.batcher import Batcher
from eventtrace.metrics import Metrics
from eventtrace.settings import Settings

# What open_sink returns and producers (live.py, replay.py) hold.
SpanSink = Batcher


class Exporter(Protocol):
    """Sends batches for a Batcher, which may start the next `export` before an earlier
    one has returned (a few in flight); one that never awaits writes them in order."""

    def describe(self) -> str:
        """Where spans go, for log lines: a URL, "stdout"."""
        ...

    async def export(self, spans: Sequence[Span]) -> bool:
        """True once the destination has the spans; False if it failed and the same
        batch should be tried again later. Raises only if it cannot go on at all (its
        output is closed): the Batcher then stops and raises that error to the producer."""
        ...

    async def shutdown(self) -> None:
        """Write out anything held back and release connections."""
        ...


def open_sink(
    output: str,
    settings: Settings,
    metrics: Metrics,
    *,
    shutdown_timeout: float | None = None,
    on_delivered: Callable[[Sequence[Span]], None] | None = None,
) -> SpanSink:
    """The Batcher around the exporter for `--output`. OTLP is imported only when asked
    for (it loads gRPC). Raises SettingsError for bad OTLP settings."""
    exporter: Exporter
    if output == "console":
        from eventtrace.export.console import ConsoleExporter

        exporter = ConsoleExporter()
    elif output == "jsonl":
        from eventtrace.export.jsonl import JsonLinesExporter

        exporter = JsonLinesExporter()
    else:
        from eventtrace.export.otlp import otlp_exporter

        exporter = otlp_exporter(settings)
    return Batcher(
        exporter,
        metrics,
        batch_size=settings.export_batch_size,
        interval=settings.export_interval,
        queue_size=settings.export_queue_size,
        shutdown_timeout=(
            settings.shutdown_timeout if shutdown_timeout is None else shutdown_timeout
        ),
        on_delivered=on_delivered,
    )
