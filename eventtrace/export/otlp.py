"""OTLP export: spans to Jaeger or any OTLP backend, over gRPC or HTTP/protobuf.

Two narrow exporters for the Batcher (batcher.py), both sending the bytes of our own
encoder (protobuf.py), made on the event loop, through public interfaces only: gRPC as
TraceService/Export on a `grpc.aio` channel, HTTP as an aiohttp POST.

Configuration follows the standard variables (the OpenTelemetry spec), each
`OTEL_EXPORTER_OTLP_TRACES_*` one before its `OTEL_EXPORTER_OTLP_*` twin: ENDPOINT,
PROTOCOL (grpc, the default, or http/protobuf), HEADERS, INSECURE, CERTIFICATE,
CLIENT_KEY and CLIENT_CERTIFICATE, COMPRESSION (gzip or none), TIMEOUT (seconds, as the
Python SDK and our chart read it). `--otlp-endpoint` / `--otlp-protocol` override
endpoint and protocol. They are read once at start; a bad value is a SettingsError
naming the variable.

Endpoints: for gRPC, `http://host:port` is plaintext, `https://host:port` TLS, and a
scheme-less `host:port` TLS unless INSECURE=true. For HTTP, `/v1/traces` is appended to
OTEL_EXPORTER_OTLP_ENDPOINT (and to --otlp-endpoint, unless already there), while
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is the URL to post to, verbatim.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import ssl
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import grpc
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_CERTIFICATE,
    OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_CLIENT_KEY,
    OTEL_EXPORTER_OTLP_COMPRESSION,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_INSECURE,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TIMEOUT,
    OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
    OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
    OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    OTEL_EXPORTER_OTLP_TRACES_INSECURE,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
)
from opentelemetry.util.re import parse_env_headers

from eventtrace.core.model import Span
from eventtrace.export.protobuf import SpanEncoder
from eventtrace.settings import Settings, SettingsError

log = logging.getLogger(__name__)

GRPC = "grpc"
HTTP_PROTOBUF = "http/protobuf"
PROTOCOLS = (GRPC, HTTP_PROTOBUF)
TRACES_PATH = "/v1/traces"
EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"
DEFAULT_HTTP_ENDPOINT = "http://localhost:4318"
DEFAULT_TIMEOUT = 10.0
# gzip level 1: a batch shrinks ~9x for ~1.5 µs a span; level 6 saves 15 % more bytes
# for three times the CPU (measured on 50 000 event spans).
GZIP_LEVEL = 1
# gRPC's own reconnect backoff grows to 2 minutes by default: while it waits, every call
# fails at once, long after the backend is back. The Batcher's retries set the pace.
GRPC_OPTIONS = (("grpc.max_reconnect_backoff_ms", 5_000),)


def _version() -> str:
    try:
        return metadata.version("eventtrace")
    except metadata.PackageNotFoundError:
        return ""


SCOPE_NAME = "eventtrace"
SCOPE_VERSION = _version()
USER_AGENT = f"eventtrace/{SCOPE_VERSION or 'dev'}"


# -- the exporters ------------------------------------------------------------------------


class GrpcExporter:
    """OTLP/gRPC: each batch one TraceService/Export call with our encoding as its bytes.

    The channel is opened at the first export, on the running event loop."""

    protocol = GRPC

    def __init__(
        self,
        target: str,
        *,
        credentials: Any = None,
        headers: Mapping[str, str] | None = None,
        compress: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """`target` is host:port; `credentials` (grpc.ChannelCredentials) means TLS."""
        self.endpoint = f"{'https' if credentials is not None else 'http'}://{target}"
        self._target = target
        self._credentials = credentials
        self._metadata = tuple((headers or {}).items())
        self._compression = grpc.Compression.Gzip if compress else grpc.Compression.NoCompression
        self._timeout = timeout
        self._encoder = SpanEncoder(SCOPE_NAME, SCOPE_VERSION)
        self._channel: Any = None
        self._export: Any = None

    def describe(self) -> str:
        return self.endpoint

    async def export(self, spans: Sequence[Span]) -> bool:
        # Encoded here on the loop, ~5 ms for 500 spans: in a thread it would only take
        # turns with the loop for the GIL (measured: 20 % more CPU for the whole run).
        payload = self._encoder.encode(spans)
        if self._export is None:
            self._connect()
        try:
            response = await self._export(payload, timeout=self._timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as error:
            log.warning(
                "OTLP export to %s failed: %s %s", self.endpoint, error.code().name, error.details()
            )
            return False
        _log_partial_success(response, self.endpoint)
        return True

    def _connect(self) -> None:
        options = (("grpc.primary_user_agent", USER_AGENT), *GRPC_OPTIONS)
        if self._credentials is None:
            self._channel = grpc.aio.insecure_channel(
                self._target, options=options, compression=self._compression
            )
        else:
            self._channel = grpc.aio.secure_channel(
                self._target, self._credentials, options=options, compression=self._compression
            )
        self._export = self._channel.unary_unary(
            EXPORT_METHOD,
            request_serializer=None,  # the request is its bytes already
            response_deserializer=ExportTraceServiceResponse.FromString,
        )

    async def shutdown(self) -> None:
        channel, self._channel, self._export = self._channel, None, None
        if channel is not None:
            await channel.close()  # cancels calls still running


class HttpExporter:
    """OTLP/HTTP: each batch a POST of our encoding, application/x-protobuf.

    The session is opened at the first export, on the running event loop."""

    protocol = HTTP_PROTOBUF

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        headers: Mapping[str, str] | None = None,
        compress: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """`url` is where to post (…/v1/traces); `ssl_context` for a private CA or a
        client certificate (else https:// verifies against the system's CAs)."""
        self.endpoint = url
        self._headers = {"content-type": "application/x-protobuf", "user-agent": USER_AGENT}
        self._headers.update({name.lower(): value for name, value in (headers or {}).items()})
        if compress:
            self._headers["content-encoding"] = "gzip"
        self._compress = compress
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._encoder = SpanEncoder(SCOPE_NAME, SCOPE_VERSION)
        self._session: aiohttp.ClientSession | None = None

    def describe(self) -> str:
        return self.endpoint

    async def export(self, spans: Sequence[Span]) -> bool:
        payload = self._encoder.encode(spans)
        if self._compress:
            payload = gzip.compress(payload, compresslevel=GZIP_LEVEL, mtime=0)
        if self._session is None:
            # trust_env: HTTPS_PROXY / NO_PROXY, as the SDK's exporter (requests) did.
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(ssl=self._ssl),
                trust_env=True,
            )
        try:
            async with self._session.post(self.endpoint, data=payload) as response:
                body = await response.read()
                status, content_type = response.status, response.content_type
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            reason = str(error) or type(error).__name__  # a timeout says nothing itself
            log.warning("OTLP export to %s failed: %s", self.endpoint, reason)
            return False
        if not 200 <= status < 300:
            text = body[:200].decode(errors="replace").strip()
            log.warning("OTLP export to %s failed: HTTP %d %s", self.endpoint, status, text)
            return False
        if body and content_type == "application/x-protobuf":
            # Delivered either way; an unreadable answer only loses the backend's note.
            with contextlib.suppress(DecodeError):
                _log_partial_success(ExportTraceServiceResponse.FromString(body), self.endpoint)
        return True

    async def shutdown(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _log_partial_success(response: ExportTraceServiceResponse, endpoint: str) -> None:
    rejected = response.partial_success.rejected_spans
    message = response.partial_success.error_message
    if rejected or message:
        log.warning("OTLP backend %s rejected %d spans: %s", endpoint, rejected, message)


# -- configuration ------------------------------------------------------------------------


def otlp_exporter(
    settings: Settings, environ: Mapping[str, str] = os.environ
) -> GrpcExporter | HttpExporter:
    """The exporter the settings and OTEL_EXPORTER_OTLP_* variables ask for."""
    protocol = resolve_protocol(settings.otlp_protocol, environ)
    headers = _headers(environ)
    compress = _compression(environ)
    timeout = _timeout(environ)
    if protocol == GRPC:
        target, tls = grpc_target(settings.otlp_endpoint, environ)
        return GrpcExporter(
            target,
            credentials=_grpc_credentials(environ) if tls else None,
            headers=headers,
            compress=compress,
            timeout=timeout,
        )
    url = http_url(settings.otlp_endpoint, environ)
    return HttpExporter(
        url,
        ssl_context=_ssl_context(environ) if url.startswith("https:") else None,
        headers=headers,
        compress=compress,
        timeout=timeout,
    )


_Found = tuple[str, str] | None  # (variable, value)


def _lookup(environ: Mapping[str, str], *names: str) -> _Found:
    """The first of these variables set to something, as (name, value)."""
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return None


def resolve_protocol(flag: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """--otlp-protocol, else the traces variable, else the general one, else grpc."""
    found = (
        ("--otlp-protocol", flag.strip())
        if flag and flag.strip()
        else _lookup(environ, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL)
    )
    if found is None:
        return GRPC
    source, value = found
    if value.lower() not in PROTOCOLS:
        raise SettingsError(
            f"{source}: OTLP protocol {value!r} is not supported (use {' or '.join(PROTOCOLS)})"
        )
    return value.lower()


def grpc_target(flag: str | None, environ: Mapping[str, str] = os.environ) -> tuple[str, bool]:
    """(host:port, TLS?) for gRPC: http:// is plaintext, https:// TLS, and no scheme
    TLS unless OTEL_EXPORTER_OTLP_(TRACES_)INSECURE=true."""
    insecure = _lookup(environ, OTEL_EXPORTER_OTLP_TRACES_INSECURE, OTEL_EXPORTER_OTLP_INSECURE)
    plaintext = insecure is not None and _flag(*insecure)
    if flag and flag.strip():
        source, value = "--otlp-endpoint", flag.strip()
    else:
        source, value = _lookup(
            environ, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT
        ) or ("the default endpoint", DEFAULT_GRPC_ENDPOINT)
    if "://" in value:
        parts = urlsplit(value)
        target, tls = parts.netloc, parts.scheme == "https"
        _check_address(source, value, value)
    else:
        target, tls = value.rstrip("/"), not plaintext
        _check_address(source, value, f"http://{target}")
    return target, tls


def http_url(flag: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The URL to post to: a base URL (--otlp-endpoint, OTEL_EXPORTER_OTLP_ENDPOINT) with
    /v1/traces appended, or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as it is."""
    traces = _lookup(environ, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
    if flag and flag.strip():
        source, value = "--otlp-endpoint", flag.strip()
        url = http_traces_url(value)
    elif traces is not None:
        source, value = traces
        url = value
    else:
        source, value = _lookup(environ, OTEL_EXPORTER_OTLP_ENDPOINT) or (
            "the default endpoint",
            DEFAULT_HTTP_ENDPOINT,
        )
        url = value.rstrip("/") + TRACES_PATH
    _check_address(source, value, url)
    return url


def http_traces_url(endpoint: str) -> str:
    """A base URL as --otlp-endpoint takes it → the traces URL: `http://` if it has no
    scheme, `/v1/traces` appended unless it is already there."""
    url = endpoint.strip()
    if "://" not in url:
        url = f"http://{url}"
    url = url.rstrip("/")
    return url if url.endswith(TRACES_PATH) else url + TRACES_PATH


def _check_address(source: str, value: str, url: str) -> None:
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        raise SettingsError(f"{source}: {value!r} has no valid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            f"{source}: {value!r} is not an OTLP endpoint (http://host:port or https://host:port)"
        )


def _headers(environ: Mapping[str, str]) -> dict[str, str]:
    found = _lookup(environ, OTEL_EXPORTER_OTLP_TRACES_HEADERS, OTEL_EXPORTER_OTLP_HEADERS)
    if found is None:
        return {}
    name, value = found
    for item in value.split(","):
        if item.strip() and "=" not in item:
            raise SettingsError(f"{name}: {item.strip()!r} is not name=value")
    return dict(parse_env_headers(value, liberal=True))


def _flag(name: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise SettingsError(f"{name}: {value!r} is not true or false")
    return value.lower() == "true"


def _compression(environ: Mapping[str, str]) -> bool:
    found = _lookup(environ, OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, OTEL_EXPORTER_OTLP_COMPRESSION)
    if found is None or found[1].lower() == "none":
        return False
    if found[1].lower() == "gzip":
        return True
    raise SettingsError(f"{found[0]}: compression {found[1]!r} is not supported (use gzip or none)")


def _timeout(environ: Mapping[str, str]) -> float:
    found = _lookup(environ, OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, OTEL_EXPORTER_OTLP_TIMEOUT)
    if found is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(found[1])
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise SettingsError(f"{found[0]}: {found[1]!r} is not a number of seconds above 0")
    return seconds


def _tls_files(environ: Mapping[str, str]) -> tuple[_Found, _Found, _Found]:
    """(CA, client certificate, client key) as (variable, path) where set."""
    ca = _lookup(environ, OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE, OTEL_EXPORTER_OTLP_CERTIFICATE)
    cert = _lookup(
        environ, OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE
    )
    key = _lookup(environ, OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY, OTEL_EXPORTER_OTLP_CLIENT_KEY)
    if cert is not None and key is None:
        raise SettingsError(f"{cert[0]} is set but not {OTEL_EXPORTER_OTLP_CLIENT_KEY}")
    if key is not None and cert is None:
        raise SettingsError(f"{key[0]} is set but not {OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE}")
    return ca, cert, key


def _ssl_context(environ: Mapping[str, str]) -> ssl.SSLContext:
    """TLS for the backend: the system's CAs or the given one, and a client certificate;
    a file that cannot be read or used is a SettingsError naming its variable."""
    ca, cert, key = _tls_files(environ)
    try:  # a CA given is the only one trusted, as with gRPC's root_certificates
        context = ssl.create_default_context(cafile=ca[1] if ca else None)
    except OSError as error:
        assert ca is not None  # without a file, only the system's CAs are loaded
        raise SettingsError(f"{ca[0]}: {_file_error(ca[1], error)}") from None
    if cert is not None and key is not None:
        try:
            # No password: an encrypted key fails here rather than prompting on a terminal.
            context.load_cert_chain(cert[1], key[1], password=lambda: b"")
        except OSError as error:
            names = f"{cert[0]}, {key[0]}"
            raise SettingsError(f"{names}: {_file_error(f'{cert[1]}, {key[1]}', error)}") from None
    return context


def _grpc_credentials(environ: Mapping[str, str]) -> Any:
    """grpc.ChannelCredentials from the same files, checked as _ssl_context does."""
    _ssl_context(environ)
    ca, cert, key = _tls_files(environ)
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca),
        private_key=_read(key),
        certificate_chain=_read(cert),
    )


def _read(found: _Found) -> bytes | None:
    if found is None:
        return None
    try:
        with open(found[1], "rb") as file:
            return file.read()
    except OSError as error:
        raise SettingsError(f"{found[0]}: {_file_error(found[1], error)}") from None


def _file_error(path: str, error: OSError) -> str:
    if isinstance(error, ssl.SSLError):
        return f"{path}: not a usable PEM certificate or key ({error.reason or error})"
    return f"cannot read {path} ({error.strerror or error})"
