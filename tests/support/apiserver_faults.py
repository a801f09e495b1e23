"""Fault injection and the request log of the test API server.

Tests arm rules (`server.faults.fail(...)`, `.throttle(...)`, `.forbid(...)`, `.delay(...)`,
`.expire_watch(...)`, `.end_watch(...)`); each request is matched against them in order.
`.rewrite(old, new)` replaces bytes in every body and watch frame written, as they go on
the wire: what a real server would never send (not UTF-8, nested 1,000 deep) for an
object it stores, so it comes again on every list and every watch replaying it. Every
request is recorded so a test can check what the client did (re-listed, waited for
Retry-After...).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from support.apiserver_resources import ApiError, ResourceType, error_for_status, forbidden

DEFAULT_USER = "system:serviceaccount:eventtrace:eventtrace"


@dataclass
class RequestInfo:
    """What a request is about, like the real server's RequestInfo."""

    method: str
    path: str
    query: dict[str, str]
    verb: str  # get | list | watch | create | update | delete | discovery | version | health
    resource: ResourceType | None = None
    namespace: str | None = None
    name: str = ""
    accept: str = ""  # the Accept header, as sent


@dataclass
class RequestRecord:
    """One request as the server saw it. `status` is set once the answer is decided."""

    time: float  # time.monotonic() at arrival
    method: str
    path: str
    query: dict[str, str]
    verb: str
    resource: str | None  # plural, e.g. "events"
    group: str | None
    namespace: str | None
    name: str
    status: int | None = None
    accept: str = ""

    @property
    def is_watch(self) -> bool:
        return self.verb == "watch"


@dataclass(eq=False)
class FaultRule:
    """One armed fault. `times=None` means until removed."""

    kind: str  # "status" | "forbid" | "delay" | "expire_watch" | "end_watch"
    resource: str | None = None
    group: str | None = None
    verbs: frozenset[str] | None = None
    path: str | None = None  # a path prefix
    times: int | None = 1
    status: int = 500
    retry_after: int | None = None
    message: str | None = None
    seconds: float = 0.0
    hits: int = 0

    def matches(self, info: RequestInfo) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.path is not None and not info.path.startswith(self.path):
            return False
        if self.verbs is not None and info.verb not in self.verbs:
            return False
        if self.resource is not None or self.group is not None:
            if info.resource is None:
                return False
            if self.resource is not None and info.resource.plural != self.resource:
                return False
            if self.group is not None and info.resource.group != self.group:
                return False
        return True

    def consume(self) -> None:
        self.hits += 1
        if self.times is not None:
            self.times -= 1


def _verbs(verbs: Collection[str] | str | None) -> frozenset[str] | None:
    if verbs is None:
        return None
    return frozenset([verbs] if isinstance(verbs, str) else verbs)


class Faults:
    """The armed fault rules. Every method returns the rule, which `remove()` disarms."""

    def __init__(self, user: str = DEFAULT_USER) -> None:
        self.user = user
        self.rules: list[FaultRule] = []
        self.rewrites: list[tuple[bytes, bytes]] = []

    def _arm(self, rule: FaultRule) -> FaultRule:
        self.rules.append(rule)
        return rule

    def fail(
        self,
        status: int = 500,
        *,
        resource: str | None = None,
        group: str | None = None,
        verbs: Collection[str] | str | None = None,
        path: str | None = None,
        times: int | None = 1,
        retry_after: int | None = None,
        message: str | None = None,
    ) -> FaultRule:
        """Answer `times` matching requests with `status` and a real-looking Status body."""
        rule = FaultRule("status", resource, group, _verbs(verbs), path, times, status)
        rule.retry_after, rule.message = retry_after, message
        return self._arm(rule)

    def throttle(
        self,
        *,
        resource: str | None = None,
        group: str | None = None,
        verbs: Collection[str] | str | None = None,
        path: str | None = None,
        times: int | None = 1,
        retry_after: int = 1,
    ) -> FaultRule:
        """429 TooManyRequests with `Retry-After: retry_after`."""
        return self.fail(
            429,
            resource=resource,
            group=group,
            verbs=verbs,
            path=path,
            times=times,
            retry_after=retry_after,
        )

    def forbid(
        self,
        resource: str,
        *,
        group: str | None = None,
        verbs: Collection[str] | str | None = None,
        times: int | None = None,
    ) -> FaultRule:
        """403 Forbidden, RBAC-style message, for list/watch/get... of a resource."""
        return self._arm(FaultRule("forbid", resource, group, _verbs(verbs), None, times))

    def delay(
        self,
        seconds: float,
        *,
        resource: str | None = None,
        group: str | None = None,
        verbs: Collection[str] | str | None = None,
        path: str | None = None,
        times: int | None = None,
    ) -> FaultRule:
        """Wait `seconds` before answering matching requests."""
        rule = FaultRule("delay", resource, group, _verbs(verbs), path, times)
        rule.seconds = seconds
        return self._arm(rule)

    def expire_watch(
        self, resource: str | None = None, *, group: str | None = None, times: int = 1
    ) -> FaultRule:
        """The next `times` matching watches get an in-stream ERROR 410 Expired, then EOF."""
        return self._arm(
            FaultRule("expire_watch", resource, group, frozenset({"watch"}), None, times)
        )

    def end_watch(
        self, resource: str | None = None, *, group: str | None = None, times: int | None = None
    ) -> FaultRule:
        """Matching watches are accepted (200, headers), then end at once: a clean end of
        the body, no frame."""
        return self._arm(FaultRule("end_watch", resource, group, frozenset({"watch"}), None, times))

    def rewrite(self, old: bytes, new: bytes) -> None:
        """Replace `old` by `new` in every body and watch frame written from now on."""
        self.rewrites.append((old, new))

    def rewritten(self, data: bytes) -> bytes:
        for old, new in self.rewrites:
            data = data.replace(old, new)
        return data

    def remove(self, rule: FaultRule) -> None:
        if rule in self.rules:
            self.rules.remove(rule)

    def clear(self) -> None:
        self.rules.clear()
        self.rewrites.clear()

    # ---- applied by the server -------------------------------------------------------

    def _take(self, kind: str, info: RequestInfo) -> FaultRule | None:
        for rule in self.rules:
            if rule.kind == kind and rule.matches(info):
                rule.consume()
                return rule
        return None

    async def apply_delay(self, info: RequestInfo) -> None:
        rule = self._take("delay", info)
        if rule is not None:
            await asyncio.sleep(rule.seconds)

    def error_for(self, info: RequestInfo) -> ApiError | None:
        """The injected failure for this request, if any (403 before other statuses)."""
        rule = self._take("forbid", info)
        if rule is not None and info.resource is not None:
            return forbidden(info.resource, info.verb, self.user, info.namespace, info.name)
        rule = self._take("status", info)
        if rule is not None:
            return error_for_status(rule.status, rule.message, rule.retry_after)
        return None

    def take_watch_expiry(self, info: RequestInfo) -> bool:
        return self._take("expire_watch", info) is not None

    def take_watch_end(self, info: RequestInfo) -> bool:
        return self._take("end_watch", info) is not None


@dataclass
class RequestLog:
    """Every request received, in arrival order."""

    records: list[RequestRecord] = field(default_factory=list)

    def add(self, info: RequestInfo) -> RequestRecord:
        resource = info.resource
        record = RequestRecord(
            time=time.monotonic(),
            method=info.method,
            path=info.path,
            query=info.query,
            verb=info.verb,
            resource=resource.plural if resource else None,
            group=resource.group if resource else None,
            namespace=info.namespace,
            name=info.name,
            accept=info.accept,
        )
        self.records.append(record)
        return record

    def matching(
        self,
        *,
        resource: str | None = None,
        verb: str | None = None,
        group: str | None = None,
        status: int | None = None,
    ) -> list[RequestRecord]:
        return [
            r
            for r in self.records
            if (resource is None or r.resource == resource)
            and (verb is None or r.verb == verb)
            and (group is None or r.group == group)
            and (status is None or r.status == status)
        ]

    async def wait_for(
        self, predicate: Callable[[RequestRecord], bool], *, count: int = 1, within: float = 5.0
    ) -> list[RequestRecord]:
        """Wait until `count` recorded requests satisfy `predicate`; returns them."""
        deadline = time.monotonic() + within
        while True:
            found = [r for r in self.records if predicate(r)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(found)} of {count} matching requests in {within}s")
            await asyncio.sleep(0.01)

    def clear(self) -> None:
        self.records.clear()
