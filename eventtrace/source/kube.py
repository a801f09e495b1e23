"""Access to the Kubernetes API: kubeconfig or in-cluster credentials through
kubernetes-asyncio's ApiClient, but raw JSON in and out (its typed models are slow and
reject real events, e.g. `eventTime: null` through events.k8s.io/v1)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client.api_client import ApiClient
from kubernetes_asyncio.client.configuration import Configuration
from kubernetes_asyncio.config.config_exception import ConfigException
from kubernetes_asyncio.config.kube_config import KUBE_CONFIG_DEFAULT_LOCATION
from yarl import URL

# aiohttp's read buffer per response (it stops reading the socket past twice this), as
# kubernetes-asyncio sets it.
READ_BUFFER_BYTES = 2**21
# The longest watch frame accepted: an object is at most ~1.5 MiB in etcd; its JSON with
# escapes fits well within this.
MAX_FRAME_BYTES = 2**25
STREAM_READ_BYTES = 2**16  # what a watch stream reads at a time, at most


@dataclass(frozen=True, slots=True)
class Resource:
    """An API resource, as discovery names it."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def label(self) -> str:
        """`deployments.apps`, as RBAC messages and kubectl name resources."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def collection(self, namespace: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace and self.namespaced:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"

    def item(self, namespace: str, name: str) -> str:
        return f"{self.collection(namespace if self.namespaced else None)}/{name}"


CORE_EVENTS = Resource("", "v1", "events", "Event", True)
EVENTS_V1 = Resource("events.k8s.io", "v1", "events", "Event", True)
# The kinds that own most event-bearing objects: kept in memory from a watch each.
WORKLOADS = (
    Resource("", "v1", "pods", "Pod", True),
    Resource("apps", "v1", "replicasets", "ReplicaSet", True),
    Resource("apps", "v1", "deployments", "Deployment", True),
    Resource("apps", "v1", "statefulsets", "StatefulSet", True),
    Resource("apps", "v1", "daemonsets", "DaemonSet", True),
    Resource("batch", "v1", "jobs", "Job", True),
    Resource("batch", "v1", "cronjobs", "CronJob", True),
    Resource("", "v1", "nodes", "Node", False),
)


class ApiError(Exception):
    """The API server answered with an error Status."""

    def __init__(
        self, status: int, reason: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        return self.status == 429 or self.status >= 500


class Expired(ApiError):
    """410: the resourceVersion (or continue token) is too old. Re-list."""


class StreamStalled(Exception):
    """A watch stream said nothing for longer than the inactivity limit."""


class KubeConfigError(Exception):
    """No usable credentials: the message says what and what to do."""


# What reaching the API server can fail with, apart from an error Status.
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, OSError)


async def load_client(kubeconfig: str | None, context: str | None) -> tuple[ApiClient, str]:
    """An ApiClient from --kubeconfig, $KUBECONFIG, ~/.kube/config, else the pod's service
    account. Returns it with a description of where the credentials came from."""
    configuration = Configuration()
    chosen = _kubeconfig_path(kubeconfig)
    try:
        if chosen is None:
            kube_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
            source = "in-cluster service account"
        else:
            await kube_config.load_kube_config(
                config_file=chosen,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
            source = f"kubeconfig {chosen}" + (f" (context {context})" if context else "")
    except ConfigException as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "invalid"
        raise KubeConfigError(f"cannot use the Kubernetes credentials: {first_line}") from None
    client = ApiClient(configuration)
    _read_the_environment_once(client)
    return client, source


def _read_the_environment_once(client: ApiClient) -> None:
    """kubernetes-asyncio's session trusts the environment, so before every request
    aiohttp reads ~/.netrc and the proxy variables in a worker thread: two hops to a thread
    that must wait for the interpreter lock while the loop is busy, so a request made while
    events are being handled (the next page of a list) did not leave until they were; and
    a netrc entry for the server's host failed every request (it clashes with the token).
    As kubectl does, read HTTPS_PROXY / NO_PROXY once and no netrc. A kubeconfig's
    proxy-url still comes first."""
    rest = client.rest_client
    if not rest.proxy:
        with contextlib.suppress(LookupError):
            proxy, auth = get_env_proxy_for_url(URL(str(client.configuration.host)))
            rest.proxy = str(proxy)
            if auth is not None:
                rest.proxy_headers = {"Proxy-Authorization": auth.encode()}
    trusting = rest.pool_manager
    connector = trusting.connector
    trusting.detach()  # keeps the connector (TLS settings, pool) for the new session
    rest.pool_manager = aiohttp.ClientSession(
        connector=connector, trust_env=False, read_bufsize=READ_BUFFER_BYTES
    )


def _kubeconfig_path(flag: str | None) -> str | None:
    """The kubeconfig to use, or None for in-cluster credentials."""
    given = flag or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    default = Path(os.path.expanduser(KUBE_CONFIG_DEFAULT_LOCATION))
    if given is None and not default.exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    chosen = given or str(default)
    if not Path(chosen).exists():
        raise KubeConfigError(
            f"kubeconfig {chosen} not found: pass --kubeconfig FILE or set KUBECONFIG "
            "(or run in a pod with a service account)"
        )
    return chosen


class KubeApi:
    """GET and watch of raw JSON over an authenticated ApiClient."""

    def __init__(self, client: ApiClient, request_timeout: float = 30.0) -> None:
        self.client = client
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)

    @property
    def server(self) -> str:
        return str(self.client.configuration.host)

    async def get(self, path: str, query: dict[str, str] | None = None) -> Any:
        return orjson.loads(await self.get_bytes(path, query))

    async def get_bytes(self, path: str, query: dict[str, str] | None = None) -> bytes:
        """The body of a successful GET, as bytes: the caller reads it (see frames.py)."""
        response = await self._request(path, query, self._timeout)
        try:
            body = await response.read()
            if response.status >= 400:
                raise _api_error(response, body)
            return body
        finally:
            response.release()

    async def stream(
        self, path: str, query: dict[str, str], *, inactivity: float, deadline: float
    ) -> AsyncIterator[list[bytes]]:
        """The lines of a watch response, as they arrive, in batches: first an empty batch
        once the server has accepted the watch, then the whole lines each read brought."""
        # aiohttp's sock_read watches for silence per read of the socket, which costs
        # nothing per line (a timeout around each readline costs a timer per event).
        timeout = aiohttp.ClientTimeout(total=deadline, sock_connect=30, sock_read=inactivity)
        response = await self._request(path, query, timeout)
        try:
            if response.status >= 400:
                raise _api_error(response, await response.read())
            yield []
            # Split here rather than by readline: one await per 64 KB read (~60 frames),
            # not one per frame (readline's search and an async step per line cost ~5 %
            # of a live watch's CPU). Not all that is buffered at once: a batch of
            # megabytes, copied twice to split it, left 17 MB more at the peak.
            started: list[bytes] = []  # a frame's first pieces, until its newline comes
            started_bytes = 0
            while True:
                try:
                    data = await response.content.read(STREAM_READ_BYTES)
                except aiohttp.ServerTimeoutError:
                    raise StreamStalled(f"no data for {inactivity:.0f}s") from None
                if not data:
                    if started:
                        yield [b"".join(started)]  # the last frame, its newline never sent
                    return
                if b"\n" not in data:  # inside a long frame: joined once, when it ends
                    started.append(data)
                    started_bytes += len(data)
                    if started_bytes > MAX_FRAME_BYTES:
                        raise aiohttp.ClientPayloadError(
                            f"a watch frame longer than {MAX_FRAME_BYTES} bytes without a newline"
                        )
                    continue
                if started:
                    started.append(data)
                    data = b"".join(started)
                lines = data.split(b"\n")
                rest = lines.pop()
                started, started_bytes = ([rest], len(rest)) if rest else ([], 0)
                yield lines
        finally:
            response.close()

    async def close(self) -> None:
        await self.client.close()

    async def _request(
        self, path: str, query: dict[str, str] | None, limits: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        response: aiohttp.ClientResponse = await self.client.call_api(
            path,
            "GET",
            query_params=list((query or {}).items()),
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=limits,
        )
        return response


def _api_error(response: aiohttp.ClientResponse, body: bytes) -> ApiError:
    try:
        status = orjson.loads(body)
    except orjson.JSONDecodeError:
        status = {}
    if not isinstance(status, dict):
        status = {}
    code = int(status.get("code") or response.status)
    reason = str(status.get("reason") or response.reason or "")
    message = str(status.get("message") or body[:200].decode("utf-8", "replace")).strip()
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    kind = Expired if code == 410 else ApiError
    return kind(code, reason, message, retry_after)


def error_from_status(status: Any) -> ApiError:
    """An in-stream ERROR frame's Status. Key on `code`: old servers said "Gone"."""
    if not isinstance(status, dict):
        return ApiError(500, "InternalError", f"watch ERROR with no Status: {status!r}"[:200])
    code = int(status.get("code") or 500)
    kind = Expired if code == 410 else ApiError
    return kind(code, str(status.get("reason") or ""), str(status.get("message") or ""))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    from datetime import UTC, datetime

    return max(0.0, (moment - datetime.now(UTC)).total_seconds())
