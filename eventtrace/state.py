"""What `run` keeps across restarts (DESIGN §2): which occurrences were exported, the open
episodes, and where each event watch was.

Only what the backend acknowledged counts as exported: the batcher reports each delivered
batch here. The state is saved every `state_interval` when something changed, and at
shutdown after the flush, into a ConfigMap (`configmap:NAMESPACE/NAME`) or a file
(`file:PATH`). A clean stop therefore leaves every occurrence exported once and every open
episode to be carried on, with its trace id, by the next process; after a crash, only
what was delivered after the last save may be exported again (with the same span ids).

Compact, as a ConfigMap holds at most 1 MiB: each exported event is a 48-bit hash of its
uid (a new event falsely taken as exported: once in ~3 billion against 100,000 saved) and
its count. The hashes are sorted and stored as the byte planes of their differences,
which zlib packs to ~4.1 bytes an event; episodes keep only what closing them reads
(bench/state.py measures it at 100,000 live events).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import tempfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from hashlib import blake2b
from pathlib import Path
from typing import Protocol

import msgspec
from kubernetes_asyncio import client
from kubernetes_asyncio.client.api_client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from eventtrace.core.episodes import Episode
from eventtrace.core.model import KubeObject, Span, SpanKind
from eventtrace.core.owners import Link

log = logging.getLogger("eventtrace.state")

FORMAT = 1
_HASH_BYTES = 6
_KEY = "state"  # the ConfigMap's binaryData key


@dataclass(frozen=True)
class Snapshot:
    """The progress at one moment, its own copy: it can be encoded in another thread."""

    cluster: str
    resource_versions: dict[str, str]
    exported: dict[int, int]
    episodes: list[Episode]

    def encode(self) -> bytes:
        hashes = sorted(self.exported)
        saved = _Saved(
            FORMAT,
            self.cluster,
            self.resource_versions,
            _pack_hashes(hashes),
            [self.exported[key] for key in hashes],
            self.episodes,
        )
        return zlib.compress(msgspec.msgpack.encode(saved), 6)


class StateError(Exception):
    """A saved state that cannot be used: the message says why."""


def uid_hash(uid: str) -> int:
    return int.from_bytes(blake2b(uid.encode(), digest_size=_HASH_BYTES).digest(), "big")


class _Saved(msgspec.Struct, array_like=True):
    format: int
    cluster: str
    resource_versions: dict[str, str]
    hashes: bytes  # the exported events' uid hashes, sorted: _pack_hashes
    counts: list[int]  # their counts, in the same order
    episodes: list[Episode]


def _pack_hashes(hashes: list[int]) -> bytes:
    """Sorted hashes as the byte planes of their differences: the first byte of every
    difference, then the second, and so on. Differences of sorted random numbers are
    small, so their high planes are nearly all zeros, which zlib packs away."""
    previous = [0, *hashes][:-1]
    differences = b"".join(
        (value - before).to_bytes(_HASH_BYTES, "big")
        for value, before in zip(hashes, previous, strict=True)
    )
    return b"".join(differences[plane::_HASH_BYTES] for plane in range(_HASH_BYTES))


def _unpack_hashes(planes: bytes) -> list[int]:
    count, rest = divmod(len(planes), _HASH_BYTES)
    if rest:
        raise ValueError("hash planes of unequal length")
    differences = bytearray(len(planes))
    for plane in range(_HASH_BYTES):
        differences[plane::_HASH_BYTES] = planes[plane * count : (plane + 1) * count]
    hashes, value = [], 0
    for at in range(0, len(differences), _HASH_BYTES):
        value += int.from_bytes(differences[at : at + _HASH_BYTES], "big")
        hashes.append(value)
    return hashes


def _slim(episode: Episode) -> Episode:
    """What closing the episode reads of its objects: their references, whether they were
    known, the root's spec manager, and their candidate causes (episodes.py keeps none
    for Pods); not owners or versions (only for the chains already walked)."""

    def link(old: Link) -> Link:
        known = old.known
        if known is not None:
            known = KubeObject(known.ref, spec_manager=known.spec_manager)
        return replace(old, known=known)

    objects = {
        identity: replace(entry, link=link(entry.link))
        for identity, entry in episode.objects.items()
    }
    return replace(episode, root=link(episode.root), objects=objects)


@dataclass
class Progress:
    """What was exported, as the backend acknowledged it, and the episodes whose object
    spans have not all been acknowledged yet (open, or closed with spans on their way)."""

    cluster: str
    exported: dict[int, int] = field(default_factory=dict)  # uid hash → count
    resource_versions: dict[str, str] = field(default_factory=dict)  # by event watch
    restored_episodes: list[Episode] = field(default_factory=list)
    # trace id → (closed episode, object spans not yet delivered)
    _closing: dict[str, tuple[Episode, int]] = field(default_factory=dict)
    changed: bool = False

    def exported_count(self, uid: str) -> int:
        """How many occurrences of this event were exported before: the tracker's view of
        events it has not seen in this process."""
        return self.exported.get(uid_hash(uid), 0)

    def delivered(self, spans: Sequence[Span]) -> None:
        """The backend accepted these spans."""
        for span in spans:
            if span.kind is SpanKind.EVENT:
                uid, count = _event_of(span)
                key = uid_hash(uid)
                if count > self.exported.get(key, 0):
                    self.exported[key] = count
            else:
                closing = self._closing.get(span.trace_id)
                if closing is not None:
                    episode, left = closing
                    if left <= 1:
                        del self._closing[span.trace_id]
                    else:
                        self._closing[span.trace_id] = (episode, left - 1)
        self.changed = True

    def closed(self, episode: Episode, spans: list[Span]) -> None:
        """An episode closed: keep it until its object spans are delivered."""
        if spans:
            self._closing[episode.trace_id] = (episode, len(spans))
            self.changed = True

    def forget(self, uids: Iterable[str]) -> None:
        """Events the pipeline forgot (long gone from the API server)."""
        for uid in uids:
            self.exported.pop(uid_hash(uid), None)
        self.changed = True

    def snapshot(self, open_episodes: list[Episode]) -> Snapshot:
        """What to save, copied: open episodes, and closed ones whose object spans are not
        all delivered (carried on again, to close at once, by the next process)."""
        carried = {episode.trace_id: episode for episode, _ in self._closing.values()}
        carried.update((episode.trace_id, episode) for episode in open_episodes)
        self.changed = False
        return Snapshot(
            self.cluster,
            dict(self.resource_versions),
            dict(self.exported),
            [_slim(episode) for episode in carried.values()],
        )

    def encode(self, open_episodes: list[Episode]) -> bytes:
        return self.snapshot(open_episodes).encode()

    @classmethod
    def decode(cls, data: bytes, cluster: str) -> Progress:
        """A saved state, or StateError saying why it cannot be used."""
        try:
            saved = msgspec.msgpack.decode(zlib.decompress(data), type=_Saved)
        except (zlib.error, msgspec.DecodeError, ValueError, TypeError) as error:
            raise StateError(f"not a state eventtrace can read ({error})") from None
        if saved.format != FORMAT:
            raise StateError(f"saved in format {saved.format}, this version reads {FORMAT}")
        if saved.cluster != cluster:
            raise StateError(f"saved for cluster {saved.cluster!r}, this is {cluster!r}")
        if len(saved.hashes) != _HASH_BYTES * len(saved.counts):
            raise StateError("its exported events do not add up")
        exported = dict(zip(_unpack_hashes(saved.hashes), saved.counts, strict=True))
        return cls(
            cluster,
            exported=exported,
            resource_versions=saved.resource_versions,
            restored_episodes=saved.episodes,
        )


def _event_of(span: Span) -> tuple[str, int]:
    return str(span.attributes.get("k8s.event.uid", "")), int(
        span.attributes.get("k8s.event.count", 0)
    )


# -- where it is kept ------------------------------------------------------------------------


class Store(Protocol):
    def describe(self) -> str: ...

    async def load(self) -> bytes | None:
        """The saved bytes, or None when nothing was saved yet."""
        ...

    async def save(self, data: bytes) -> None: ...


class FileStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return f"file {self.path}"

    async def load(self) -> bytes | None:
        try:
            return await asyncio.to_thread(self.path.read_bytes)
        except FileNotFoundError:
            return None

    async def save(self, data: bytes) -> None:
        await asyncio.to_thread(_write_atomically, self.path, data)


def _write_atomically(path: Path, data: bytes) -> None:
    """A crash mid-write leaves the old state whole: write a temporary file, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".state-", delete=False) as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(out.name, path)


class ConfigMapStore:
    """The state in a ConfigMap's binaryData, written with optimistic concurrency: each
    write names the resourceVersion it replaces, so a replica that lost the lead cannot
    overwrite what the new leader saved (409 Conflict)."""

    def __init__(self, api_client: ApiClient, namespace: str, name: str) -> None:
        self.namespace = namespace
        self.name = name
        self._core = client.CoreV1Api(api_client)
        self._version: str | None = None  # of what we read or wrote last

    def describe(self) -> str:
        return f"configmap {self.namespace}/{self.name}"

    async def load(self) -> bytes | None:
        try:
            found = await self._core.read_namespaced_config_map(self.name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise StateError(f"cannot read {self.describe()}: {_status(error)}") from None
        self._version = found.metadata.resource_version
        encoded = (found.binary_data or {}).get(_KEY)
        return base64.b64decode(encoded) if encoded else None

    async def save(self, data: bytes) -> None:
        body = client.V1ConfigMap(
            api_version="v1",
            kind="ConfigMap",
            metadata=client.V1ObjectMeta(
                name=self.name,
                namespace=self.namespace,
                labels={"app.kubernetes.io/managed-by": "eventtrace"},
                resource_version=self._version,
            ),
            binary_data={_KEY: base64.b64encode(data).decode()},
        )
        try:
            if self._version is None:
                created = await self._core.create_namespaced_config_map(self.namespace, body)
                self._version = created.metadata.resource_version
            else:
                replaced = await self._core.replace_namespaced_config_map(
                    self.name, self.namespace, body
                )
                self._version = replaced.metadata.resource_version
        except ApiException as error:
            if error.status == 404:
                self._version = None  # deleted meanwhile: the next save creates it
            elif error.status == 409:  # written by another since: the next save replaces it
                with contextlib.suppress(StateError):
                    await self.load()
            raise StateError(f"cannot save {self.describe()}: {_status(error)}") from None


def _status(error: ApiException) -> str:
    return f"{error.status} {error.reason}".strip()


def open_store(location: str, api_client: ApiClient | None) -> Store | None:
    """The store a `state` setting names (configmap:NS/NAME, file:PATH), or None."""
    if location == "none":
        return None
    if location.startswith("file:"):
        return FileStore(Path(location.removeprefix("file:")).expanduser())
    namespace, _, name = location.removeprefix("configmap:").partition("/")
    if api_client is None:
        raise StateError("a ConfigMap state needs a Kubernetes client")
    return ConfigMapStore(api_client, namespace, name)


async def load_progress(store: Store | None, cluster: str) -> Progress:
    """The saved progress, or a fresh one, saying once why a saved one was not used."""
    if store is None:
        return Progress(cluster)
    try:
        data = await store.load()
        if data is None:
            log.info("no saved state in %s: starting afresh", store.describe())
            return Progress(cluster)
        progress = Progress.decode(data, cluster)
    except StateError as error:
        log.warning("state in %s not used, starting as if there were none: %s",
                    store.describe(), error)  # fmt: skip
        return Progress(cluster)
    log.info(
        "state from %s: %d exported events, %d open traces, %d watch positions",
        store.describe(),
        len(progress.exported),
        len(progress.restored_episodes),
        len(progress.resource_versions),
    )
    return progress
