"""OTLP export end to end: our Spans → the Batcher → our encoding over gRPC (grpc.aio) or
HTTP (aiohttp) → the test receiver, which decodes what actually crossed the wire."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from eventtrace.core.model import Span, SpanKind, SpanStatus
from eventtrace.export import SpanSink, open_sink
from eventtrace.export.otlp import http_traces_url, resolve_protocol
from eventtrace.metrics import Metrics
from eventtrace.settings import Settings, SettingsError
from support.otlp_receiver import OtlpReceiver, ReceivedSpan, ReceiverTls

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


def attributes(*pairs: tuple[str, Any]) -> dict[str, Any]:
    return dict(pairs)


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
        attributes=attributes(
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
        attributes={"k8s.pod.name": "redis-687967dbc5-27vmr", "k8s.pod.uid": "p-uid-1"},
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
        attributes=attributes(
            ("k8s.event.reason", "BackOff"),
            ("k8s.event.type", "Warning"),
            ("k8s.event.count", 7),
            ("eventtrace.occurrences", 4),
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
        attributes=attributes(
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


def otlp_sink(settings: Settings, metrics: Metrics, *, shutdown_timeout: float = 10.0) -> SpanSink:
    """What `eventtrace run --output otlp` exports through."""
    return open_sink("otlp", settings, metrics, shutdown_timeout=shutdown_timeout)


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
    async with otlp_sink(settings, metrics) as sink:
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
    assert got.attributes == sent.attributes
    for key, value in sent.attributes.items():
        assert type(got.attributes[key]) is type(value), key
    # Exactly our resource: no telemetry.sdk.* or default service.name merged in.
    assert got.resource == dict(sent.resource)
    assert got.scope == "eventtrace"


async def test_one_resource_per_component(otlp_receiver: OtlpReceiver, metrics: Metrics) -> None:
    settings = make_settings(otlp_endpoint=otlp_receiver.grpc_endpoint)
    async with otlp_sink(settings, metrics) as sink:
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


# -- configuration ------------------------------------------------------------------------


async def test_env_configures_http(
    otlp_receiver: OtlpReceiver, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.http_endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme,authorization=Bearer%20s3cret")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    async with otlp_sink(make_settings(), metrics) as sink:
        assert sink.exporter.protocol == "http/protobuf"  # type: ignore[attr-defined]
        assert sink.exporter.describe() == f"{otlp_receiver.http_endpoint}/v1/traces"
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
    async with otlp_sink(make_settings(), metrics) as sink:
        assert sink.exporter.protocol == "grpc"  # type: ignore[attr-defined]
        assert sink.exporter.describe() == otlp_receiver.grpc_endpoint
        sink.submit(rollout())
    assert len(otlp_receiver.spans) == 5
    assert otlp_receiver.requests[0].transport == "grpc"
    assert otlp_receiver.requests[0].headers["x-tenant"] == "acme"


async def test_grpc_gzip(
    otlp_receiver: OtlpReceiver, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "none")  # the traces one wins
    settings = make_settings(otlp_endpoint=otlp_receiver.grpc_endpoint)
    async with otlp_sink(settings, metrics) as sink:
        sink.submit(rollout())
    assert by_id(otlp_receiver.spans).keys() == {span.span_id for span in rollout()}


async def test_flags_override_env(
    otlp_receiver: OtlpReceiver, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    settings = make_settings(otlp_protocol="grpc", otlp_endpoint=otlp_receiver.grpc_endpoint)
    async with otlp_sink(settings, metrics) as sink:
        sink.submit(rollout())
    assert [request.transport for request in otlp_receiver.requests] == ["grpc"]


@pytest.mark.parametrize("suffix", ["", "/", "/v1/traces"])
async def test_http_endpoint_flag_is_a_base_url(
    suffix: str, otlp_receiver: OtlpReceiver, metrics: Metrics
) -> None:
    endpoint = otlp_receiver.http_endpoint + suffix
    settings = make_settings(otlp_protocol="http/protobuf", otlp_endpoint=endpoint)
    async with otlp_sink(settings, metrics) as sink:
        sink.submit(rollout())
    assert len(otlp_receiver.spans) == 5


async def test_grpc_endpoint_without_scheme(
    otlp_receiver: OtlpReceiver, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Scheme-less means TLS by the spec, unless INSECURE says otherwise.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    settings = make_settings(otlp_endpoint=f"127.0.0.1:{otlp_receiver.grpc_port}")
    async with otlp_sink(settings, metrics) as sink:
        assert sink.exporter.describe() == otlp_receiver.grpc_endpoint
        sink.submit(rollout())
    assert len(otlp_receiver.spans) == 5


def test_scheme_less_grpc_endpoint_defaults_to_tls(metrics: Metrics) -> None:
    sink = otlp_sink(make_settings(otlp_endpoint="jaeger:4317"), metrics)
    assert sink.exporter.describe() == "https://jaeger:4317"


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
        otlp_sink(make_settings(), metrics)


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
    async with otlp_sink(settings, metrics) as sink:
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
    async with otlp_sink(settings, metrics) as sink:
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
    async with otlp_sink(settings, metrics) as sink:
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
    async with otlp_sink(settings, metrics) as sink:
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
    sink = otlp_sink(settings, metrics)
    with caplog.at_level(logging.WARNING, logger="eventtrace.export.batcher"):
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
    with caplog.at_level(logging.ERROR, logger="eventtrace.export.batcher"):
        async with otlp_sink(settings, metrics, shutdown_timeout=1.0) as sink:
            sink.submit(numbered_spans(4))
        elapsed = time.monotonic() - started
        sink.submit(numbered_spans(1, start=4))  # after exit: counted, not silently lost
    assert elapsed < 1.0 + 1.5, elapsed  # deadline + slack
    assert sample(metrics, "eventtrace_spans_failed_total", reason="shutdown") == 5
    assert (sink.delivered, sink.lost) == (0, 5)
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


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_shutdown_deadline_holds_against_a_hung_backend(
    protocol: str, silent_port: int, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "30")  # the exporter alone would wait 30 s
    endpoint = f"http://127.0.0.1:{silent_port}"
    settings = make_settings(otlp_protocol=protocol, otlp_endpoint=endpoint)
    started = time.monotonic()
    async with otlp_sink(settings, metrics, shutdown_timeout=1.0) as sink:
        sink.submit(numbered_spans(3))
    assert time.monotonic() - started < 1.0 + 1.5
    assert sample(metrics, "eventtrace_spans_failed_total", reason="shutdown") == 3
    assert (sink.delivered, sink.lost) == (0, 3)


async def test_room_holds_a_fast_producer_back_so_nothing_is_dropped(
    otlp_receiver: OtlpReceiver, metrics: Metrics
) -> None:
    # 4 000 spans into a queue of 1 000: without room() 3 000 would be pushed out.
    settings = make_settings(
        otlp_endpoint=otlp_receiver.grpc_endpoint, export_queue_size=1_000, export_batch_size=50
    )
    spans = numbered_spans(4_000)
    waited = 0
    async with otlp_sink(settings, metrics) as sink:
        for start in range(0, len(spans), 100):
            before = time.monotonic()
            await sink.room()
            waited += time.monotonic() - before > 0.001
            sink.submit(spans[start : start + 100])
    assert waited, "room() never waited: the producer was not held back"
    assert sample(metrics, "eventtrace_spans_failed_total", reason="queue_full") == 0
    assert (sink.delivered, sink.lost) == (4_000, 0)
    assert otlp_receiver.span_count == 4_000


async def test_room_does_not_wait_for_a_backend_that_is_down(
    otlp_receiver: OtlpReceiver, metrics: Metrics
) -> None:
    settings = make_settings(
        otlp_endpoint=otlp_receiver.grpc_endpoint, export_queue_size=1_000, export_batch_size=50
    )
    otlp_receiver.stop()
    async with otlp_sink(settings, metrics, shutdown_timeout=0.5) as sink:
        sink.submit(numbered_spans(600))  # well above the 200 room() lets through
        # Waits until an export has failed, then lets the producer on: the queue drops
        # the oldest rather than the producer stalling behind a dead backend.
        await asyncio.wait_for(sink.room(), 5)
        assert sample(metrics, "eventtrace_export_retries_total") >= 1
    assert sink.lost == 600


# -- TLS ----------------------------------------------------------------------------------


@functools.cache
def authority() -> tuple[trustme.CA, trustme.LeafCert, trustme.LeafCert]:
    """A throwaway CA, the receiver's certificate and a client's (key generation is slow)."""
    ca = trustme.CA(organization_name="eventtrace OTLP test CA")
    return ca, ca.issue_cert("127.0.0.1", "localhost"), ca.issue_cert("eventtrace-client")


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    ca, _, client = authority()
    files = {
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "client.pem",
        "key": tmp_path / "key.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    client.cert_chain_pems[0].write_to_path(str(files["cert"]))
    client.private_key_pem.write_to_path(str(files["key"]))
    return files


def tls_receiver(*, client_auth: bool) -> OtlpReceiver:
    ca, server, _ = authority()
    chain = b"".join(pem.bytes() for pem in server.cert_chain_pems)
    tls = ReceiverTls(
        chain, server.private_key_pem.bytes(), ca.cert_pem.bytes() if client_auth else None
    )
    return OtlpReceiver(tls=tls).start()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("client_auth", [False, True], ids=["tls", "mutual-tls"])
async def test_tls_with_a_private_ca_and_a_client_certificate(
    protocol: str,
    client_auth: bool,
    tls_files: dict[str, Path],
    metrics: Metrics,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = tls_receiver(client_auth=client_auth)
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(tls_files["ca"]))
        if client_auth:
            monkeypatch.setenv(
                "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", str(tls_files["cert"])
            )
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", str(tls_files["key"]))
        endpoint = receiver.endpoint(protocol)
        assert endpoint.startswith("https://")
        settings = make_settings(otlp_protocol=protocol, otlp_endpoint=endpoint)
        async with otlp_sink(settings, metrics) as sink:
            sink.submit(rollout())
            await receiver.wait_for_spans(5, within=10)
        assert sink.delivered == 5
    finally:
        receiver.stop()


async def test_scheme_less_grpc_endpoint_speaks_tls(
    tls_files: dict[str, Path], metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = tls_receiver(client_auth=False)
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(tls_files["ca"]))
        settings = make_settings(otlp_endpoint=f"127.0.0.1:{receiver.grpc_port}")
        async with otlp_sink(settings, metrics) as sink:
            assert sink.exporter.describe() == receiver.grpc_endpoint  # https://
            sink.submit(rollout())
            await receiver.wait_for_spans(5, within=10)
    finally:
        receiver.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("missing", ["ca", "client-certificate"])
async def test_tls_that_does_not_check_out_is_refused_and_retried(
    protocol: str,
    missing: str,
    tls_files: dict[str, Path],
    metrics: Metrics,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without OTEL_EXPORTER_OTLP_CERTIFICATE the system's CAs do not know the test CA;
    # with it, a receiver asking for a client certificate gets none.
    receiver = tls_receiver(client_auth=missing == "client-certificate")
    try:
        if missing != "ca":
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(tls_files["ca"]))
        settings = make_settings(otlp_protocol=protocol, otlp_endpoint=receiver.endpoint(protocol))
        async with otlp_sink(settings, metrics, shutdown_timeout=0.5) as sink:
            sink.submit(rollout())
            await eventually(
                lambda: sample(metrics, "eventtrace_export_retries_total") >= 1, 10, "a retry"
            )
        assert receiver.span_count == 0
        assert sink.lost == 5
    finally:
        receiver.stop()


# -- bad settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"OTEL_EXPORTER_OTLP_COMPRESSION": "br"},
            r"OTEL_EXPORTER_OTLP_COMPRESSION: .*'br'.*gzip or none",
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "soon"},
            r"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: 'soon'",
        ),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "0"}, r"OTEL_EXPORTER_OTLP_TIMEOUT: '0'"),
        (
            {"OTEL_EXPORTER_OTLP_INSECURE": "yes"},
            r"OTEL_EXPORTER_OTLP_INSECURE: 'yes' is not true or false",
        ),
        (
            {"OTEL_EXPORTER_OTLP_HEADERS": "a=1,oops"},
            r"OTEL_EXPORTER_OTLP_HEADERS: 'oops' is not name=value",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://jaeger:4317"},
            r"OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://jaeger:4317'",
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "jaeger:99999"},
            r"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'jaeger:99999' has no valid port",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "https://jaeger:4317",
                "OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem",
            },
            r"OTEL_EXPORTER_OTLP_CERTIFICATE: cannot read /nonexistent/ca.pem",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "https://jaeger:4317",
                "OTEL_EXPORTER_OTLP_CLIENT_KEY": "/k.pem",
            },
            r"OTEL_EXPORTER_OTLP_CLIENT_KEY is set but not OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "jaeger:4318",
            },
            r"OTEL_EXPORTER_OTLP_ENDPOINT: 'jaeger:4318' is not an OTLP endpoint",
        ),
    ],
)
def test_a_bad_variable_is_one_clear_error_naming_it(
    env: dict[str, str], message: str, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message) as raised:
        otlp_sink(make_settings(), metrics)
    assert "\n" not in str(raised.value)


def test_a_file_that_is_no_certificate_is_a_clear_error(
    tmp_path: Path, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", str(bogus))
    for protocol in PROTOCOLS:
        settings = make_settings(otlp_protocol=protocol, otlp_endpoint="https://jaeger:4317")
        with pytest.raises(SettingsError, match=r"^OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: .*PEM"):
            otlp_sink(settings, metrics)


def test_http_traces_endpoint_is_taken_verbatim(
    metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://gw.example/otlp/spans")
    assert (
        otlp_sink(make_settings(), metrics).exporter.describe() == "https://gw.example/otlp/spans"
    )
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    assert (
        otlp_sink(make_settings(), metrics).exporter.describe() == "http://collector:4318/v1/traces"
    )
