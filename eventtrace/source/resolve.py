"""Owner resolution against the live cluster: keeps the ObjectIndex filled.

The common workload kinds stream in from watches (see `live.py`), deleted ones stay as
tombstones for a while so late events (Killing, SuccessfulDelete) still resolve. Anything
else an owner chain needs is fetched with a GET, its resource found through discovery
(custom resources included), and remembered with a TTL; 404s and 403s are remembered too,
so a missing object costs one request, not one per event. A 403 is not forever (RBAC
changes, during a rollout say): said once, then tried again after FORBIDDEN_SECONDS, or
as soon as the kind's watch lists.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from typing import Any

from eventtrace.core.model import KubeObject, ObjectRef, Rejected
from eventtrace.core.owners import ObjectIndex
from eventtrace.metrics import Metrics
from eventtrace.source.discovery import Discovery
from eventtrace.source.frames import METADATA
from eventtrace.source.kube import TRANSPORT_ERRORS, ApiError, KubeApi, Resource
from eventtrace.source.parse import parse_object
from eventtrace.source.schema import Object
from eventtrace.source.watch import Item, Listed, Listing

log = logging.getLogger("eventtrace.resolve")

TOMBSTONE_SECONDS = 3600.0  # events outlive their objects by up to the event TTL (1 h)
MISSING_SECONDS = 30.0  # a 404 is believed this long (the object may yet be created)
FETCHED_SECONDS = 600.0  # objects fetched by GET (not watched) are refreshed after this
FORBIDDEN_SECONDS = 600.0  # a 403 is believed this long (as the watches' longest back-off)


class Resolver:
    def __init__(
        self,
        api: KubeApi,
        index: ObjectIndex,
        metrics: Metrics,
        *,
        workers: int = 4,
        tombstone_seconds: float = TOMBSTONE_SECONDS,
    ) -> None:
        self.api = api
        self.tombstone_seconds = tombstone_seconds
        self.index = index
        self.metrics = metrics
        self._workers = workers
        self._queue: asyncio.Queue[ObjectRef] = asyncio.Queue(maxsize=10_000)
        self._wanted: set[tuple[str, str, str]] = set()
        self._missing: dict[tuple[str, str, str], float] = {}
        # Tombstones and fetched objects, by when to forget them.
        self._expiring: list[tuple[float, int, KubeObject]] = []
        self._buried: set[int] = set()  # id() of what _expiring holds
        self._order = itertools.count()
        self.discovery = Discovery(api)  # the resources that serve owners' kinds, read once
        # Resources RBAC keeps us from reading, by (API group, kind): until when (monotonic)
        # that is believed; and those said so (once, until allowed again).
        self._forbidden: dict[tuple[str, str], float] = {}
        self._warned: set[tuple[str, str]] = set()
        # (API group, kind) of the workload watches that have listed: their cache is the
        # truth, a GET of what it lacks could only answer 404.
        self._listed: set[tuple[str, str]] = set()

    # -- objects streaming in from the workload watches --------------------------------

    def feed(
        self, kind: str, group: str = "", namespace: str | None = None, version: str = "v1"
    ) -> ObjectFeed:
        """The handler for one workload watch."""
        return ObjectFeed(self, kind, group, namespace, version)

    def keep(
        self, raw: Object | dict[str, Any], kind: str = "", api_version: str = ""
    ) -> KubeObject | None:
        """An object from a watch or a list (whose items carry no kind or apiVersion: the
        watch's), into the index."""
        obj = parse_object(raw, "watch", kind=kind, api_version=api_version)
        if isinstance(obj, Rejected):
            log.warning("%s", obj)
            self.metrics.invalid_events.labels(reason="object").inc()
            return None
        self.index.put(obj)
        return obj

    def bury(self, obj: KubeObject, seconds: float | None = None) -> None:
        """Keep `obj` for late events, then forget it. Once: a second burial (a re-list
        that again lacks a tombstone) changes nothing."""
        seconds = self.tombstone_seconds if seconds is None else seconds
        if id(obj) in self._buried:  # ids are unique while the heap holds the objects
            return
        self._buried.add(id(obj))
        heapq.heappush(self._expiring, (time.monotonic() + seconds, next(self._order), obj))

    def sweep(self, now: float | None = None) -> int:
        """Forget tombstones and fetched objects whose time is up."""
        now = time.monotonic() if now is None else now
        forgotten = 0
        while self._expiring and self._expiring[0][0] <= now:
            obj = heapq.heappop(self._expiring)[2]
            self._buried.discard(id(obj))
            self.index.forget(obj)
            forgotten += 1
        for key in [key for key, until in self._missing.items() if until <= now]:
            del self._missing[key]
        self.metrics.tracked_objects.set(len(self.index))
        return forgotten

    # -- GET on demand -------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Are owner chains asked for still being fetched?"""
        return bool(self._wanted)

    def request_chain(self, ref: ObjectRef) -> None:
        """Ask for what the chain of `ref` lacks. Never blocks; the workers fetch."""
        for unknown in self.index.unknown_owners(ref):
            self._want(unknown)

    def forbidden(self, resource: Resource, message: str) -> None:
        """RBAC refuses this resource: say so once; chains stop at its objects until it
        is tried again (FORBIDDEN_SECONDS), or its watch lists."""
        key = (resource.group, resource.kind)
        self._forbidden[key] = time.monotonic() + FORBIDDEN_SECONDS
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)

    def listed(self, group: str, kind: str) -> None:
        """A workload watch has listed this kind: from now on its cache is the truth (and
        RBAC allows it, whatever it said before)."""
        self._listed.add((group, kind))
        self._forbidden.pop((group, kind), None)
        self._warned.discard((group, kind))

    def _want(self, ref: ObjectRef) -> None:
        if (ref.api_version.rpartition("/")[0], ref.kind) in self._listed:
            return
        key = ref.key
        if key in self._wanted or self._missing.get(key, 0) > time.monotonic():
            return
        try:
            self._queue.put_nowait(ref)
        except asyncio.QueueFull:
            self.metrics.owner_lookups.labels(result="queue_full").inc()
            return
        self._wanted.add(key)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as workers:
            for _ in range(self._workers):
                workers.create_task(self._work())

    async def _work(self) -> None:
        while True:
            ref = await self._queue.get()
            try:
                await self._fetch_chain(ref)
            except Exception as error:  # a lookup must never stop the lookups
                self.metrics.owner_lookups.labels(result="error").inc()
                log.warning("looking up %s failed: %s", ref.display_name, error)
            finally:
                self._wanted.discard(ref.key)

    async def _fetch_chain(self, ref: ObjectRef | None) -> None:
        seen: set[tuple[str, str, str]] = set()
        while ref is not None and ref.key not in seen:
            seen.add(ref.key)
            known = self.index.find(ref)
            if known is None:
                known = await self._fetch(ref)
            ref = known.controller if known is not None else self.index.hinted_owner(ref)

    async def _fetch(self, ref: ObjectRef) -> KubeObject | None:
        if self._missing.get(ref.key, 0) > time.monotonic():
            return None
        resource = await self._resource_for(ref)
        if (
            resource is None
            or self._forbidden.get((resource.group, resource.kind), 0) > time.monotonic()
        ):
            self._remember_missing(ref)
            return None
        try:
            raw = await self.api.get(resource.item(ref.namespace, ref.name), accept=METADATA)
        except ApiError as error:
            self._failed(ref, resource, error)
            return None
        except TRANSPORT_ERRORS as error:
            self.metrics.owner_lookups.labels(result="error").inc()
            log.debug("GET %s/%s failed: %s", resource.label, ref.name, error)
            return None
        obj = parse_object(raw, "get", kind=resource.kind, api_version=resource.api_version)
        if isinstance(obj, Rejected):
            self.metrics.owner_lookups.labels(result="error").inc()
            return None
        self.metrics.owner_lookups.labels(result="get").inc()
        self.index.put(obj)
        self.bury(obj, FETCHED_SECONDS)  # not watched: refresh it now and then
        return obj

    def _failed(self, ref: ObjectRef, resource: Resource, error: ApiError) -> None:
        if error.status == 404:
            self.metrics.owner_lookups.labels(result="not_found").inc()
            self._remember_missing(ref)
        elif error.status == 403:
            self.metrics.owner_lookups.labels(result="forbidden").inc()
            group = resource.group or '""'
            self.forbidden(
                resource,
                f"not allowed to get {resource.label} ({error.message}); owner chains stop at "
                f"{resource.kind} objects. Grant get on {resource.plural} in API group {group} "
                "(Helm: clusterRole.extraRules)",
            )
        else:
            self.metrics.owner_lookups.labels(result="error").inc()
            log.debug("GET %s/%s: %s", resource.label, ref.name, error)

    def _remember_missing(self, ref: ObjectRef, seconds: float = MISSING_SECONDS) -> None:
        self._missing[ref.key] = time.monotonic() + seconds

    async def _resource_for(self, ref: ObjectRef) -> Resource | None:
        """Discovery: which resource (plural) serves this kind in this group/version."""
        try:
            return await self.discovery.for_kind(ref.api_version, ref.kind)
        except ApiError as error:  # discovery itself refused (401, 403)
            log.debug("discovery of %s failed: %s", ref.api_version or "v1", error)
            return None


class ObjectFeed:
    """One workload watch (of one namespace, or all) into the index. Deleted objects become
    tombstones; so do objects a re-list (after 410) no longer has, whose DELETED the watch
    never delivered: the uids seen between `Listing` and `Listed` say which."""

    def __init__(
        self,
        resolver: Resolver,
        kind: str,
        group: str = "",
        namespace: str | None = None,
        version: str = "v1",
    ) -> None:
        self.resolver = resolver
        self.kind = kind
        self.group = group
        self.api_version = f"{group}/{version}" if group else version
        self.namespace = namespace
        self._listed: set[str] | None = None  # uids of the list under way

    async def __call__(self, item: Item) -> None:
        if isinstance(item, Listing):
            self._listed = set()
        elif isinstance(item, Listed):
            self.listed(self._listed or set())
            self._listed = None
        else:
            self.change(item.type, item.object)

    def change(self, change: str, raw: Object | dict[str, Any]) -> None:
        obj = self.resolver.keep(raw, self.kind, self.api_version)
        if obj is None:
            return
        if self._listed is not None:
            self._listed.add(obj.ref.uid)
        if change == "DELETED":
            self.resolver.bury(obj)

    def listed(self, uids: set[str]) -> None:
        self.resolver.listed(self.group, self.kind)
        for obj in self.resolver.index.objects():
            ref = obj.ref
            if (
                ref.kind == self.kind
                and ref.uid not in uids
                and (self.namespace is None or ref.namespace == self.namespace)
                and ref.api_version.rpartition("/")[0] == self.group
            ):
                self.resolver.bury(obj)
