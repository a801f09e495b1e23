"""Access to the Kubernetes API: kubeconfig or in-cluster credentials through
kubernetes-asyncio's ApiClient, but raw JSON in and out (its typed models are slow and
reject real events, e.g. `eventTime: null` through events.k8s.io/v1).

Credentials are read again, as kubectl does, when the API server rejects them (401: a
rotated token, a token file rewritten) and before an exec plugin's token expires; a
kubeconfig that cannot be used is said in one line (`KubeConfigError`)."""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import logging
import os
import ssl
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client.api_client import ApiClient
from kubernetes_asyncio.client.configuration import Configuration
from kubernetes_asyncio.config.config_exception import ConfigException
from kubernetes_asyncio.config.kube_config import KUBE_CONFIG_DEFAULT_LOCATION
from yarl import URL

from eventtrace.source.files import load_yaml
from eventtrace.source.frames import JSON, MAX_BYTES, Undecodable, loads, split_list

log = logging.getLogger("eventtrace.kube")

# aiohttp's read buffer per response (it stops reading the socket past twice this), as
# kubernetes-asyncio sets it.
READ_BUFFER_BYTES = 2**21
# The longest watch frame kept: an object is at most ~1.5 MiB in etcd; its JSON with
# escapes fits well within this. A longer one is dropped as it streams in (`Oversized`).
MAX_FRAME_BYTES = MAX_BYTES
STREAM_READ_BYTES = 2**16  # what a watch stream reads at a time, at most
# Credentials are read again at most this often (a 401 to every watch at once runs an exec
# plugin once), and this long before an exec plugin's token expires.
REREAD_SECONDS = 5.0
EXPIRY_MARGIN_SECONDS = 60.0


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


class UnreadableResponse(ApiError):
    """A successful answer whose body cannot be decoded (too deep, not UTF-8, not JSON):
    a fault of the server's, as a 5xx is."""

    def __init__(self, path: str, problem: Undecodable) -> None:
        super().__init__(500, "UnreadableResponse", f"GET {path}: {problem.detail}")


class StreamStalled(Exception):
    """A watch stream said nothing for longer than the inactivity limit."""


class KubeConfigError(Exception):
    """No usable credentials: the message, one line, says what and what to do."""


class Oversized(bytes):
    """In a watch stream's lines, in the place of a frame too long to keep: its first
    bytes (whatever they say, as its resourceVersion), and how long it was."""

    size: int

    def __new__(cls, head: bytes, size: int) -> Oversized:
        line = super().__new__(cls, head)
        line.size = size
        return line


# What reaching the API server can fail with, apart from an error Status.
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, OSError)


async def load_client(kubeconfig: str | None, context: str | None) -> tuple[ApiClient, str]:
    """An ApiClient from --kubeconfig, $KUBECONFIG, ~/.kube/config, else the pod's service
    account. Returns it with a description of where the credentials came from. The
    client's `Credentials` are kept, for `KubeApi` to read them again."""
    credentials = Credentials(_kubeconfig_path(kubeconfig), context)
    configuration = Configuration()
    await credentials.load(configuration)
    try:
        client = ApiClient(configuration)
    except (ssl.SSLError, OSError, ValueError) as error:  # its TLS files: read here
        what = f"cannot use its TLS certificates or keys ({_said(error)})"
        raise credentials.error(what) from None
    _CREDENTIALS[client] = credentials
    _read_the_environment_once(client)
    return client, credentials.source


# The credentials of each client `load_client` made.
_CREDENTIALS: weakref.WeakKeyDictionary[ApiClient, Credentials] = weakref.WeakKeyDictionary()


class Credentials:
    """Where a client's credentials come from, to read them again: a kubeconfig (its
    token, token file or exec plugin) or, with `kubeconfig` None, the pod's service
    account. Loading again is what kubernetes-asyncio's loaders need to see a rewritten
    file, and to run an exec plugin again."""

    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self.expires: float | None = None  # when (time.time()) the token expires, if said

    @property
    def source(self) -> str:
        if self.kubeconfig is None:
            return "in-cluster service account"
        return f"kubeconfig {self.kubeconfig}" + (
            f" (context {self.context})" if self.context else ""
        )

    def error(self, what: str) -> KubeConfigError:
        return KubeConfigError(f"cannot use the Kubernetes credentials: {self.source}: {what}")

    async def load(self, configuration: Configuration) -> None:
        """Read them (again) into `configuration`; KubeConfigError if they are unusable."""
        if self.kubeconfig is None:
            try:
                kube_config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
            except (ConfigException, OSError) as error:
                raise self.error(_said(error)) from None
            return
        _check_kubeconfig(self.kubeconfig, self.context, self.error)
        try:
            # Its loader logs an exec plugin's failure before raising it: one line is enough.
            with _silenced("kubernetes_asyncio.config.kube_config"):
                loader = await kube_config.load_kube_config(
                    config_file=self.kubeconfig,
                    context=self.context,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except Exception as error:  # whatever the library raises: said in one line
            raise self.error(_said(error)) from None
        expiry = getattr(loader, "exec_plugin_expiry", None)
        self.expires = expiry.timestamp() if isinstance(expiry, datetime) else None


def _check_kubeconfig(path: str, context: str | None, error: Any) -> None:
    """Say what makes a kubeconfig unusable before kubernetes-asyncio reads it: its own
    failures are tracebacks (a file that is no mapping is a TypeError), and its YAML
    reader recurses. `error(what)` makes the exception."""
    try:
        data = Path(path).read_bytes()
    except OSError as failed:
        raise error(f"cannot read it ({failed.strerror})") from None
    if len(data) > MAX_BYTES:
        raise error(f"{len(data)} bytes: not a kubeconfig")
    try:
        config = load_yaml(data.decode("utf-8"))
    except UnicodeDecodeError as failed:
        raise error(f"not UTF-8 text (byte {failed.start})") from None
    except Undecodable as failed:
        raise error(failed.detail) from None
    except yaml.YAMLError as failed:
        mark = getattr(failed, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        said = getattr(failed, "problem", None) or "invalid"
        raise error(f"not valid YAML: {where}{said}") from None
    if not isinstance(config, dict):
        raise error(f"expected a mapping of clusters, contexts and users, got {_kind(config)}")
    named: dict[str, dict[Any, Any]] = {}
    for section, field in (("clusters", "cluster"), ("contexts", "context"), ("users", "user")):
        entries = config.get(section) or []
        if not isinstance(entries, list):
            raise error(f"{section} must be a list, not {_kind(entries)}")
        named[section] = {}
        for position, entry in enumerate(entries):
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not name:
                raise error(f"{section}[{position}] has no name")
            if not isinstance(entry.get(field), dict):
                raise error(f'{section}[{position}] ("{name}") has no {field} mapping')
            named[section][name] = entry[field]
    chosen = context or config.get("current-context")
    if not chosen:
        raise error("no current-context: pass --context NAME")
    if not isinstance(chosen, str):
        raise error(f"current-context must be a name, not {_kind(chosen)}")
    if chosen not in named["contexts"]:
        known = ", ".join(sorted(named["contexts"])) or "none"
        raise error(f'context "{chosen}" not found (contexts: {known})')
    chosen_context = named["contexts"][chosen]
    cluster = chosen_context.get("cluster")
    if not isinstance(cluster, str) or not cluster:
        raise error(f'context "{chosen}" names no cluster')
    if cluster not in named["clusters"]:
        raise error(f'context "{chosen}" names cluster "{cluster}", which is not in clusters')
    server = named["clusters"][cluster].get("server")
    if not isinstance(server, str) or not server:
        raise error(f'cluster "{cluster}" has no server')
    user = chosen_context.get("user")
    if user is not None and not isinstance(user, str):
        raise error(f'context "{chosen}" names its user with {_kind(user)}')
    if user and user not in named["users"]:
        raise error(f'context "{chosen}" names user "{user}", which is not in users')


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"a {type(value).__name__}"


def _said(error: BaseException) -> str:
    """An exception in one line."""
    if isinstance(error, binascii.Error):
        return f"data that is not base64 ({error})"
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    lines = str(error).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if isinstance(error, ConfigException):
        return text or "invalid"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@contextlib.contextmanager
def _silenced(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    was = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was


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

    def __init__(
        self,
        client: ApiClient,
        request_timeout: float = 30.0,
        credentials: Credentials | None = None,
    ) -> None:
        self.client = client
        # Where to read the credentials again: given, or what `load_client` made.
        self.credentials = credentials or _CREDENTIALS.get(client)
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        # Since when (time.monotonic()) the API server has answered 401 to everything,
        # reading the credentials again included; None while it accepts them.
        self.unauthorized_since: float | None = None
        self._reading = asyncio.Lock()
        self._read_at = -REREAD_SECONDS  # when (monotonic) they were last read again

    @property
    def server(self) -> str:
        return str(self.client.configuration.host)

    async def get(
        self, path: str, query: dict[str, str] | None = None, *, accept: str = JSON
    ) -> Any:
        """The decoded body of a successful GET; UnreadableResponse if it cannot be. Of a
        list, the items that cannot be decoded are left out (and logged): one bad object
        does not make a list unusable (watch.py counts them, reading pages itself)."""
        body = await self.get_bytes(path, query, accept=accept)
        try:
            return loads(body, bounded=False)
        except Undecodable as problem:
            try:
                top, items = split_list(body)
            except Undecodable:
                raise UnreadableResponse(path, problem) from None
            if not isinstance(top.get("items"), list):
                raise UnreadableResponse(path, problem) from None
        for position, (_, item) in enumerate(items):
            try:
                top["items"].append(loads(item))
            except Undecodable as skipped:
                log.debug("GET %s: left out item %d: %s", path, position, skipped.detail)
        return top

    async def get_bytes(
        self, path: str, query: dict[str, str] | None = None, *, accept: str = JSON
    ) -> bytes:
        """The body of a successful GET, as bytes: the caller reads it (see frames.py)."""
        response = await self._request(path, query, accept, self._timeout)
        try:
            body = await response.read()
            if response.status >= 400:
                raise _api_error(response, body)
            return body
        finally:
            response.release()

    async def stream(
        self,
        path: str,
        query: dict[str, str],
        *,
        inactivity: float,
        deadline: float,
        accept: str = JSON,
    ) -> AsyncIterator[list[bytes]]:
        """The lines of a watch response, as they arrive, in batches: first an empty batch
        once the server has accepted the watch, then the whole lines each read brought."""
        # aiohttp's sock_read watches for silence per read of the socket, which costs
        # nothing per line (a timeout around each readline costs a timer per event).
        timeout = aiohttp.ClientTimeout(total=deadline, sock_connect=30, sock_read=inactivity)
        response = await self._request(path, query, accept, timeout)
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
            head, dropped = b"", 0  # a frame too long to keep: its start, its length so far
            while True:
                try:
                    data = await response.content.read(STREAM_READ_BYTES)
                except aiohttp.ServerTimeoutError:
                    raise StreamStalled(f"no data for {inactivity:.0f}s") from None
                if not data:
                    if dropped:
                        yield [Oversized(head, dropped)]
                    elif started:
                        yield [b"".join(started)]  # the last frame, its newline never sent
                    return
                lines: list[bytes] = []
                if dropped:  # the rest of a frame too long to keep, up to its newline
                    cut = data.find(b"\n")
                    if cut < 0:
                        dropped += len(data)
                        continue
                    lines.append(Oversized(head, dropped + cut))
                    head, dropped, data = b"", 0, data[cut + 1 :]
                if b"\n" not in data:  # inside a long frame: joined once, when it ends
                    started.append(data)
                    started_bytes += len(data)
                    if started_bytes > MAX_FRAME_BYTES:  # dropped, not kept: the watch goes on
                        head, dropped = b"".join(started[:2])[:STREAM_READ_BYTES], started_bytes
                        started, started_bytes = [], 0
                    if lines:
                        yield lines
                    continue
                if started:
                    started.append(data)
                    data = b"".join(started)
                lines += data.split(b"\n")
                rest = lines.pop()
                started, started_bytes = ([rest], len(rest)) if rest else ([], 0)
                yield lines
        finally:
            response.close()

    async def close(self) -> None:
        await self.client.close()

    async def _request(
        self,
        path: str,
        query: dict[str, str] | None,
        accept: str,
        limits: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        """One request; on a 401, once more if the credentials, read again, changed."""
        expires = self.credentials.expires if self.credentials is not None else None
        if expires is not None and time.time() >= expires - EXPIRY_MARGIN_SECONDS:
            await self._read_credentials(self._token())  # before they expire
        token = self._token()
        response = await self._send(path, query, accept, limits)
        retry = response.status == 401 and self.credentials is not None
        if retry and await self._read_credentials(token):
            response.release()
            response = await self._send(path, query, accept, limits)
        if response.status != 401:
            self.unauthorized_since = None
        elif self.unauthorized_since is None:
            self.unauthorized_since = time.monotonic()
        return response

    async def _send(
        self,
        path: str,
        query: dict[str, str] | None,
        accept: str,
        limits: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        response: aiohttp.ClientResponse = await self.client.call_api(
            path,
            "GET",
            query_params=list((query or {}).items()),
            header_params={"Accept": accept},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=limits,
        )
        return response

    def _token(self) -> str | None:
        token = self.client.configuration.api_key.get("BearerToken")
        return str(token) if token is not None else None

    async def _read_credentials(self, rejected: str | None) -> bool:
        """Read the credentials again (unless they were, a moment ago); True if the token
        is no longer the one `rejected`."""
        assert self.credentials is not None
        async with self._reading:
            if self._token() != rejected:  # read again meanwhile, for another request
                return True
            if time.monotonic() - self._read_at < REREAD_SECONDS:
                return False
            self._read_at = time.monotonic()
            fresh = Configuration()
            try:
                await self.credentials.load(fresh)
            except KubeConfigError as error:
                log.warning("%s; keeping the credentials read before", error)
                return False
            configuration = self.client.configuration
            configuration.api_key = dict(fresh.api_key)
            configuration.api_key_prefix = dict(fresh.api_key_prefix)
            configuration.refresh_api_key_hook = fresh.refresh_api_key_hook
            changed = self._token() != rejected
            if changed:
                log.info("read the credentials again from %s: a new token", self.credentials.source)
            return changed


def _api_error(response: aiohttp.ClientResponse, body: bytes) -> ApiError:
    try:
        status = loads(body, bounded=False)
    except Undecodable:
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
