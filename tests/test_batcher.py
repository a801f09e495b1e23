"""The Batcher with the local exporters (console, jsonl): what the terminal and a pipe get,
and what happens when the output goes away. OTLP delivery, retries, drops and deadlines
are in test_export_otlp.py, against the real receiver."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
from collections.abc import Iterator
from dataclasses import replace
from typing import BinaryIO

import orjson
import pytest
from test_export_otlp import numbered_spans, rollout, sample

from eventtrace.export import open_sink
from eventtrace.export.batcher import Batcher
from eventtrace.export.console import ConsoleExporter, render_trace
from eventtrace.export.jsonl import JsonLinesExporter
from eventtrace.metrics import Metrics
from eventtrace.settings import Settings


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def batcher(exporter: ConsoleExporter | JsonLinesExporter, metrics: Metrics) -> Batcher:
    return Batcher(exporter, metrics, batch_size=64, interval=0.05, queue_size=10_000)


async def test_console_prints_a_trace_once_its_root_arrives_and_the_rest_at_exit(
    metrics: Metrics,
) -> None:
    out = io.StringIO()
    rollout_spans = rollout()  # its root, the deployment's object span, comes first
    root, rest = rollout_spans[0], rollout_spans[1:]
    unfinished = [replace(span, trace_id="f" * 32) for span in numbered_spans(3)]  # no root
    async with batcher(ConsoleExporter(out, color=False), metrics) as sink:
        sink.submit(rest + unfinished)
        await asyncio.sleep(0.3)  # several intervals: both batches delivered
        assert sink.delivered == len(rest) + len(unfinished)
        assert out.getvalue() == ""  # no root yet: the trace is still open
        sink.submit([root])
        await asyncio.sleep(0.3)
        finished = render_trace([*rest, root]) + "\n"
        assert out.getvalue() == finished
    assert out.getvalue() == finished + render_trace(unfinished) + "\n"
    assert sample(metrics, "eventtrace_spans_exported_total", kind="event") == 6


async def test_jsonl_writes_every_span_in_the_order_submitted(metrics: Metrics) -> None:
    out = io.BytesIO()
    spans = numbered_spans(1_000)
    async with batcher(JsonLinesExporter(out), metrics) as sink:
        for start in range(0, len(spans), 300):
            await sink.room()
            sink.submit(spans[start : start + 300])
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [line["span_id"] for line in lines] == [span.span_id for span in spans]
    assert (sink.delivered, sink.lost) == (1_000, 0)
    assert sample(metrics, "eventtrace_export_queue_spans") == 0


async def test_open_sink_puts_the_local_outputs_behind_a_batcher(metrics: Metrics) -> None:
    settings = Settings(export_batch_size=7)  # type: ignore[call-arg]
    for output, exporter in (("console", ConsoleExporter), ("jsonl", JsonLinesExporter)):
        sink = open_sink(output, settings, metrics)
        assert isinstance(sink, Batcher)
        assert isinstance(sink.exporter, exporter)


@pytest.fixture
def closed_pipe() -> Iterator[BinaryIO]:
    """The write end of a pipe whose reader is gone (`eventtrace replay | head -1`)."""
    read, write = os.pipe()
    os.close(read)
    stream = os.fdopen(write, "wb", buffering=0)
    try:
        yield stream
    finally:
        with contextlib.suppress(OSError):
            stream.close()


async def test_an_output_that_went_away_stops_the_producer_quietly(
    closed_pipe: BinaryIO, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    spans = numbered_spans(500)
    with caplog.at_level(logging.WARNING), pytest.raises(BrokenPipeError):
        async with batcher(JsonLinesExporter(closed_pipe), metrics) as sink:
            for _ in range(100):  # the producer hears of it at its next call
                await sink.room()
                sink.submit(spans[:100])
                await asyncio.sleep(0.05)
            raise AssertionError("the producer was never told")
    assert sink.delivered == 0
    assert sink.lost == sample(metrics, "eventtrace_spans_failed_total", reason="error") > 0
    # Quiet: the caller decides what to say (the CLI exits 141 without a word).
    assert [record.getMessage() for record in caplog.records] == []


async def test_an_output_that_went_away_is_raised_at_exit(
    closed_pipe: BinaryIO, metrics: Metrics
) -> None:
    with pytest.raises(BrokenPipeError):
        async with batcher(JsonLinesExporter(closed_pipe), metrics) as sink:
            sink.submit(numbered_spans(10))
    assert (sink.delivered, sink.lost) == (0, 10)
    with pytest.raises(BrokenPipeError):
        sink.submit(numbered_spans(1))  # and to anyone who still submits


async def test_spans_submitted_after_exit_are_counted_lost(
    metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    out = io.BytesIO()
    async with batcher(JsonLinesExporter(out), metrics) as sink:
        sink.submit(numbered_spans(3))
    with caplog.at_level(logging.ERROR):
        sink.submit(numbered_spans(2, start=3))
    assert (sink.delivered, sink.lost) == (3, 2)
    assert sample(metrics, "eventtrace_spans_failed_total", reason="shutdown") == 2
    assert any("2 spans could not be delivered" in r.getMessage() for r in caplog.records)
    assert len(out.getvalue().splitlines()) == 3


async def test_the_queue_gauge_reads_the_batcher_in_use_and_does_not_keep_it(
    metrics: Metrics,
) -> None:
    """eventtrace_export_queue_spans is read when scraped, from the batcher made last;
    a batcher of a term that ended is let go (it holds the term's progress), and reads 0."""
    import gc
    import weakref

    class Stalled(JsonLinesExporter):
        async def export(self, spans):  # type: ignore[no-untyped-def]
            await asyncio.sleep(3600)  # never done: what is submitted stays counted
            return True

    stalled = Batcher(Stalled(io.BytesIO()), metrics, batch_size=64, interval=0.05,
                      queue_size=10_000, shutdown_timeout=0.1)  # fmt: skip
    async with stalled as sink:
        sink.submit(numbered_spans(100))
        assert sample(metrics, "eventtrace_export_queue_spans") == 100
        gone = weakref.ref(sink)
    del sink, stalled
    gc.collect()
    assert gone() is None
    assert sample(metrics, "eventtrace_export_queue_spans") == 0
