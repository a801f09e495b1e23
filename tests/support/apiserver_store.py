"""The in-memory object store of the test API server: one global resourceVersion counter,
a bounded change history (like etcd before compaction), snapshot-consistent chunked lists,
and watchers fed from the history.

Stored objects are never mutated after a commit: every write stores a fresh dict, so the
history and the watchers' queues can hold references safely.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import os
import random
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
from sortedcontainers import SortedList  # type: ignore[import-untyped]

from support.apiserver_resources import (
    CONTINUE_TOO_OLD,
    JSON,
    LIST_RV_TOO_OLD,
    WATCH_RV_TOO_OLD,
    ApiError,
    Registry,
    ResourceType,
    already_exists,
    bad_request,
    conflict,
    empty_object_for_bookmark,
    events_v1_to_core_event,
    expired,
    normalize_core_event,
    not_found,
    present,
    rfc3339_now,
    status_body,
    too_large_resource_version,
)
from support.apiserver_selectors import Predicate

INITIAL_EVENTS_END = {"k8s.io/initial-events-end": "true"}
SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what generateName draws from


@dataclass(slots=True)
class Change:
    """One committed write, as an etcd revision."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    storage: str
    key: str
    obj: JSON  # the new state; for DELETED the last state, stamped with the deletion RV
    prev: JSON | None  # the state before; None for ADDED


@dataclass
class ListPage:
    items: list[JSON]  # stored objects (core shape for Events)
    resource_version: int
    continue_token: str | None


class Bucket:
    """The objects of one storage resource, keyed `namespace/name` (or `name`), kept sorted."""

    __slots__ = ("keys", "objects")

    def __init__(self) -> None:
        self.objects: dict[str, JSON] = {}
        self.keys: SortedList = SortedList()


@dataclass(eq=False)
class Watcher:
    """One open watch: the store pushes frames into `pending`; the HTTP side drains them."""

    resource: ResourceType
    namespace: str | None
    predicate: Predicate | None
    wants_bookmarks: bool
    after_rv: int = 0  # ignore changes at or below this RV
    pending: list[tuple[str, JSON]] = field(default_factory=list)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    ending: str | None = None  # "close" (clean end of body) or "drop" (abort the connection)

    @property
    def prefix(self) -> str:
        return f"{self.namespace}/" if self.namespace else ""

    def push(self, event_type: str, obj: JSON) -> None:
        self.pending.append((event_type, obj))
        self.wakeup.set()

    def end(self, how: str) -> None:
        self.ending = how
        self.wakeup.set()

    def take_pending(self) -> list[tuple[str, JSON]]:
        frames, self.pending = self.pending, []
        self.wakeup.clear()
        return frames

    def offer(self, change: Change) -> None:
        """Queue the frame this watcher should see for `change`, if any."""
        if change.rv <= self.after_rv:
            return
        if self.namespace and not change.key.startswith(self.prefix):
            return
        if self.predicate is None:
            self.push(change.type, change.obj)
            return
        matches_now = self.predicate(change.obj)
        if change.type != "MODIFIED":
            if matches_now:
                self.push(change.type, change.obj)
            return
        matched_before = change.prev is not None and self.predicate(change.prev)
        # An object moving in or out of a selector is seen as ADDED or DELETED.
        if matched_before and matches_now:
            self.push("MODIFIED", change.obj)
        elif matches_now:
            self.push("ADDED", change.obj)
        elif matched_before:
            self.push("DELETED", change.obj)


def new_uid() -> str:
    """A random (version 4) UUID string; uuid.uuid4() is slow for bulk loads."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def encode_continue(resource_version: int, start_key: str) -> str:
    token = orjson.dumps({"v": "meta.k8s.io/v1", "rv": resource_version, "start": start_key})
    return base64.urlsafe_b64encode(token).rstrip(b"=").decode()


def decode_continue(token: str) -> tuple[int, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        decoded = orjson.loads(base64.urlsafe_b64decode(padded))
        if decoded["v"] != "meta.k8s.io/v1":
            raise ValueError(decoded["v"])
        return int(decoded["rv"]), str(decoded["start"])
    except (ValueError, KeyError, TypeError) as error:
        raise bad_request(f"continue key is not valid: {error}") from error


def parse_resource_version(text: str | None) -> int | None:
    """None for unset or "0" (both mean "any/most recent"), else the integer."""
    if text in (None, "", "0"):
        return None
    try:
        return int(text)
    except ValueError as error:
        raise bad_request(f'invalid resource version "{text}"') from error


class Store:
    def __init__(
        self, registry: Registry, *, history_limit: int = 100_000, initial_rv: int = 100
    ) -> None:
        self.registry = registry
        self.history_limit = history_limit
        self._rv = initial_rv
        self._compacted_rv = initial_rv  # watches/lists at or after this RV can be served
        self._history: list[Change] = []
        self._buckets: dict[str, Bucket] = {}
        self._watchers: dict[str, set[Watcher]] = {}
        self.auto_create_namespaces = True
        namespaces = registry.by_path("", "v1", "namespaces")
        assert namespaces is not None, "the registry must serve core/v1 namespaces"
        self._namespaces = namespaces
        for namespace in SYSTEM_NAMESPACES:
            self._ensure_namespace(namespace)

    # ---- state -----------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    @property
    def compacted_rv(self) -> int:
        return self._compacted_rv

    def _bucket(self, resource: ResourceType) -> Bucket:
        bucket = self._buckets.get(resource.storage)
        if bucket is None:
            bucket = self._buckets[resource.storage] = Bucket()
        return bucket

    @staticmethod
    def _key(resource: ResourceType, namespace: str | None, name: str) -> str:
        return f"{namespace}/{name}" if resource.namespaced else name

    # ---- writes ----------------------------------------------------------------------

    def resource_for(self, obj: JSON) -> ResourceType:
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        resource = self.registry.by_kind(api_version, kind)
        if resource is None:
            raise ValueError(f"unknown apiVersion/kind {api_version!r}/{kind!r}")
        return resource

    def create(
        self,
        obj: JSON,
        resource: ResourceType | None = None,
        *,
        namespace: str | None = None,
        copy: bool = True,
    ) -> JSON:
        """Store a new object; returns it as stored (typed). Raises ApiError 409 if present."""
        resource = resource or self.resource_for(obj)
        stored = self._prepare(resource, obj, namespace, copy)
        meta = stored["metadata"]
        key = self._key(resource, meta.get("namespace"), meta["name"])
        if key in self._bucket(resource).objects:
            raise already_exists(resource, meta["name"])
        meta.setdefault("uid", new_uid())
        meta.setdefault("creationTimestamp", rfc3339_now())
        if resource.namespaced and self.auto_create_namespaces:
            self._ensure_namespace(meta["namespace"])
        self._commit(resource, "ADDED", key, stored, None)
        return self._returned(resource, stored, copy)

    def _ensure_namespace(self, name: str) -> None:
        """Create a missing Namespace first (a real server would refuse the object instead;
        tests are simpler this way, and kubectl checks the namespace on NotFound)."""
        namespaces = self._namespaces
        if name in self._bucket(namespaces).objects:
            return
        namespace = {
            "metadata": {
                "name": name,
                "uid": new_uid(),
                "creationTimestamp": rfc3339_now(),
                "labels": {"kubernetes.io/metadata.name": name},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }
        self._commit(namespaces, "ADDED", name, namespace, None)

    def update(
        self,
        obj: JSON,
        resource: ResourceType | None = None,
        *,
        namespace: str | None = None,
        check_resource_version: bool = False,
        copy: bool = True,
    ) -> JSON:
        """Replace an existing object (MODIFIED, new RV). Raises ApiError 404/409."""
        resource = resource or self.resource_for(obj)
        stored = self._prepare(resource, obj, namespace, copy)
        meta = stored["metadata"]
        key = self._key(resource, meta.get("namespace"), meta["name"])
        previous = self._bucket(resource).objects.get(key)
        if previous is None:
            raise not_found(resource, meta["name"])
        previous_meta = previous["metadata"]
        wanted_rv = meta.get("resourceVersion")
        if check_resource_version and wanted_rv and wanted_rv != previous_meta["resourceVersion"]:
            raise conflict(resource, meta["name"])
        # uid and creationTimestamp are immutable: the server keeps the old ones.
        meta["uid"] = previous_meta["uid"]
        meta["creationTimestamp"] = previous_meta.get("creationTimestamp")
        self._commit(resource, "MODIFIED", key, stored, previous)
        return self._returned(resource, stored, copy)

    def apply(self, obj: JSON, resource: ResourceType | None = None, *, copy: bool = True) -> JSON:
        """Create, or replace if it exists."""
        resource = resource or self.resource_for(obj)
        meta = obj.get("metadata") or {}
        namespace = (meta.get("namespace") or "default") if resource.namespaced else None
        key = self._key(resource, namespace, meta.get("name", ""))
        if key not in self._bucket(resource).objects:
            return self.create(obj, resource, copy=copy)
        return self.update(obj, resource, copy=copy)

    def delete(self, resource: ResourceType, namespace: str | None, name: str) -> JSON:
        """Delete; watchers get DELETED with the last state at the deletion RV."""
        key = self._key(resource, namespace, name)
        previous = self._bucket(resource).objects.get(key)
        if previous is None:
            raise not_found(resource, name)
        last_state = {**previous, "metadata": dict(previous["metadata"])}
        self._commit(resource, "DELETED", key, last_state, previous)
        return self._returned(resource, last_state, True)

    def get(self, resource: ResourceType, namespace: str | None, name: str) -> JSON | None:
        """The object as `resource` serves it (typed), or None."""
        stored = self._bucket(resource).objects.get(self._key(resource, namespace, name))
        return None if stored is None else self._returned(resource, stored, True)

    def get_stored(self, resource: ResourceType, namespace: str | None, name: str) -> JSON:
        stored = self._bucket(resource).objects.get(self._key(resource, namespace, name))
        if stored is None:
            raise not_found(resource, name)
        return stored

    def objects(self, resource: ResourceType) -> list[JSON]:
        """Every stored object of a resource, typed, in key order."""
        bucket = self._bucket(resource)
        return [self._returned(resource, bucket.objects[k], True) for k in bucket.keys]

    def _prepare(
        self, resource: ResourceType, obj: JSON, namespace: str | None, copy: bool
    ) -> JSON:
        """The object to store: deep-copied, stripped of kind/apiVersion, core shape."""
        body = orjson.loads(orjson.dumps(obj)) if copy else dict(obj)
        body.pop("kind", None)
        body.pop("apiVersion", None)
        if resource.is_events_v1:
            body = events_v1_to_core_event(body)
        elif resource.is_event:
            normalize_core_event(body)
        meta = body["metadata"] = dict(body.get("metadata") or {})
        if resource.namespaced:
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            meta["name"] = self._generated_name(resource, meta)
        return body

    @staticmethod
    def _generated_name(resource: ResourceType, meta: JSON) -> str:
        prefix: str = meta.get("generateName") or ""
        if not prefix:
            message = (
                f'{resource.kind} "" is invalid: metadata.name: Required value: '
                "name or generateName is required"
            )
            raise ApiError(status_body(422, "Invalid", message, {"kind": resource.plural}))
        return prefix + "".join(random.choices(_NAME_SUFFIX_ALPHABET, k=5))

    @staticmethod
    def _returned(resource: ResourceType, stored: JSON, copy: bool) -> JSON:
        typed = present(resource, stored, typed=True)
        if copy:
            copied: JSON = orjson.loads(orjson.dumps(typed))
            return copied
        return typed

    def _commit(
        self, resource: ResourceType, change_type: str, key: str, obj: JSON, prev: JSON | None
    ) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        bucket = self._bucket(resource)
        if change_type == "DELETED":
            del bucket.objects[key]
            bucket.keys.remove(key)
        else:
            if prev is None:
                bucket.keys.add(key)
            bucket.objects[key] = obj
        change = Change(self._rv, change_type, resource.storage, key, obj, prev)
        self._record(change)
        for watcher in self._watchers.get(resource.storage, ()):
            watcher.offer(change)

    def _record(self, change: Change) -> None:
        history = self._history
        history.append(change)
        # Trim in blocks so appends stay O(1) amortized.
        if len(history) > self.history_limit + max(self.history_limit // 4, 1):
            excess = len(history) - self.history_limit
            self._compacted_rv = history[excess - 1].rv
            del history[:excess]

    def compact(self) -> int:
        """Forget all history, like etcd compaction: older RVs now answer 410 Expired."""
        self._history.clear()
        self._compacted_rv = self._rv
        return self._rv

    # ---- list ------------------------------------------------------------------------

    def list_objects(
        self,
        resource: ResourceType,
        namespace: str | None,
        predicate: Predicate | None,
        *,
        limit: int | None = None,
        continue_token: str | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
    ) -> ListPage:
        if continue_token:
            snapshot_rv, start = decode_continue(continue_token)
            if snapshot_rv < self._compacted_rv:
                raise expired(CONTINUE_TOO_OLD)
        else:
            snapshot_rv = self._list_snapshot_rv(resource_version, resource_version_match, limit)
            start = ""
        prefix = f"{namespace}/" if namespace else ""
        items: list[JSON] = []
        last_key = ""
        for key, obj in self._scan(resource.storage, snapshot_rv, max(start, prefix)):
            if prefix and not key.startswith(prefix):
                break
            if predicate is not None and not predicate(obj):
                continue
            if limit and len(items) == limit:
                return ListPage(items, snapshot_rv, encode_continue(snapshot_rv, last_key + "\x00"))
            items.append(obj)
            last_key = key
        return ListPage(items, snapshot_rv, None)

    def _list_snapshot_rv(self, text: str | None, match: str | None, limit: int | None) -> int:
        requested = parse_resource_version(text)
        if requested is None:
            return self._rv
        if requested > self._rv:
            raise too_large_resource_version(requested, self._rv)
        exact = match == "Exact" or (match is None and bool(limit))
        if not exact:
            return self._rv  # "not older than": the current state satisfies it
        if requested < self._compacted_rv:
            raise expired(LIST_RV_TOO_OLD)
        return requested

    def _scan(self, storage: str, snapshot_rv: int, lower: str) -> Iterator[tuple[str, JSON]]:
        """(key, object) pairs of the storage as of `snapshot_rv`, from key `lower` on."""
        bucket = self._buckets.get(storage) or Bucket()
        live = bucket.keys.irange(minimum=lower)
        if snapshot_rv == self._rv:
            for key in live:
                yield key, bucket.objects[key]
            return
        overlay = self._undo_overlay(storage, snapshot_rv)
        extra = sorted(k for k in overlay if k >= lower)
        previous = None
        for key in heapq.merge(live, extra):
            if key == previous:
                continue
            previous = key
            obj = overlay[key] if key in overlay else bucket.objects[key]
            if obj is not None:
                yield key, obj

    def _undo_overlay(self, storage: str, snapshot_rv: int) -> dict[str, JSON | None]:
        """key -> state at `snapshot_rv` (None: absent) for keys changed since then."""
        overlay: dict[str, JSON | None] = {}
        for change in reversed(self._history):
            if change.rv <= snapshot_rv:
                break
            if change.storage == storage:
                overlay[change.key] = change.prev  # the earliest change wins (walking back)
        return overlay

    # ---- watch -----------------------------------------------------------------------

    def watch(
        self,
        resource: ResourceType,
        namespace: str | None,
        predicate: Predicate | None,
        *,
        resource_version: str | None = None,
        send_initial_events: bool | None = None,
        wants_bookmarks: bool = False,
    ) -> Watcher:
        """Register a watcher with its first frames already queued.

        Raises ApiError 410 (to be sent as an ERROR frame) if the RV is compacted.
        """
        requested = parse_resource_version(resource_version)
        watcher = Watcher(resource, namespace, predicate, wants_bookmarks)
        initial_state = (
            send_initial_events if send_initial_events is not None else requested is None
        )
        if initial_state:
            self._queue_current_state(watcher)
            watcher.after_rv = self._rv
            if send_initial_events and wants_bookmarks:
                watcher.push("BOOKMARK", self._bookmark_object(resource, INITIAL_EVENTS_END))
        elif requested is None:
            watcher.after_rv = self._rv
        else:
            if requested < self._compacted_rv:
                raise expired(WATCH_RV_TOO_OLD)
            watcher.after_rv = requested
            self._replay(watcher, requested)
        self._watchers.setdefault(resource.storage, set()).add(watcher)
        return watcher

    def _queue_current_state(self, watcher: Watcher) -> None:
        for key, obj in self._scan(watcher.resource.storage, self._rv, watcher.prefix):
            if watcher.namespace and not key.startswith(watcher.prefix):
                break
            if watcher.predicate is None or watcher.predicate(obj):
                watcher.push("ADDED", obj)

    def _replay(self, watcher: Watcher, after_rv: int) -> None:
        start = bisect_right(self._history, after_rv, key=lambda change: change.rv)
        storage = watcher.resource.storage
        for change in self._history[start:]:
            if change.storage == storage:
                watcher.offer(change)

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.get(watcher.resource.storage, set()).discard(watcher)

    def watchers(self, resource: ResourceType | None = None) -> list[Watcher]:
        if resource is not None:
            return [w for w in self._watchers.get(resource.storage, ()) if w.resource == resource]
        return [w for group in self._watchers.values() for w in group]

    def _bookmark_object(self, resource: ResourceType, annotations: dict[str, str] | None) -> JSON:
        obj = empty_object_for_bookmark(resource, self._rv)
        if annotations:
            obj["metadata"]["annotations"] = dict(annotations)
        return obj

    def bookmark(self) -> int:
        """Send a BOOKMARK at the current RV to every watcher that allowed bookmarks."""
        sent = 0
        for watcher in self.watchers():
            if watcher.wants_bookmarks:
                watcher.push("BOOKMARK", self._bookmark_object(watcher.resource, None))
                sent += 1
        return sent

    def end_watches(self, how: str, resource: ResourceType | None = None) -> int:
        """End open watches: "close" cleanly, or "drop" the connection. Returns how many."""
        ended = self.watchers(resource)
        for watcher in ended:
            watcher.end(how)
        return len(ended)
