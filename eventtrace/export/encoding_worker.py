"""What runs in the encoding process (encoding_process.py): kept apart so that the child
imports no more than it needs (no asyncio, no gRPC, no SDK)."""

from __future__ import annotations

import gc
import signal
from collections.abc import Sequence

from eventtrace.export.protobuf import SpanEncoder
from eventtrace.model import SpanRow

_encoder: SpanEncoder | None = None  # set up once by `start`


def start(scope_name: str, scope_version: str) -> None:
    global _encoder
    # Ctrl-C reaches the whole process group: the parent handles it (it flushes through
    # this process), so the child must not die of it first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Unpickling a batch allocates thousands of tuples, none in a reference cycle: with
    # the default thresholds the collector would run every 700 of them, for nothing.
    gc.set_threshold(100_000, 50, 100)
    _encoder = SpanEncoder(scope_name, scope_version)


def encode(rows: Sequence[SpanRow]) -> bytes:
    assert _encoder is not None, "the pool's initializer calls start()"
    return _encoder.encode_rows(rows)
