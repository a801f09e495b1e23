"""OtlpSink end to end: our Spans → the SDK's OTLP exporters → real protobuf bytes on
gRPC or HTTP → the test receiver, which decodes what actually crossed the wire."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from eventtrace.core.model import Span, SpanKind, SpanStatus
from eventtrace.export.otlp import (
    OtlpSink,
    ResourceCache,
    http_traces_url,
    resolve_protocol,
    to_readable_span,
)
from eventtrace.metrics import Metrics
from eventtrace.settings import Settings, SettingsError
from support.otlp_receiver import OtlpReceiver, ReceivedSpan

PROTOCOLS = ["grpc", "http/protobuf"]
CLUSTER = "test-cluster"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
T0 = 1_700_000_000_123_456_789  # odd nanoseconds: times must survive exactly, no floats

KUBECTL = (
    ("service.name", "kubectl-client-side-apply"),
    ("service.instance.id", ""),
    ("k8s.cluster.name", CLUSTER),
)
CONTROLLER = (
    ("service.name", "deployment-controller"),
    ("service.instance.id", "kube-controller-manager-kind-control-plane"),
    ("k8s.cluster.name", CLUSTER),
)
KUBELET = (
    ("service.name", "kubelet"),
    ("service.instance.id", "kind-worker"),
    ("k8s.cluster.name", CLUSTER),
)


def rollout() -> list[Span]:
    """A small rollout: deployment → ScalingReplicaSet → pod → Scheduled, and a Warning."""
    deployment = Span(
        trace_id=TRACE,
        span_id="00f067aa0ba902b7",
        parent_id=None,
        name="deployment/redis",
        kind=SpanKind.OBJECT,
        start_ns=T0,
        end_ns=T0 + 9_000_000_001,
        status=SpanStatus.UNSET,
        status_message="",
        resource=KUBECTL,
        attributes=(
            ("k8s.deployment.name", "redis"),
            ("k8s.deployment.uid", "d-uid-1"),
            ("k8s.namespace.name", "default"),
        ),
    )
    scaled = event_span(
        "a1b2c3d4e5f60718",
        deployment.span_id,
        "ScalingReplicaSet",
        CONTROLLER,
        T0,
        message="Scaled up replica set redis-687967dbc5 to 1",
    )
    pod = Span(
        trace_id=TRACE,
        span_id="1111222233334444",
        parent_id=scaled.span_id,
        name="pod/redis-687967dbc5-27vmr",
        kind=SpanKind.OBJECT,
        start_ns=T0 + 1_000,
        end_ns=T0 + 9_000_000_001,
        status=SpanStatus.UNSET,
        status_message="",
        resource=CONTROLLER,
        attributes=(("k8s.pod.name", "redis-687967dbc5-27vmr"), ("k8s.pod.uid", "p-uid-1")),
    )
    scheduled = event_span("5555666677778888", pod.span_id, "Scheduled", KUBELET, T0 + 2_000)
    backoff = Span(
        trace_id=TRACE,
        span_id="9999aaaabbbbcccc",
        parent_id=pod.span_id,
        name="BackOff",
        kind=SpanKind.EVENT,
        start_ns=T0 + 3_000_000_000,
        end_ns=T0 + 9_000_000_001,
        status=SpanStatus.ERROR,
        status_message="Back-off restarting failed container redis",
        resource=KUBELET,
        attributes=(
            ("k8s.event.reason", "BackOff"),
            ("k8s.event.type", "Warning"),
            ("k8s.event.count", 7),
            ("eventtrace.core.occurrences", 4),
            ("eventtrace.test.ratio", 0.25),
            ("eventtrace.test.flag", True),
        ),
    )
    return [deployment, scaled, pod, scheduled, backoff]


def event_span(
    span_id: str, parent: str, reason: str, resource: tuple, start: int, message: str = ""
) -> Span:
    return Span(
        trace_id=TRACE,
        span_id=span_id,
        parent_id=parent,
        name=reason,
        kind=SpanKind.EVENT,
        start_ns=start,
        end_ns=start,
        status=SpanStatus.UNSET,
        status_message="",
        resource=resource,
        attributes=(
            ("k8s.event.reason", reason),
            ("k8s.event.message", message),
            ("k8s.event.type", "Normal"),
            ("k8s.event.count", 1),
        ),
    )


def numbered_spans(count: int, start: int = 0) -> list[Span]:
    """Distinct event spans, ids 1, 2, 3… so their order is easy to check."""
    return [
        event_span(f"{start + i + 1:016x}", "00f067aa0ba902b7", f"E{start + i}", KUBELET, T0 + i)
        for i in range(count)
    ]


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"export_interval": 0.05, **overrides}
    return Settings(**values)  # type: ignore[arg-type]


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def exported(metrics: Metrics) -> float:
    return sum(
        sample(metrics, "eventtrace_spans_exported_total", kind=kind)
        for kind in ("event", "object")
    )


async def eventually(condition: Callable[[], bool], within: float, what: str) -> None:
    for _ in range(int(within / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within}s: {what}")


@pytest.fixture(autouse=True)
def otlp_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OTLP settings leak in from the environment; a short exporter timeout (seconds)."""
    import os

    for name in list(os.environ):
        if name.startswith(("OTEL_", "EVENTTRACE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


# -- the wire -----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_spans_cross_the_wire_intact(
    protocol: str, otlp_receiver: OtlpReceiver, metrics: Metrics
) -> None:
    spans = rollout()
    settings = make_settings(otlp_protocol=protocol, otlp_endpoint=otlp_receiver.endpoint(protocol))
    async with OtlpSink(settings, metrics) as sink:
        sink.submit(spans[:2])
        sink.submit(spans[2:])
        await otlp_receiver.wait_for_spans(len(spans), within=10)

    received = by_id(otlp_receiver.spans)
    assert set(received) == {span.span_id for span in spans}
    for span in spans:
        assert_same(span, received[span.span_id])
    assert {request.transport for request in otlp_receiver.requests} == {
        "grpc" if protocol == "grpc" else "http"
    }
    assert sample(metrics, "eventtrace_spans_exported_total", kind="event") == 3
    assert sample(metrics, "eventtrace_spans_exported_total", kind="object") == 2
    # One lag a delivered batch (each a request here: nothing failed), not one a span.
    assert sample(metrics, "eventtrace_export_lag_seconds_count") == len(otlp_receiver.requests)
    assert sample(metrics, "eventtrace_export_queue_spans") == 0


def by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    ids = [span.span_id for span in spans]
    assert len(ids) == len(set(ids)), f"duplicate spans on the wire: {sorted(ids)}"
    return {span.span_id: span for span in spans}


def assert_same(sent: Span, got: ReceivedSpan) -> None:
    assert got.trace_id == sent.trace_id
    assert got.parent_id == sent.parent_id
    assert got.name == sent.name
    assert (got.start_ns, got.end_ns) == (sent.start_ns, sent.end_ns)
    assert got.kind == 1  # SPAN_KIND_INTERNAL
    if sent.status is SpanStatus.ERROR:
        assert (got.status_code, got.status_message) == ("ERROR", sent.status_message)
    else:
        assert (got.status_code, got.status_message) == ("UNSET", "")
    assert got.attributes == dict(sent.attributes)
    for key, value in sent.attributes:
        assert type(got.attributes[key]) is type(value), key
    # Exactly our resource: no telemetry.sdk.* or default service.name merged in.
    assert got.resource == dict(sent.resource)
    assert got.scope == "eventtrace"


async def test_one_resource_per_component(otlp_receiver: OtlpReceiver, metrics: Metrics) -> None:
    settings = make_settings(otlp_endpoint=otlp_receiver.grpc_endpoint)
    async with OtlpSink(settings, metrics) as sink:
        sink.submit(rollout())
    services = {span.span_id: span.resource["service.name"] for span in otlp_receiver.spans}
    assert services == {
        "00f067aa0ba902b7": "kubectl-client-side-apply",
        "a1b2c3d4e5f60718": "deployment-controller",
        "1111222233334444": "deployment-controller",
        "5555666677778888": "kubelet",
        "9999aaaabbbbcccc": "kubelet",
    }
    assert {span.resource["service.instance.id"] for span in otlp_receiver.spans} == {
        "",
        "kube-controller-manager-kind-control-plane",
        "kind-worker",
    }
    assert {span.resource["k8s.cluster.name"] for span in otlp_receiver.spans} == {CLUSTER}


def test_conversion_shares_resources_and_keeps_ids() -> None:
    cache = ResourceCache()
    spans = rollout()
    readable = [to_readable_span(span, cache.get(span.resource)) for span in spans]
    assert readable[1].resource is readable[2].resource  # both deployment-controller
    assert readable[0].resource is not readable[1].resource
    context = readable[1].get_span_context()
    assert context is not None
    assert f"{context.trace_id:032x}" == TRACE
    assert readable[0].parent is None
    assert readable[1].parent is not None
    assert f"{readable[1].parent.span_id:016x}" == spans[0].span_id
    # Without a cache the resource is still exactly the span's.
    assert dict(to_readable_span(spans[0]).resource.attributes) == dict(KUBECTL)


# -- configuration ------------------------------------------------------------------------


async def test_env_configures_http(
    otlp_receiver: OtlpReceiver, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.http_endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme,authorization=Bearer%20s3cret")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    async with OtlpSink(make_settings(), metrics) as sink:
        assert sink.protocol == "http/protobuf"
        assert sink.endpoint == f"{otlp_receiver.http_endpoint}/v1/traces"
        sink.submit(rollout())
    assert len(otlp_receiver.spans) == 5
    headers = otlp_receiver.requests[0].headers
    assert otlp_receiver.requests[0].transport == "http"
    assert headers["x-tenant"] == "acme"
    assert headers["authorization"] == "Bearer s3cret"
    assert headers["content-encoding"] == "gzip"


async def test_env_configures_grpc_traces_vars_first(
    otlp_receiver: OtlpReceiver, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")  # nothing there
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp_receiver.grpc_endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=acme")
    async with OtlpSink(make_settings(), metrics) as sink:
        assert sink.protocol == "grpc"
        assert sink.endpoint == otlp_receiver.grpc_endpoint
        sink.submit(rollout())
    assert len(otlp_receiver.spans) == 5
    assert otlp_receiver.requests[0].transport == "grpc"
    assert otlp_receiver.requests[0].headers["x-tenant"] == "acme"


async def test_flags_override_env(
    otlp_receiver: OtlpReceiver, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    settings = make_settings(otlp_protocol="grpc", otlp_endpoint=otlp_receiver.grpc_endpoint)
    async with OtlpSink(settings, metrics) as sink:
        sink.submit(rollout())
    assert [request.transport for request in otlp_receiver.requests] == ["grpc"]


@pytest.mark.parametrize("suffix", ["", "/", "/v1/traces"])
async def test_http_endpoint_flag_is_a_base_url(
    suffix: str, otlp_receiver: OtlpReceiver, metrics: Metrics
) -> None:
    endpoint = otlp_receiver.http_endpoint + suffix
    settings = make_settings(otlp_protocol="http/protobuf", otlp_endpoint=endpoint)
    async with OtlpSink(settings, metrics) as sink:
        sink.submit(rollout())
    assert len(otlp_receiver.spans) == 5


async def test_grpc_endpoint_without_scheme(
    otlp_receiver: OtlpReceiver, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Scheme-less means TLS by the spec, unless INSECURE says otherwise.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    settings = make_settings(otlp_endpoint=f"127.0.0.1:{otlp_receiver.grpc_port}")
    async with OtlpSink(settings, metrics) as sink:
        assert sink.endpoint == otlp_receiver.grpc_endpoint
        sink.submit(rollout())
    assert len(otlp_receiver.spans) == 5


def test_scheme_less_grpc_endpoint_defaults_to_tls(metrics: Metrics) -> None:
    sink = OtlpSink(make_settings(otlp_endpoint="jaeger:4317"), metrics)
    assert sink.endpoint == "https://jaeger:4317"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "grpc"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "http/protobuf"),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            "http/protobuf",
        ),
    ],
)
def test_protocol_precedence(env: dict[str, str], expected: str) -> None:
    assert resolve_protocol(None, env) == expected
    assert resolve_protocol("grpc", env) == "grpc"


def test_unknown_protocol_is_a_clear_error(
    metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(SettingsError, match=r"OTEL_EXPORTER_OTLP_PROTOCOL.*'http/json'.*grpc"):
        OtlpSink(make_settings(), metrics)


def test_http_traces_url() -> None:
    assert http_traces_url("http://jaeger:4318") == "http://jaeger:4318/v1/traces"
    assert http_traces_url("https://otel.example/") == "https://otel.example/v1/traces"
    assert http_traces_url("jaeger:4318") == "http://jaeger:4318/v1/traces"
    assert http_traces_url("http://gw/otlp/v1/traces") == "http://gw/otlp/v1/traces"


# -- delivery -----------------------------------------------------------------------------


async def test_full_batches_go_at_once_the_rest_at_exit(
    otlp_receiver: OtlpReceiver, metrics: Metrics
) -> None:
    settings = make_settings(
        otlp_endpoint=otlp_receiver.grpc_endpoint, export_batch_size=3, export_interval=60
    )
    async with OtlpSink(settings, metrics) as sink:
        sink.submit(numbered_spans(3))
        await otlp_receiver.wait_for_spans(3, within=5)  # long before the 60 s interval
        sink.submit(numbered_spans(7, start=3))
        await otlp_receiver.wait_for_spans(9, within=5)
        await asyncio.sleep(0.2)
        assert otlp_receiver.span_count == 9  # the 10th waits for the interval or the exit
    # Several batches travel at once (IN_FLIGHT), so they may arrive in any order; each
    # holds spans submitted together, in order.
    counts = [request.span_count for request in otlp_receiver.requests]
    assert sorted(counts[:3]) == [3, 3, 3] and counts[3:] == [1]
    ids = [span.span_id for span in otlp_receiver.spans]
    assert sorted(ids) == [f"{i:016x}" for i in range(1, 11)]
    batches = [ids[start : start + 3] for start in range(0, 9, 3)]
    assert all(int(b[1], 16) == int(b[0], 16) + 1 == int(b[2], 16) - 1 for b in batches)


async def test_interval_sends_a_partial_batch(
    otlp_receiver: OtlpReceiver, metrics: Metrics
) -> None:
    settings = make_settings(otlp_endpoint=otlp_receiver.grpc_endpoint, export_interval=0.2)
    async with OtlpSink(settings, metrics) as sink:
        sink.submit(numbered_spans(2))
        await otlp_receiver.wait_for_spans(2, within=5)
        # The receiver answers a moment before the sink hears back.
        await eventually(lambda: exported(metrics) == 2, 5, "the success recorded")
        assert sample(metrics, "eventtrace_export_queue_spans") == 0


async def test_send_now_sends_partial_batches_without_waiting_the_interval(
    otlp_receiver: OtlpReceiver, metrics: Metrics
) -> None:
    settings = make_settings(
        otlp_endpoint=otlp_receiver.grpc_endpoint, export_batch_size=4, export_interval=60
    )
    async with OtlpSink(settings, metrics) as sink:
        sink.submit(numbered_spans(2))
        await asyncio.sleep(0.3)
        assert otlp_receiver.span_count == 0  # a partial batch waits for company…
        sink.send_now()  # …until the producer says none is coming
        await otlp_receiver.wait_for_spans(2, within=5)
        sink.submit(numbered_spans(6, start=2))
        await otlp_receiver.wait_for_spans(6, within=5)  # a full batch, as always
        await asyncio.sleep(0.3)
        assert otlp_receiver.span_count == 6  # hurrying ended with the queue empty
        sink.send_now()
        await otlp_receiver.wait_for_spans(8, within=5)
        sink.send_now()  # nothing queued: nothing to send, and no busy loop
        await asyncio.sleep(0.2)
    assert [request.span_count for request in otlp_receiver.requests] == [2, 4, 2]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_receiver_down_then_back_delivers_exactly_once(
    protocol: str, otlp_receiver: OtlpReceiver, metrics: Metrics
) -> None:
    settings = make_settings(
        otlp_protocol=protocol,
        otlp_endpoint=otlp_receiver.endpoint(protocol),
        export_batch_size=8,
    )
    spans = numbered_spans(20)
    async with OtlpSink(settings, metrics) as sink:
        otlp_receiver.stop()
        sink.submit(spans[:12])
        sink.submit(spans[12:])
        await eventually(
            lambda: sample(metrics, "eventtrace_export_retries_total") >= 1, 10, "a retry"
        )
        assert sample(metrics, "eventtrace_export_queue_spans") == 20  # kept, not dropped
        await asyncio.sleep(1.0)
        otlp_receiver.start()  # same ports
        await otlp_receiver.wait_for_spans(20, within=30)
    received = by_id(otlp_receiver.spans)  # fails on duplicates
    assert set(received) == {span.span_id for span in spans}
    assert exported(metrics) == 20
    assert sample(metrics, "eventtrace_export_retries_total") >= 1
    assert sample(metrics, "eventtrace_spans_failed_total", reason="shutdown") == 0
    assert sample(metrics, "eventtrace_export_queue_spans") == 0


async def test_full_queue_drops_the_oldest(
    otlp_receiver: OtlpReceiver, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(otlp_endpoint=otlp_receiver.grpc_endpoint, export_queue_size=5)
    spans = numbered_spans(9)
    sink = OtlpSink(settings, metrics)
    with caplog.at_level(logging.WARNING, logger="eventtrace.export.otlp"):
        for span in spans[:8]:  # before the task runs: the queue only fills
            sink.submit([span])
        assert sample(metrics, "eventtrace_export_queue_spans") == 5
        sink.submit([])
        async with sink:
            # Still before the task's first run (entering does not yield): one more drop,
            # in the same burst, so still no second warning.
            sink.submit(spans[8:])
    assert sample(metrics, "eventtrace_spans_failed_total", reason="queue_full") == 4
    received = [span.span_id for span in otlp_receiver.spans]
    assert received == [span.span_id for span in spans[4:]]  # the 5 newest, in order
    drops = [r for r in caplog.records if "queue full" in r.getMessage()]
    assert len(drops) == 1, "one warning per burst, not per span"


async def test_shutdown_with_receiver_down_counts_the_lost(
    otlp_receiver: OtlpReceiver, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(otlp_endpoint=otlp_receiver.grpc_endpoint)
    otlp_receiver.stop()
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="eventtrace.export.otlp"):
        async with OtlpSink(settings, metrics, shutdown_timeout=1.0) as sink:
            sink.submit(numbered_spans(4))
        elapsed = time.monotonic() - started
        sink.submit(numbered_spans(1, start=4))  # after exit: counted, not silently lost
    assert elapsed < 1.0 + 1.0 + 1.5, elapsed  # deadline + abort grace + slack
    assert sample(metrics, "eventtrace_spans_failed_total", reason="shutdown") == 5
    assert exported(metrics) == 0
    assert sample(metrics, "eventtrace_export_queue_spans") == 0
    assert any("4 spans could not be delivered" in r.getMessage() for r in caplog.records)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers: a hung backend."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


async def test_shutdown_deadline_holds_against_a_hung_backend(
    silent_port: int, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "30")  # the exporter alone would wait 30 s
    settings = make_settings(otlp_endpoint=f"http://127.0.0.1:{silent_port}")
    started = time.monotonic()
    async with OtlpSink(settings, metrics, shutdown_timeout=1.0) as sink:
        sink.submit(numbered_spans(3))
    assert time.monotonic() - started < 1.0 + 1.0 + 1.5
    assert sample(metrics, "eventtrace_spans_failed_total", reason="shutdown") == 3
