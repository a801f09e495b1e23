"""Our OTLP encoding (export/protobuf.py) against the SDK's own encoder: the same bytes."""

from __future__ import annotations

from dataclasses import replace

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from test_export_otlp import numbered_spans, rollout

from eventtrace.export.otlp import SCOPE, ResourceCache, to_readable_span
from eventtrace.export.protobuf import SpanEncoder, _varint
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


def test_equal_int_bool_and_float_values_keep_their_own_encodings() -> None:
    # 1 == True == 1.0 (and hash alike): a cached encoding of one must not serve another.
    base = rollout()[0]
    spans = [
        replace(base, span_id=f"{n:016x}", attributes=(("x", value), ("y", value)))
        for n, value in enumerate([1, True, 1.0, 1, True, 0, False, 0.0, 1, "1"])
    ]
    encoder = SpanEncoder(SCOPE.name, SCOPE.version or "")
    assert encoder.encode(spans) == sdk_bytes(spans)
    assert encoder.encode(spans[::-1]) == sdk_bytes(spans[::-1])


def test_varints_are_protobufs_own() -> None:
    from google.protobuf.internal.encoder import _VarintBytes

    edges = [0, 1, 0x7F, 0x80, 0x3FFF, 0x4000, 0x1FFFFF, 0x200000, 2**32, 2**63, 2**64 - 1]
    for value in [*edges, *range(0, 20_000, 7)]:
        assert _varint(value) == _VarintBytes(value), value
