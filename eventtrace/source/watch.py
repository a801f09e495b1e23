"""The watch loop, after kopf's: list, then watch from the list's resourceVersion; on a
clean end or a dropped stream reconnect from the last resourceVersion seen; on 410
re-list. Transient failures back off with jitter, and honour Retry-After.

What it reads is one stream of items handed to one consumer, in order: each change
(`Change`), and around every list the markers `Listing` and `Listed` (as kopf's
continuous watch yields "listed" inside its stream). Whoever queues the items keeps the
markers in place, so a consumer knows, when it takes `Listed` off its queue, that
everything of that list came before it.

Event watches get no periodic bookmarks (the API server's watch cache is off for events),
so a quiet stream is normal: only a stream silent past `inactivity_timeout` is restarted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential,
    wait_random,
)

from eventtrace.metrics import Metrics
from eventtrace.source.frames import Frames, JsonFrames
from eventtrace.source.kube import (
    TRANSPORT_ERRORS,
    ApiError,
    Expired,
    KubeApi,
    Resource,
    StreamStalled,
    error_from_status,
)

log = logging.getLogger("eventtrace.watch")


@dataclass(frozen=True, slots=True)
class Change:
    """One object: ADDED (list items too), MODIFIED or DELETED. The object is what the
    watcher's `frames` read: a dict, or an event decoded by the schema."""

    type: str
    object: Any


@dataclass(frozen=True, slots=True)
class Listing:
    """A list begins (again, after a failed attempt or a 410): what follows, up to
    `Listed`, is one list, possibly with items seen before."""

    watcher: str


@dataclass(frozen=True, slots=True)
class Listed:
    """The list that `Listing` began is complete: every object that existed at its
    resourceVersion came before this marker."""

    watcher: str


Item = Change | Listing | Listed
Consumer = Callable[[Item], Awaitable[None]]

# Items a list page asks for: kubectl asks 500, but with the next page on its way
# meanwhile, smaller pages parse faster (less memory touched at once): listing 116 132
# events took 0.1-1.0 s less in five alternating pairs (bench/RESULTS.md, fifth round).
PAGE_SIZE = 250
# 0.25 s doubling to 30 s, plus up to 1 s of jitter so replicas do not retry in lockstep.
_backoff = wait_exponential(multiplier=0.25, max=30) + wait_random(0, 1)


class Forbidden(Exception):
    """RBAC does not allow this watch; the caller decides whether that is fatal."""


class Watcher:
    """Keeps one resource (in one namespace, or all) flowing into a consumer, forever."""

    def __init__(
        self,
        api: KubeApi,
        resource: Resource,
        consumer: Consumer,
        metrics: Metrics,
        *,
        namespace: str | None = None,
        timeouts: tuple[float, float] = (300, 900),
        retry_forbidden: bool = True,
        on_forbidden: Callable[[Resource, str], None] | None = None,
        frames: Frames | None = None,
    ) -> None:
        self.api = api
        self.frames = frames if frames is not None else JsonFrames()
        self.resource = resource
        self.consumer = consumer
        self.metrics = metrics
        self.namespace = namespace
        # timeoutSeconds asked of the server; how long a silent stream is believed.
        self.watch_timeout, self.inactivity_timeout = timeouts
        self.retry_forbidden = retry_forbidden
        self.on_forbidden = on_forbidden
        self.synced = asyncio.Event()  # the first list is in
        # A list is under way (retries included): some of its items may be handed over,
        # not all. Only a complete list, or giving up (forbidden), ends it.
        self.listing = False
        self.settled = asyncio.Event()  # listed, or given up (forbidden)
        self.healthy = False  # false while retrying
        self.resource_version = ""
        self.lists = 0
        self._flowed = False

    @property
    def name(self) -> str:
        scope = f" in {self.namespace}" if self.namespace else ""
        return f"{self.resource.label}{scope}"

    async def run(self) -> None:
        """Returns only if RBAC forbids the resource and `retry_forbidden` is off."""
        try:
            while True:
                await self._retrying(self._list)
                while True:
                    try:
                        await self._retrying(self._watch)
                    except Expired as error:
                        log.info("%s: %s; listing again", self.name, error.message or "expired")
                        self._restarted("expired")
                        break
        except Forbidden as error:
            self.healthy = False
            self.listing = False
            self.settled.set()
            if self.on_forbidden is not None:
                self.on_forbidden(self.resource, str(error))
            else:
                log.warning("%s", error)

    async def _list(self) -> None:
        path = self.resource.collection(self.namespace)
        query = {"limit": str(PAGE_SIZE)}
        upcoming: asyncio.Task[bytes] | None = None
        self.listing = True
        await self.consumer(Listing(self.name))
        try:
            page = self.frames.page(await self.api.get_bytes(path, query))
            while True:
                # Page by page, to bound memory. The next page is asked for before this one
                # is handled, so the API server answers meanwhile (pages of 500: 116 132
                # events listed in 2.4-2.7 s rather than 3.2-3.4; fifth round). An expired
                # continue token restarts the list; items seen twice are harmless (objects
                # are replaced, event counts deduplicated).
                if page.continue_token:
                    query = {"limit": str(PAGE_SIZE), "continue": page.continue_token}
                    upcoming = asyncio.create_task(self.api.get_bytes(path, query))
                    await asyncio.sleep(0)  # let the request leave
                # Each item is let go once handled (a page is 250 nested dicts): freed while
                # still in the CPU's cache, rather than all at once with the page.
                items, page.items = page.items, []
                items.reverse()
                while items:
                    await self.consumer(Change("ADDED", items.pop()))
                if upcoming is None:
                    break
                page, upcoming = self.frames.page(await upcoming), None
        finally:
            if upcoming is not None:  # the consumer failed, or we are stopping
                upcoming.cancel()
                await asyncio.gather(upcoming, return_exceptions=True)
        self.resource_version = page.resource_version
        self.listing = False
        await self.consumer(Listed(self.name))
        self.lists += 1
        self.healthy = True
        self.synced.set()
        self.settled.set()

    async def _watch(self) -> None:
        """One watch request. A clean end (timeoutSeconds) or a drop after data had flowed
        reconnects at once; failures before any data back off."""
        self._flowed = False
        try:
            await self._stream()
            reason = "timeout"
        except (StreamStalled, *TRANSPORT_ERRORS) as error:
            if not self._flowed:
                raise
            log.info("%s: stream ended (%s); reconnecting", self.name, _describe(error))
            reason = "drop"
        self._restarted(reason)

    async def _stream(self) -> None:
        query = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(int(self.watch_timeout)),
        }
        if self.resource_version:
            query["resourceVersion"] = self.resource_version
        batches = self.api.stream(
            self.resource.collection(self.namespace),
            query,
            inactivity=self.inactivity_timeout,
            deadline=self.watch_timeout + 60,
        )
        async for lines in batches:
            self.healthy = True  # the first batch, empty: accepted (a quiet stream is normal)
            for line in lines:
                if not line:
                    continue
                self._flowed = True
                frame = self.frames.frame(line)
                if frame.type == "ERROR":
                    raise error_from_status(frame.object)
                if frame.object is None:  # not a watch event as the API defines it
                    self._skipped(line)
                elif frame.type != "BOOKMARK":
                    await self.consumer(Change(frame.type, frame.object))
                if frame.resource_version:
                    self.resource_version = frame.resource_version

    async def _retrying(self, attempt: Callable[[], Awaitable[None]]) -> None:
        retrying = AsyncRetrying(
            retry=retry_if_exception(self._should_retry),
            wait=self._wait,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        async for try_ in retrying:
            with try_:
                try:
                    await attempt()
                except ApiError as error:
                    if error.status == 403 and not self.retry_forbidden:
                        raise Forbidden(self._forbidden_message(error)) from None
                    raise

    def _should_retry(self, error: BaseException) -> bool:
        if isinstance(error, Expired):
            return False
        retryable = (ApiError, StreamStalled, orjson.JSONDecodeError, *TRANSPORT_ERRORS)
        return isinstance(error, retryable)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ApiError) and error.retry_after is not None:
            return error.retry_after
        return float(_backoff(state))

    def _before_sleep(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        self.healthy = False
        reason = "drop" if isinstance(error, (StreamStalled, *TRANSPORT_ERRORS)) else "error"
        self._restarted(reason)
        wait = state.upcoming_sleep
        log.warning("%s: %s; retrying in %.1fs", self.name, _describe(error), wait)

    def _skipped(self, line: bytes) -> None:
        self.metrics.invalid_events.labels(reason="not_an_object").inc()
        shown = line[:120].decode("utf-8", "replace")
        log.warning("%s: a watch frame without an object, skipped: %s", self.name, shown)

    def _restarted(self, reason: str) -> None:
        self.metrics.watch_restarts.labels(resource=self.resource.label, reason=reason).inc()

    def _forbidden_message(self, error: ApiError) -> str:
        group = self.resource.group or '""'
        return (
            f"not allowed to list/watch {self.resource.label} ({error.message}); owner chains "
            f"stop at {self.resource.kind} objects. Grant get/list/watch on {self.resource.plural} "
            f"in API group {group} (Helm: clusterRole.extraRules)"
        )


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "failed"
    if isinstance(error, ApiError):
        return str(error)
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}" if text != type(error).__name__ else text
