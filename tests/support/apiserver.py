"""A test Kubernetes API server that speaks the real list/watch protocol over HTTPS.

Used three ways:

* as a pytest plugin (tests/conftest.py loads it): the `apiserver` fixture starts a fresh
  server per test and yields an `ApiServer` with `.kubeconfig`, `.url` and `.token`;
* from Python: `async with ApiServer(kubeconfig=path) as server: ...`;
* standalone, for benchmarks: `python tests/support/apiserver.py --kubeconfig PATH
  [--load FILE.jsonl] [--stream FILE.jsonl --rate N]`; it prints its URL once ready.

Real behaviour it keeps (the Kubernetes API concepts: watch, resourceVersion, bookmarks): a global decimal
resourceVersion, snapshot-consistent chunked lists, NDJSON chunked watches with synthetic
ADDEDs, BOOKMARKs only when asked, in-stream ERROR 410 Expired for compacted RVs, clean EOF
at timeoutSeconds, real Status bodies, TLS with a throwaway CA and bearer-token auth.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import gc
import secrets
import signal
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `support.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
import pytest
import trustme
import yaml
from aiohttp import web

from support.apiserver_faults import (
    DEFAULT_USER,
    FaultRule,
    Faults,
    RequestLog,
    RequestRecord,
)
from support.apiserver_http import ApiHttp
from support.apiserver_resources import (
    JSON,
    ApiError,
    Registry,
    ResourceType,
    micro_time_now,
    rfc3339_now,
)
from support.apiserver_store import Store, Watcher

__all__ = [
    "ApiError",
    "ApiServer",
    "FaultRule",
    "Faults",
    "RequestRecord",
    "ResourceType",
    "apiserver",
    "make_event",
    "object_reference",
    "unreachable_url",
    "write_kubeconfig",
]

CLUSTER_NAME = "eventtrace-test"


# ---- TLS and kubeconfig --------------------------------------------------------------


@functools.cache
def _certificate_authority() -> tuple[trustme.CA, trustme.LeafCert]:
    """One throwaway CA and server certificate per process (key generation is the slow part)."""
    authority = trustme.CA(organization_name="eventtrace test CA")
    return authority, authority.issue_cert("127.0.0.1", "localhost")


def write_kubeconfig(path: Path | str, *, server: str, token: str, ca_pem: bytes) -> Path:
    """Write a kubeconfig with one cluster/user/context, the context current."""
    path = Path(path)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": CLUSTER_NAME, "user": {"token": token}}],
        "contexts": [
            {"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": CLUSTER_NAME}}
        ],
        "current-context": CLUSTER_NAME,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def unreachable_url() -> str:
    """An https URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"https://127.0.0.1:{port}"


# ---- objects -------------------------------------------------------------------------


def object_reference(obj: JSON, field_path: str = "") -> JSON:
    """The involvedObject/regarding reference a recorder would put on an event about `obj`."""
    meta = obj["metadata"]
    reference = {"kind": obj["kind"], "apiVersion": obj["apiVersion"], "name": meta["name"]}
    if meta.get("namespace"):
        reference["namespace"] = meta["namespace"]
    if meta.get("uid"):
        reference["uid"] = meta["uid"]
    if meta.get("resourceVersion"):
        reference["resourceVersion"] = meta["resourceVersion"]
    if field_path:
        reference["fieldPath"] = field_path
    return reference


def make_event(
    reason: str,
    message: str,
    involved: JSON,
    *,
    type: str = "Normal",
    component: str = "",
    host: str = "",
    namespace: str | None = None,
    name: str | None = None,
    count: int = 1,
    first_timestamp: str | None = None,
    last_timestamp: str | None = None,
    new_api: bool = False,
    action: str = "",
    reporting_instance: str = "",
) -> JSON:
    """A core/v1 Event shaped like client-go's recorders write it (reference §2.3, §2.4).

    `involved` is an object reference (see `object_reference`). `new_api=True` gives the
    events.k8s.io recorder's shape: eventTime set, null first/lastTimestamp, no count.
    """
    event_namespace = namespace or involved.get("namespace") or "default"
    event_name = name or f"{involved.get('name', 'unknown')}.{time.time_ns():x}"
    event: JSON = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": event_name, "namespace": event_namespace},
        "involvedObject": dict(involved),
        "reason": reason,
        "message": message,
        "type": type,
    }
    if new_api:
        event.update(
            source={},
            firstTimestamp=None,
            lastTimestamp=None,
            eventTime=micro_time_now(),
            action=action,
            reportingComponent=component,
            reportingInstance=reporting_instance or (f"{component}-{host}" if host else component),
        )
    else:
        now = rfc3339_now()
        source = {"component": component, **({"host": host} if host else {})}
        event.update(
            source=source,
            firstTimestamp=first_timestamp or now,
            lastTimestamp=last_timestamp or first_timestamp or now,
            count=count,
            eventTime=None,
            reportingComponent=component,
            reportingInstance=host,
        )
        if action:
            event["action"] = action
    return event


# ---- the server ----------------------------------------------------------------------


class ApiServer:
    """A fresh, empty cluster API on 127.0.0.1 (random port), HTTPS, bearer-token auth."""

    def __init__(
        self,
        kubeconfig: Path | str | None = None,
        *,
        token: str | None = None,
        port: int = 0,
        history_limit: int = 100_000,
        user: str = DEFAULT_USER,
        min_request_timeout: float = 1800.0,
    ) -> None:
        self.registry = Registry()
        self.store = Store(self.registry, history_limit=history_limit)
        self.faults = Faults(user)
        self.requests = RequestLog()
        self.token = token or secrets.token_urlsafe(24)
        self.kubeconfig: Path | None = Path(kubeconfig) if kubeconfig else None
        self._port = port
        self._http = ApiHttp(
            registry=self.registry,
            store=self.store,
            faults=self.faults,
            log=self.requests,
            token=self.token,
            address=lambda: f"127.0.0.1:{self.port}",
            min_request_timeout=min_request_timeout,
        )
        self._runner: web.AppRunner | None = None

    # ---- lifecycle -------------------------------------------------------------------

    @property
    def ca_pem(self) -> bytes:
        return _certificate_authority()[0].cert_pem.bytes()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._port}"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting the server's CA (for raw aiohttp requests in tests)."""
        context = ssl.create_default_context()
        _certificate_authority()[0].configure_trust(context)
        return context

    async def start(self) -> ApiServer:
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        _certificate_authority()[1].configure_cert(server_context)
        listener = socket.socket()
        # A restarted server takes its old port back, even with connections in TIME_WAIT.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self._port))
        self._port = listener.getsockname()[1]
        # handler_cancellation: a client hanging up ends its watch handler at once.
        self._runner = web.AppRunner(
            self._http.application(),
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=1.0,
        )
        await self._runner.setup()
        await web.SockSite(self._runner, listener, ssl_context=server_context).start()
        if self.kubeconfig is not None:
            self.write_kubeconfig(self.kubeconfig)
        return self

    async def stop(self) -> None:
        """End every watch cleanly, then close the listener and connections.

        The objects stay: `start()` again serves them on the same port (an API restart).
        """
        self.store.end_watches("close")
        if self._runner is not None:
            await asyncio.sleep(0)  # let the watch handlers write their last chunk
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ApiServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def rotate_token(self, token: str | None = None) -> str:
        """Accept another bearer token from now on, and only it (the old one gets 401)."""
        self.token = token or secrets.token_urlsafe(24)
        self._http.token = self.token
        return self.token

    def write_kubeconfig(
        self, path: Path | str, *, token: str | None = None, server: str | None = None
    ) -> Path:
        """This server's kubeconfig, or a variant: a wrong `token`, another `server` URL
        (e.g. `unreachable_url()`)."""
        return write_kubeconfig(
            path, server=server or self.url, token=token or self.token, ca_pem=self.ca_pem
        )

    # ---- resources -------------------------------------------------------------------

    def resource(self, name: str) -> ResourceType:
        """A resource type by `plural`, `plural.group`, short name or Kind.

        `events` is the core one; say `events.events.k8s.io` for the other.
        """
        for candidate in self.registry:
            if name == candidate.group_resource:
                return candidate
        matches = self.registry.by_name(name)
        if not matches:
            raise KeyError(f"unknown resource {name!r}")
        return next((r for r in matches if r.group == ""), matches[0])

    def register_custom_resource(
        self,
        group: str,
        version: str,
        kind: str,
        plural: str,
        *,
        namespaced: bool = True,
        short_names: Iterable[str] = (),
    ) -> ResourceType:
        """Serve a custom resource (as a CRD would): discovery, list, watch, get, writes."""
        resource = ResourceType(group, version, plural, kind, namespaced, tuple(short_names))
        self.registry.add(resource)
        return resource

    def _locate(
        self, target: JSON | str, name: str | None, namespace: str | None
    ) -> tuple[ResourceType, str | None, str]:
        if isinstance(target, dict):
            resource = self.store.resource_for(target)
            meta = target.get("metadata") or {}
            name, namespace = meta.get("name"), meta.get("namespace")
        else:
            resource = self.resource(target)
        if not name:
            raise ValueError("a name is needed")
        namespace = (namespace or "default") if resource.namespaced else None
        return resource, namespace, name

    # ---- objects (test API) ------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        """The current global resourceVersion."""
        return str(self.store.resource_version)

    def create(self, obj: JSON) -> JSON:
        """Store a new object (dict with apiVersion/kind/metadata); returns it as stored."""
        return self.store.create(obj)

    def update(self, obj: JSON) -> JSON:
        """Replace an object: MODIFIED, new resourceVersion. Raises ApiError 404 if absent."""
        return self.store.update(obj)

    def apply(self, obj: JSON) -> JSON:
        """Create or replace."""
        return self.store.apply(obj)

    def delete(
        self, target: JSON | str, name: str | None = None, namespace: str | None = None
    ) -> JSON:
        """Delete `obj`, or `(resource, name, namespace)`; returns the last state."""
        resource, namespace, name = self._locate(target, name, namespace)
        return self.store.delete(resource, namespace, name)

    def get(
        self, target: JSON | str, name: str | None = None, namespace: str | None = None
    ) -> JSON | None:
        """The object as served (typed), or None: `get("pods", "web-0", "default")`."""
        resource, namespace, name = self._locate(target, name, namespace)
        return self.store.get(resource, namespace, name)

    def objects(self, resource: str) -> list[JSON]:
        """Every stored object of a resource, typed."""
        return self.store.objects(self.resource(resource))

    def repeat_event(
        self, event: JSON | str, name: str | None = None, namespace: str | None = None
    ) -> JSON:
        """Record one more occurrence of a legacy event, like the recorder's PATCH:
        count+1 and a new lastTimestamp (a MODIFIED on the watch)."""
        current = self.get(event, name, namespace)
        if current is None:
            raise KeyError("no such event")
        current["count"] = (current.get("count") or 1) + 1
        current["lastTimestamp"] = rfc3339_now()
        return self.update(current)

    def compact(self) -> str:
        """Drop the change history: watches and continue tokens from older RVs get 410."""
        return str(self.store.compact())

    def bookmark(self) -> int:
        """Send a BOOKMARK now to every watch that set allowWatchBookmarks; returns how many."""
        return self.store.bookmark()

    # ---- watches ---------------------------------------------------------------------

    def watches(self, resource: str | None = None) -> list[Watcher]:
        """Open watches, optionally of one resource (by plural: `events` means both APIs)."""
        return [
            w for w in self.store.watchers() if resource is None or w.resource.plural == resource
        ]

    async def wait_for_watches(
        self, resource: str | None = None, count: int = 1, within: float = 5.0
    ) -> None:
        """Wait until `count` watches (of `resource`) are open."""
        deadline = time.monotonic() + within
        while len(self.watches(resource)) < count:
            if time.monotonic() > deadline:
                found = len(self.watches(resource))
                raise TimeoutError(
                    f"{found} of {count} {resource or ''} watches open after {within}s"
                )
            await asyncio.sleep(0.01)

    def drop_watches(self, resource: str | None = None) -> int:
        """Abort the connections of open watches mid-stream (no chunked terminator)."""
        dropped = self.watches(resource)
        for watcher in dropped:
            watcher.end("drop")
        return len(dropped)

    def close_watches(self, resource: str | None = None) -> int:
        """End open watches cleanly, as at timeoutSeconds."""
        closed = self.watches(resource)
        for watcher in closed:
            watcher.end("close")
        return len(closed)


# ---- pytest plugin -------------------------------------------------------------------


@pytest.fixture
async def apiserver(tmp_path: Path) -> AsyncIterator[ApiServer]:
    """A fresh test API server for one test; its kubeconfig is `apiserver.kubeconfig`."""
    server = ApiServer(kubeconfig=tmp_path / "kubeconfig")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


# ---- standalone ----------------------------------------------------------------------


def read_objects(path: Path) -> Iterator[tuple[str, JSON]]:
    """(watch type, object) pairs from a JSON-lines file.

    A line is an object, a `kind: ...List` (its items, kind taken from the list), or a
    watch event `{"type": ..., "object": ...}`.
    """
    with path.open("rb") as lines:
        for line in lines:
            if not line.strip():
                continue
            doc = orjson.loads(line)
            if "type" in doc and "object" in doc:
                yield doc["type"], doc["object"]
            elif isinstance(doc.get("items"), list):
                kind = doc.get("kind", "").removesuffix("List")
                for item in doc["items"]:
                    item.setdefault("kind", kind)
                    item.setdefault("apiVersion", doc.get("apiVersion", "v1"))
                    yield "ADDED", item
            else:
                yield "ADDED", doc


def apply_change(server: ApiServer, change_type: str, obj: JSON) -> None:
    if change_type == "DELETED":
        server.delete(obj)
    else:
        server.store.apply(obj, copy=False)


async def stream_objects(server: ApiServer, path: Path, rate: float, resource: str) -> int:
    """Apply the changes in `path` once a watch of `resource` is open: `rate` per second,
    or as fast as the watchers take them (rate 0). Returns how many were applied."""
    changes = list(read_objects(path))  # parse first: the clock starts with the watch
    await server.wait_for_watches(resource, within=86400)
    loop = asyncio.get_running_loop()
    started, applied, batch = loop.time(), 0, 500
    for change_type, obj in changes:
        apply_change(server, change_type, obj)
        applied += 1
        if rate > 0:
            ahead = started + applied / rate - loop.time()
            if ahead > 0:
                await asyncio.sleep(ahead)
        elif applied % batch == 0:
            await _wait_for_watchers_to_catch_up(server)
        if applied % 10_000 == 0:
            gc.freeze()  # stored objects live on: keep the collector from rescanning them
    return applied


async def _wait_for_watchers_to_catch_up(server: ApiServer, backlog: int = 5000) -> None:
    """Backpressure: don't queue more than `backlog` frames per watcher."""
    await asyncio.sleep(0)
    # Polling a counter every millisecond is cheap next to writing 5000 frames.
    while any(len(w.pending) > backlog for w in server.store.watchers()):  # noqa: ASYNC110
        await asyncio.sleep(0.001)


async def serve(args: argparse.Namespace) -> None:
    server = ApiServer(
        kubeconfig=args.kubeconfig, token=args.token, port=args.port, history_limit=args.history
    )
    for path in args.load:
        for change_type, obj in read_objects(Path(path)):
            apply_change(server, change_type, obj)
    gc.freeze()  # the preloaded objects live on: keep the collector from rescanning them
    await server.start()
    print(server.url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if args.stream:
        applied = await stream_objects(server, Path(args.stream), args.rate, args.stream_after)
        print(f"streamed {applied} objects", file=sys.stderr, flush=True)
    await stop.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True, help="where to write the kubeconfig")
    parser.add_argument("--load", action="append", default=[], help="JSON-lines objects to preload")
    parser.add_argument("--stream", help="JSON-lines objects/watch events to apply once watched")
    parser.add_argument("--rate", type=float, default=0.0, help="objects per second (0: max)")
    parser.add_argument("--stream-after", default="events", help="start streaming on this watch")
    parser.add_argument("--token", default=None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--history", type=int, default=100_000, help="changes kept for replay")
    asyncio.run(serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
