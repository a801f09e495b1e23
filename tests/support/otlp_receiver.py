"""A real OTLP trace receiver for tests and benchmarks (DESIGN §3).

It serves both OTLP transports on 127.0.0.1 and decodes the protobuf bytes the exporter
actually sent:

- gRPC: opentelemetry-proto's `TraceService.Export` on a grpcio server;
- HTTP: `POST /v1/traces` with `Content-Type: application/x-protobuf`, the body optionally
  `Content-Encoding: gzip` or `deflate` (a threaded `http.server`). `GET /stats` returns
  the counters as JSON.

In tests (this module is a pytest plugin, see tests/conftest.py) use the `otlp_receiver`
fixture: a started `OtlpReceiver` with `.grpc_endpoint` / `.http_endpoint`, the decoded
`.spans`, the `.requests` (transport, headers, span count), `await .wait_for_spans(n)`
(a timeout fails the test), and `.stop()` / `.start()` to take it down and bring it back
on the same ports.
`otlp_http_receiver` is the same kind of object, for tests that read better that way.
`OtlpReceiver(tls=ReceiverTls(...))` serves both over TLS (https:// endpoints), and with
`client_ca` requires a client certificate from that CA (mutual TLS).

Standalone, for the benchmark (counts spans without building a Python object per span)::

    python tests/support/otlp_receiver.py [--grpc-port N] [--http-port M] [--stats-file F]

It prints one line `ready grpc=http://127.0.0.1:N http=http://127.0.0.1:M` once listening
(ports 0 pick free ones), answers `GET http://127.0.0.1:M/stats` with
`{"spans": …, "requests": …, "bytes": …}`, prints that JSON line on SIGUSR1 and at exit
(SIGTERM, SIGINT), and writes it to `--stats-file` at exit if given.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import signal
import ssl
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status

HOST = "127.0.0.1"
PROTOBUF = "application/x-protobuf"
STATUS_NAMES = {
    Status.STATUS_CODE_UNSET: "UNSET",
    Status.STATUS_CODE_OK: "OK",
    Status.STATUS_CODE_ERROR: "ERROR",
}


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as decoded from the wire. Ids are lowercase hex; no parent is None."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: str
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    transport: str


@dataclass(frozen=True)
class ReceivedRequest:
    """One Export call: which transport, its headers/metadata (lower-case keys), span count."""

    transport: str
    headers: dict[str, str]
    span_count: int


@dataclass(frozen=True)
class ReceiverTls:
    """PEM bytes: the servers' certificate chain and key; for mutual TLS, the CA whose
    client certificates they accept (none: no client certificate asked for)."""

    cert_chain: bytes
    key: bytes
    client_ca: bytes | None = None


@dataclass
class _Stats:
    spans: int = 0
    requests: int = 0
    bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"spans": self.spans, "requests": self.requests, "bytes": self.bytes}


def any_value(value: AnyValue) -> Any:
    """An OTLP AnyValue as plain Python (lists for arrays, dicts for kvlists)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return key_values(value.kvlist_value.values)
    return getattr(value, which)


def key_values(items: Iterator[KeyValue] | Any) -> dict[str, Any]:
    return {item.key: any_value(item.value) for item in items}


def decode_spans(
    request: trace_service_pb2.ExportTraceServiceRequest, transport: str
) -> list[ReceivedSpan]:
    """Flatten resource → scope → span into one list of ReceivedSpan."""
    spans = []
    for resource_spans in request.resource_spans:
        resource = key_values(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex() or None,
                        name=span.name,
                        kind=span.kind,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        status_code=STATUS_NAMES.get(span.status.code, str(span.status.code)),
                        status_message=span.status.message,
                        attributes=key_values(span.attributes),
                        resource=resource,
                        scope=scope,
                        transport=transport,
                    )
                )
    return spans


def count_spans(request: trace_service_pb2.ExportTraceServiceRequest) -> int:
    """Cheap count: no Python object per span (the benchmark receives ~50k spans/s)."""
    return sum(
        len(scope_spans.spans)
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
    )


class OtlpReceiver:
    """OTLP/gRPC and OTLP/HTTP trace receiver on 127.0.0.1, restartable on the same ports.

    `decode=False` only counts spans and requests (for the benchmark).
    Thread-safe: both servers handle requests on their own threads.
    """

    def __init__(
        self,
        *,
        grpc_port: int = 0,
        http_port: int = 0,
        decode: bool = True,
        tls: ReceiverTls | None = None,
    ) -> None:
        self._grpc_port = grpc_port
        self._http_port = http_port
        self._decode = decode
        self._tls = tls
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._stats = _Stats()
        self._spans: list[ReceivedSpan] = []
        self._requests: list[ReceivedRequest] = []
        self._grpc_server: grpc.Server | None = None
        self._http_server: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> OtlpReceiver:
        """Start both servers; after a stop, on the same ports as before."""
        if self._grpc_server is None:
            self._start_grpc()
        if self._http_server is None:
            self._start_http()
        return self

    def stop(self) -> None:
        """Stop both servers (in-flight calls are cancelled). What was received is kept."""
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=None).wait()
            self._grpc_server = None
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_server = None
        if self._http_thread is not None:
            self._http_thread.join()
            self._http_thread = None

    def _start_grpc(self) -> None:
        # so_reuseport off: a restarted receiver must own its port, never share it.
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4),
            options=[("grpc.so_reuseport", 0)],
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), server)
        credentials = None
        if self._tls is not None:
            credentials = grpc.ssl_server_credentials(
                [(self._tls.key, self._tls.cert_chain)],
                root_certificates=self._tls.client_ca,
                require_client_auth=self._tls.client_ca is not None,
            )
        port = _bind_grpc(server, self._grpc_port, credentials)
        server.start()
        self._grpc_port = port
        self._grpc_server = server

    def _start_http(self) -> None:
        server = _bind_http(self._http_port, self)
        if self._tls is not None:
            server.socket = _server_ssl_context(self._tls).wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._http_port = server.server_address[1]
        self._http_server = server
        self._http_thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._http_thread.start()

    # -- where to send --------------------------------------------------------------

    @property
    def grpc_port(self) -> int:
        return self._grpc_port

    @property
    def http_port(self) -> int:
        return self._http_port

    @property
    def scheme(self) -> str:
        return "https" if self._tls is not None else "http"

    @property
    def grpc_endpoint(self) -> str:
        return f"{self.scheme}://{HOST}:{self._grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """Base URL, as OTEL_EXPORTER_OTLP_ENDPOINT takes it (the exporter adds /v1/traces)."""
        return f"{self.scheme}://{HOST}:{self._http_port}"

    def endpoint(self, protocol: str) -> str:
        """The endpoint for an OTLP protocol name: `grpc` or `http/protobuf`."""
        return self.grpc_endpoint if protocol == "grpc" else self.http_endpoint

    # -- what arrived ---------------------------------------------------------------

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def span_count(self) -> int:
        with self._lock:
            return self._stats.spans

    def stats(self) -> dict[str, int]:
        with self._lock:
            return self._stats.as_dict()

    def clear(self) -> None:
        with self._lock:
            self._stats = _Stats()
            self._spans.clear()
            self._requests.clear()

    async def wait_for_spans(self, count: int, within: float = 10.0) -> list[ReceivedSpan]:
        """Wait until at least `count` spans have arrived; fail the test if not in time."""
        return await asyncio.to_thread(self.wait_for_spans_blocking, count, within)

    def wait_for_spans_blocking(self, count: int, within: float = 10.0) -> list[ReceivedSpan]:
        """`wait_for_spans` for synchronous callers (e.g. a test driving a subprocess)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: self._stats.spans >= count, timeout=within):
                raise AssertionError(
                    f"OTLP receiver got {self._stats.spans} spans within {within}s, "
                    f"expected at least {count}"
                )
            return list(self._spans)

    # -- called by the servers --------------------------------------------------------

    def record(self, payload: bytes, transport: str, headers: Mapping[str, str]) -> None:
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(payload)
        self.record_request(request, len(payload), transport, headers)

    def record_request(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        size: int,
        transport: str,
        headers: Mapping[str, str],
    ) -> None:
        decoded = decode_spans(request, transport) if self._decode else []
        count = len(decoded) if self._decode else count_spans(request)
        with self._lock:
            self._stats.spans += count
            self._stats.requests += 1
            self._stats.bytes += size
            if self._decode:
                self._spans.extend(decoded)
                self._requests.append(ReceivedRequest(transport, dict(headers), count))
            self._arrived.notify_all()


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        metadata = {key.lower(): str(value) for key, value in context.invocation_metadata()}
        self._receiver.record_request(request, request.ByteSize(), "grpc", metadata)
        return trace_service_pb2.ExportTraceServiceResponse()


def _bind_grpc(server: grpc.Server, port: int, credentials: Any = None) -> int:
    # Right after a stop the port can still be held for a moment: retry briefly.
    deadline = time.monotonic() + 5.0
    while True:
        try:
            address = f"{HOST}:{port}"
            bound: int = (
                server.add_secure_port(address, credentials)
                if credentials is not None
                else server.add_insecure_port(address)
            )
        except RuntimeError:
            bound = 0
        if bound:
            return bound
        if time.monotonic() > deadline:
            raise RuntimeError(f"OTLP receiver: cannot bind gRPC port {HOST}:{port}")
        time.sleep(0.05)


def _bind_http(port: int, receiver: OtlpReceiver) -> ThreadingHTTPServer:
    deadline = time.monotonic() + 5.0
    handler = type("Handler", (_HttpHandler,), {"receiver": receiver})
    while True:
        try:
            server = ThreadingHTTPServer((HOST, port), handler)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        server.daemon_threads = True
        return server


def _server_ssl_context(tls: ReceiverTls) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as folder:  # load_cert_chain reads files only
        chain, key = os.path.join(folder, "chain.pem"), os.path.join(folder, "key.pem")
        with open(chain, "wb") as file:
            file.write(tls.cert_chain)
        with open(key, "wb") as file:
            file.write(tls.key)
        context.load_cert_chain(chain, key)
    if tls.client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=tls.client_ca.decode())
    return context


class _HttpHandler(BaseHTTPRequestHandler):
    receiver: OtlpReceiver
    protocol_version = "HTTP/1.1"  # keep-alive, as the exporter's aiohttp session expects

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path.split("?")[0] != "/v1/traces":
            self._reply(HTTPStatus.NOT_FOUND, b"", "text/plain")
            return
        if self.headers.get_content_type() != PROTOBUF:
            self._reply(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, b"", "text/plain")
            return
        try:
            payload = _decompress(body, self.headers.get("Content-Encoding", ""))
            headers = {key.lower(): value for key, value in self.headers.items()}
            self.receiver.record(payload, "http", headers)
        except Exception as error:  # a bad body is the exporter's bug: answer 400, say why
            self._reply(HTTPStatus.BAD_REQUEST, str(error).encode(), "text/plain")
            return
        response = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self._reply(HTTPStatus.OK, response, PROTOBUF)

    def do_GET(self) -> None:
        if self.path != "/stats":
            self._reply(HTTPStatus.NOT_FOUND, b"", "text/plain")
            return
        self._reply(HTTPStatus.OK, json.dumps(self.receiver.stats()).encode(), "application/json")

    def _reply(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests and the benchmark read stdout


def _decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding in ("", "identity"):
        return body
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


# -- pytest fixtures ----------------------------------------------------------------------


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A started OTLP receiver (gRPC and HTTP), stopped after the test."""
    receiver = OtlpReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def otlp_http_receiver(otlp_receiver: OtlpReceiver) -> OtlpReceiver:
    """The same receiver, named for tests about OTLP/HTTP (`.http_endpoint`)."""
    return otlp_receiver


# -- standalone ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Count OTLP spans received over gRPC and HTTP.")
    parser.add_argument("--grpc-port", type=int, default=0)
    parser.add_argument("--http-port", type=int, default=0)
    parser.add_argument("--stats-file", help="write the final counts here as JSON at exit")
    args = parser.parse_args(argv)

    receiver = OtlpReceiver(grpc_port=args.grpc_port, http_port=args.http_port, decode=False)
    receiver.start()
    print(f"ready grpc={receiver.grpc_endpoint} http={receiver.http_endpoint}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, lambda *_: print(json.dumps(receiver.stats()), flush=True))
    while not stop.wait(0.2):
        pass

    receiver.stop()
    final = json.dumps(receiver.stats())
    print(final, flush=True)
    if args.stats_file:
        with open(args.stats_file, "w", encoding="utf-8") as file:
            file.write(final + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
