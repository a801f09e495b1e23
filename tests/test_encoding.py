"""Our OTLP encoding (export/protobuf.py) against the SDK's own encoder: the same bytes."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags
from opentelemetry.trace import SpanKind as SdkSpanKind
from test_export_otlp import numbered_spans, rollout

from eventtrace.core.model import AttributeValue, Span, SpanKind, SpanStatus
from eventtrace.export.otlp import SCOPE_NAME, SCOPE_VERSION
from eventtrace.export.protobuf import SpanEncoder, _varint

SCOPE = InstrumentationScope(SCOPE_NAME, SCOPE_VERSION)
SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def to_readable_span(span: Span, resource: Resource) -> ReadableSpan:
    """Our Span as the SDK's ReadableSpan, ids and times exactly as given."""
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
        resource=resource,
        attributes=span.attributes,
        kind=SdkSpanKind.INTERNAL,
        status=status,
        start_time=span.start_ns,
        end_time=span.end_ns,
        instrumentation_scope=SCOPE,
    )


def sdk_bytes(spans: list[Span], scope: InstrumentationScope = SCOPE) -> bytes:
    # One Resource per distinct attribute tuple (Resource() exactly: Resource.create would
    # merge SDK defaults in): the SDK's encoder groups spans by Resource object.
    resources: dict[tuple[tuple[str, AttributeValue], ...], Resource] = {}
    readable = [
        to_readable_span(span, resources.setdefault(span.resource, Resource(dict(span.resource))))
        for span in spans
    ]
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
        replace(base, span_id=f"{n:016x}", attributes={"x": value, "y": value})
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


# Any text, including long values (lengths of two- and three-byte varints at every level:
# attribute, span, scope, resource) and characters of several UTF-8 bytes.
texts = st.text(max_size=300) | st.text(min_size=120, max_size=3_000)
values: st.SearchStrategy[AttributeValue] = (
    texts
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
)
hex_ids = st.integers(min_value=1, max_value=2**64 - 1).map(lambda n: f"{n:016x}")
resources = st.sampled_from(
    [
        (("k8s.cluster.name", "c"), ("service.name", "kubelet")),
        (("k8s.cluster.name", "c"), ("service.instance.id", "node-1"), ("service.name", "k")),
        (("service.name", "x" * 200),),
    ]
)


@st.composite
def spans(draw: st.DrawFn) -> Span:
    # Never a default value where protobuf would leave the field out (an empty name, a
    # zero time): the pipeline makes none, and this encoder writes them all.
    start = draw(st.integers(min_value=1, max_value=2**63 - 1))
    return Span(
        trace_id=draw(st.integers(min_value=1, max_value=2**128 - 1).map(lambda n: f"{n:032x}")),
        span_id=draw(hex_ids),
        parent_id=draw(st.none() | hex_ids),
        name=draw(texts.filter(bool)),
        kind=draw(st.sampled_from(SpanKind)),
        start_ns=start,
        end_ns=draw(st.integers(min_value=start, max_value=2**63 - 1)),
        status=draw(st.sampled_from(SpanStatus)),
        status_message=draw(texts),
        resource=draw(resources),
        attributes=draw(st.dictionaries(st.text(min_size=1, max_size=150), values, max_size=8)),
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(spans(), min_size=1, max_size=25))
def test_any_spans_come_out_as_the_sdk_encodes_them(batch: list[Span]) -> None:
    encoder = SpanEncoder(SCOPE.name, SCOPE.version or "")
    assert encoder.encode(batch) == sdk_bytes(batch)
    assert encoder.encode(batch) == sdk_bytes(batch), "the caches change nothing"


def test_resources_of_megabytes_have_their_lengths_right() -> None:
    # A resource's spans past 2**14 and 2**21 bytes: three- and four-byte lengths at the
    # scope and resource levels, which the random batches above rarely reach.
    base = rollout()[1]
    for count in (6, 700):
        batch = [
            replace(
                base,
                span_id=f"{n + 1:016x}",
                attributes={"k8s.event.message": f"{n} " + "m" * 3_500},
            )
            for n in range(count)
        ]
        assert len(SpanEncoder(SCOPE.name).encode(batch)) > (2**14 if count == 6 else 2**21)
        assert SpanEncoder(SCOPE.name, SCOPE.version or "").encode(batch) == sdk_bytes(batch)
