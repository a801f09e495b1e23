"""Our OTLP encoding (export/protobuf.py) against the SDK's own encoder, and the encoding
process (export/encoding_process.py): the same bytes, and a dead child costs nothing."""

from __future__ import annotations

import logging
import os
import signal

import psutil
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from test_export_otlp import numbered_spans, rollout

from eventtrace.export.encoding_process import EncodingProcess
from eventtrace.export.otlp import SCOPE, ResourceCache, to_readable_span
from eventtrace.export.protobuf import SpanEncoder
from eventtrace.model import Span


def sdk_bytes(spans: list[Span], scope: InstrumentationScope = SCOPE) -> bytes:
    cache = ResourceCache()
    readable = [to_readable_span(span, cache.get(span.resource)) for span in spans]
    request = encode_spans(readable)
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            scope_spans.scope.name, scope_spans.scope.version = scope.name, scope.version or ""
    return bytes(request.SerializeToString())


def test_same_bytes_as_the_sdk_encoder() -> None:
    # Warnings with and without a message, int/bool/float attributes, three resources
    # interleaved, a root without parent.
    spans = rollout() + numbered_spans(40) + rollout()[::-1]
    encoder = SpanEncoder(SCOPE.name, SCOPE.version or "")
    assert encoder.encode(spans) == sdk_bytes(spans)
    assert encoder.encode(spans) == sdk_bytes(spans), "the caches change nothing"
    assert SpanEncoder("x").encode(spans[:3]) == sdk_bytes(spans[:3], InstrumentationScope("x"))


async def test_the_encoding_process_gives_the_same_bytes() -> None:
    spans = rollout() + numbered_spans(600)
    encoding = EncodingProcess(SCOPE.name, SCOPE.version or "")
    try:
        assert await encoding.encode(spans) == sdk_bytes(spans)
        assert _children(), "encoded in a child process"
    finally:
        encoding.close()
    assert not _children(), "close stops the child"


async def test_a_dead_encoding_process_falls_back_to_this_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spans = rollout()
    encoding = EncodingProcess(SCOPE.name, SCOPE.version or "")
    try:
        assert await encoding.encode(spans) == sdk_bytes(spans)
        (child,) = _children()
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        with caplog.at_level(logging.WARNING, logger="eventtrace.export.encoding_process"):
            assert await encoding.encode(spans) == sdk_bytes(spans)
            assert await encoding.encode(spans) == sdk_bytes(spans)
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1, warnings
        assert "encoding in this process from now on" in warnings[0]
    finally:
        encoding.close()


def _children() -> list[psutil.Process]:
    """Live processes spawned by multiprocessing from this one (its resource tracker aside)."""
    return [
        child
        for child in psutil.Process().children()
        if child.is_running()
        and child.status() != psutil.STATUS_ZOMBIE
        and "spawn_main" in " ".join(child.cmdline())
    ]
