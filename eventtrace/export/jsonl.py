"""`--output jsonl`: one JSON span a line, for scripts and for diffing runs."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, BinaryIO

import orjson

from eventtrace.core.model import Span


def span_to_dict(span: Span) -> dict[str, Any]:
    return {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_id": span.parent_id,
        "name": span.name,
        "kind": span.kind.value,
        "start_ns": span.start_ns,
        "end_ns": span.end_ns,
        "status": span.status.value,
        "status_message": span.status_message,
        "resource": dict(span.resource),
        "attributes": span.attributes,
    }


class JsonLinesExporter:
    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream or sys.stdout.buffer

    def describe(self) -> str:
        return "stdout"

    async def export(self, spans: Sequence[Span]) -> bool:
        write = self._stream.write
        for span in spans:
            write(orjson.dumps(span_to_dict(span), option=orjson.OPT_APPEND_NEWLINE))
        self._stream.flush()
        return True

    async def shutdown(self) -> None:
        self._stream.flush()
