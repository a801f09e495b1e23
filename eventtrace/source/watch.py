"""The watch loop, after kopf's: list, then watch from the list's resourceVersion; on a
clean end or a dropped stream reconnect from the last resourceVersion seen; on 410
re-list. Failures back off with jitter (one policy: `wait_before_retry`), and honour
Retry-After within bounds.

What it reads is one stream of items handed to one consumer, in order: each change
(`Change`), and around every list the markers `Listing` and `Listed` (as kopf's
continuous watch yields "listed" inside its stream). Whoever queues the items keeps the
markers in place, so a consumer knows, when it takes `Listed` off its queue, that
everything of that list came before it.

Event watches get no periodic bookmarks (the API server's watch cache is off for events),
so a quiet stream is normal: only a stream silent past `inactivity_timeout` is restarted.
A stream that ends the moment it opens, with nothing in it, is a failure (as client-go's
reflector counts it), not a reason to reopen it at once.

Nothing the server sends stops a watch for good. A frame or a list item that cannot be
decoded (frames.py) is skipped, counted and logged, and the watch goes on from the next
one; if it could only resume before that frame (its resourceVersion unreadable), it
lists again instead. RBAC refusing a resource (403, say during a rollout) is retried
too, slowly, and said once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_never,
    wait_exponential,
    wait_random,
)
from tenacity.stop import StopBaseT

from eventtrace.metrics import Metrics
from eventtrace.source.frames import Frame, Frames, JsonFrames, Page, Undecodable, oversized
from eventtrace.source.kube import (
    TRANSPORT_ERRORS,
    ApiError,
    Expired,
    KubeApi,
    Oversized,
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

# ---- the one retry policy ------------------------------------------------------------------

# 0.25 s doubling to 30 s, plus up to 1 s of jitter so replicas do not retry in lockstep.
BACKOFF = wait_exponential(multiplier=0.25, max=30) + wait_random(0, 1)
# RBAC refusing a resource changes by someone's hand: 60 s doubling to 10 min, jittered.
FORBIDDEN_BACKOFF = wait_exponential(multiplier=60, max=600) + wait_random(0, 30)
# Retry-After is honoured within these bounds: 0 made a storm of requests; 3600, an hour
# of silence.
RETRY_AFTER_SECONDS = (1.0, 60.0)
# A watch the server ends sooner than this with nothing in it failed (client-go: 1 s).
SHORT_WATCH_SECONDS = 1.0


def wait_before_retry(state: RetryCallState) -> float:
    """How long to wait before the next attempt: the one policy of every retry against
    the API server (a tenacity `wait`)."""
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, ApiError):
        if error.retry_after is not None:
            low, high = RETRY_AFTER_SECONDS
            return min(max(error.retry_after, low), high)
        if error.status == 403:
            return float(FORBIDDEN_BACKOFF(state))
    return float(BACKOFF(state))


def retrying(
    retry: Callable[[BaseException], bool],
    before_sleep: Callable[[RetryCallState], None],
    stop: StopBaseT = stop_never,
) -> AsyncRetrying:
    """Attempts of one operation under `wait_before_retry`: `retry` says which failures
    are retried, `before_sleep` is told of each; the last failure is raised."""
    return AsyncRetrying(
        retry=retry_if_exception(retry),
        wait=wait_before_retry,
        before_sleep=before_sleep,
        stop=stop,
        reraise=True,
    )


class ShortWatch(Exception):
    """The server ended a watch at once, with nothing in it."""


class Unresumable(Exception):
    """A watch can only resume before a frame it cannot read: list again."""


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
        on_forbidden: Callable[[Resource, str], None] | None = None,
        frames: Frames | None = None,
        resource_version: str = "",
    ) -> None:
        """`on_forbidden(resource, message)` is told, once, when RBAC starts refusing the
        resource (else the message is logged); the watch retries it slowly meanwhile. With a
        `resource_version` (saved by a process before), the first watch resumes from it,
        no list first; if it is too old (410), a list follows as usual."""
        self.api = api
        self.frames = frames if frames is not None else JsonFrames()
        self.resource = resource
        self.consumer = consumer
        self.metrics = metrics
        self.namespace = namespace
        # timeoutSeconds asked of the server; how long a silent stream is believed.
        self.watch_timeout, self.inactivity_timeout = timeouts
        self.on_forbidden = on_forbidden
        self.synced = asyncio.Event()  # the first list is in (or a resumed watch open)
        # A list is under way (retries included): some of its items may be handed over,
        # not all. Only a complete list ends it.
        self.listing = False
        self.settled = asyncio.Event()  # listed, or refused by RBAC (and retrying)
        self.healthy = False  # false while retrying
        self.forbidden = False  # RBAC refuses the resource (said once; retrying slowly)
        self.resource_version = resource_version
        self.lists = 0
        self._flowed = False
        # The watch can only resume before a frame it could not read (resourceVersion
        # unknown), until a later frame moves it on.
        self._behind_unreadable = False

    @property
    def name(self) -> str:
        scope = f" in {self.namespace}" if self.namespace else ""
        return f"{self.resource.label}{scope}"

    async def run(self) -> None:
        """Never returns: only cancelled, or a failure of the consumer's, ends it."""
        resuming = bool(self.resource_version)
        while True:
            if not resuming:
                await self._retrying(self._list)
            resuming = False
            while True:
                try:
                    await self._retrying(self._watch)
                except Expired as error:
                    log.info("%s: %s; listing again", self.name, error.message or "expired")
                    self._restarted("expired")
                    break
                except Unresumable as error:
                    log.warning("%s: %s; listing again", self.name, error)
                    self._restarted("unreadable")
                    break

    async def _list(self) -> None:
        path = self.resource.collection(self.namespace)
        query = {"limit": str(PAGE_SIZE)}
        upcoming: asyncio.Task[bytes] | None = None
        self.listing = True
        await self.consumer(Listing(self.name))
        position = 0  # of the page's first item, in the whole list
        try:
            accept = self.frames.list_accept
            page = self.frames.page(await self.api.get_bytes(path, query, accept=accept))
            while True:
                # Page by page, to bound memory. The next page is asked for before this one
                # is handled, so the API server answers meanwhile (pages of 500: 116 132
                # events listed in 2.4-2.7 s rather than 3.2-3.4; fifth round). An expired
                # continue token restarts the list; items seen twice are harmless (objects
                # are replaced, event counts deduplicated).
                if page.continue_token:
                    query = {"limit": str(PAGE_SIZE), "continue": page.continue_token}
                    upcoming = asyncio.create_task(self.api.get_bytes(path, query, accept=accept))
                    await asyncio.sleep(0)  # let the request leave
                position += self._skip_items(page, position)
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
        self._behind_unreadable = False
        self.listing = False
        await self.consumer(Listed(self.name))
        self.lists += 1
        self.healthy = True
        if self.forbidden:
            self.forbidden = False
            log.info("%s: allowed again, and listed", self.name)
        self.synced.set()
        self.settled.set()

    async def _watch(self) -> None:
        """One watch request. A clean end (timeoutSeconds) or a drop after data had flowed
        reconnects at once; failures before any data back off, and so does a clean end
        at once with nothing in it."""
        self._flowed = False
        opened = time.monotonic()
        try:
            await self._stream()
            reason = "timeout"
        except (StreamStalled, *TRANSPORT_ERRORS) as error:
            if not self._flowed:
                raise
            log.info("%s: stream ended (%s); reconnecting", self.name, _describe(error))
            reason = "drop"
        if self._behind_unreadable:
            raise Unresumable(
                f"cannot resume the watch after resourceVersion {self.resource_version or '0'}"
                ": the next frame is one it could not read"
            )
        lasted = time.monotonic() - opened
        if not self._flowed and lasted < SHORT_WATCH_SECONDS and reason == "timeout":
            raise ShortWatch(f"the API server ended the watch after {lasted:.2f}s, empty")
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
            accept=self.frames.watch_accept,
        )
        async for lines in batches:
            self.healthy = True  # the first batch, empty: accepted (a quiet stream is normal)
            if not self.synced.is_set():  # resumed where a process before stopped
                self.synced.set()
                self.settled.set()
            for line in lines:
                if isinstance(line, Oversized):
                    frame = oversized(line, line.size)
                elif not line:
                    continue
                else:
                    frame = self.frames.frame(line)
                self._flowed = True
                if frame.type == "ERROR":
                    raise error_from_status(frame.object)
                if frame.invalid is not None:
                    self._skip_frame(frame)
                elif frame.type != "BOOKMARK":
                    await self.consumer(Change(frame.type, frame.object))
                if frame.resource_version:
                    self.resource_version = frame.resource_version
                    self._behind_unreadable = False

    async def _retrying(self, attempt: Callable[[], Awaitable[None]]) -> None:
        async for try_ in retrying(self._should_retry, self._before_sleep):
            with try_:
                await attempt()

    def _should_retry(self, error: BaseException) -> bool:
        if isinstance(error, Expired):
            return False
        retryable = (ApiError, StreamStalled, ShortWatch, Undecodable, *TRANSPORT_ERRORS)
        return isinstance(error, retryable)

    def _before_sleep(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        self.healthy = False
        wait = state.upcoming_sleep
        if isinstance(error, ApiError) and error.status == 403:
            self._restarted("forbidden")
            if not self.forbidden:  # said once, not at every retry
                self.forbidden = True
                self.settled.set()  # nothing need wait for this list meanwhile
                message = self._forbidden_message(error)
                if self.on_forbidden is not None:
                    self.on_forbidden(self.resource, message)
                else:
                    log.warning("%s", message)
            log.debug("%s: still forbidden; retrying in %.0fs", self.name, wait)
            return
        if isinstance(error, ShortWatch):
            reason = "short"
        elif isinstance(error, (StreamStalled, *TRANSPORT_ERRORS)):
            reason = "drop"
        else:
            reason = "error"
        self._restarted(reason)
        log.warning("%s: %s; retrying in %.1fs", self.name, _describe(error), wait)

    def _skip_frame(self, frame: Frame) -> None:
        """A watch frame that cannot be used: counted, logged, left behind."""
        assert frame.invalid is not None
        self.metrics.invalid_events.labels(reason=frame.invalid.reason).inc()
        after = self.resource_version or "0"
        if frame.resource_version:
            where = f"the watch frame at resourceVersion {frame.resource_version}"
        else:
            where = f"a watch frame after resourceVersion {after}"
            # Resuming from here would bring it again: a later frame must move the watch on.
            self._behind_unreadable = True
        log.warning("%s: skipped %s: %s", self.name, where, frame.invalid.detail)

    def _skip_items(self, page: Page, first: int) -> int:
        """List items that cannot be used: counted and logged. Returns how many items
        the page had."""
        for position, problem in page.invalid:
            self.metrics.invalid_events.labels(reason=problem.reason).inc()
            log.warning(
                "%s: skipped item %d of the list at resourceVersion %s: %s",
                self.name,
                first + position,
                page.resource_version or "?",
                problem.detail,
            )
        return len(page.items) + len(page.invalid)

    def _restarted(self, reason: str) -> None:
        self.metrics.watch_restarts.labels(resource=self.resource.label, reason=reason).inc()

    def _forbidden_message(self, error: ApiError) -> str:
        group = self.resource.group or '""'
        meanwhile = (
            f"owner chains stop at {self.resource.kind} objects meanwhile. "
            if self.on_forbidden is not None
            else ""
        )
        return (
            f"not allowed to list/watch {self.resource.label} ({error.message}); retrying "
            f"every few minutes, {meanwhile}Grant get/list/watch on {self.resource.plural} "
            f"in API group {group} (Helm: clusterRole.extraRules)"
        )


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "failed"
    if isinstance(error, ApiError):
        return str(error)
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}" if text != type(error).__name__ else text
