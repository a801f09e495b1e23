"""The API server's resources, as its discovery documents list them: which resource serves
a kind (an owner reference's, for owner lookups), and what a kubectl user names
(`deploy/redis`, `sts web`, `rollouts.argoproj.io/demo`, for `tree`).

A resource type is found as kubectl finds it (custom resources included): by plural,
singular name, kind or short name,
optionally qualified by its group (`deployments.apps`) or version and group
(`deployments.v1.apps`). The core group wins a name several groups serve (`events`), then
the groups in the order the server lists them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from eventtrace.source.kube import TRANSPORT_ERRORS, ApiError, KubeApi, Resource

log = logging.getLogger("eventtrace.discovery")


class TargetError(Exception):
    """What was asked for cannot be: the message is the one line a kubectl user expects."""


@dataclass(frozen=True, slots=True)
class Discovered:
    """A resource and the names kubectl knows it by."""

    resource: Resource
    singular: str = ""
    short_names: tuple[str, ...] = ()

    def answers_to(self, word: str) -> bool:
        r = self.resource
        return word in (r.plural, self.singular, r.kind.lower())


def split_target(words: list[str]) -> tuple[str, str]:
    """(type, name) of `TYPE/NAME` or `TYPE NAME`."""
    if len(words) == 1 and "/" in words[0]:
        kind, _, name = words[0].partition("/")
    elif len(words) == 2 and "/" not in words[0] and "/" not in words[1]:
        kind, name = words
    elif len(words) == 1:
        raise TargetError(
            f'error: name the object: TYPE/NAME, e.g. "{words[0]}/NAME" '
            "(one object, and its tree: what it owns, what they own)"
        )
    else:
        raise TargetError(
            "error: one object at a time: TYPE/NAME or TYPE NAME, e.g. deployment/redis"
        )
    if not kind or not name or "/" in name:
        given = "/".join(words)
        raise TargetError(
            "error: arguments in resource/name form must have a single resource and name: "
            f'"{given}"'
        )
    return kind, name


class Discovery:
    """The server's resources, read once (core first, then every group's preferred
    version, in parallel); and any other group version an owner reference names."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self._preferred: list[Discovered] | None = None
        self._by_version: dict[str, list[Discovered] | None] = {}

    async def preferred(self) -> list[Discovered]:
        if self._preferred is None:
            core, groups = await asyncio.gather(self.api.get("/api/v1"), self.api.get("/apis"))
            versions = ["v1"]
            for group in (groups or {}).get("groups") or []:
                version = (group.get("preferredVersion") or {}).get("groupVersion")
                if not version:
                    listed = group.get("versions") or [{}]
                    version = listed[0].get("groupVersion")
                if version:
                    versions.append(str(version))
            self._by_version["v1"] = _discovered("v1", core)
            rest = await asyncio.gather(*(self._group_version(version) for version in versions[1:]))
            found = list(self._by_version["v1"] or [])
            for listed in rest:
                found.extend(listed or [])
            self._preferred = found
        return self._preferred

    async def resource(self, word: str) -> Resource:
        """The resource `word` names, as kubectl reads it; TargetError if none."""
        word = word.lower()
        name, _, qualifier = word.partition(".")
        candidates = await self.preferred()
        if qualifier:
            candidates = [
                d
                for d in candidates
                if qualifier in (d.resource.group, f"{d.resource.version}.{d.resource.group}")
            ]
        for matches in (
            lambda d: d.answers_to(name),
            lambda d: name in d.short_names,
        ):
            for discovered in candidates:
                if matches(discovered):
                    return discovered.resource
        raise TargetError(f'error: the server doesn\'t have a resource type "{word}"')

    async def for_kind(self, api_version: str, kind: str) -> Resource | None:
        """The resource serving `kind` in `api_version` (an owner reference's), or None."""
        api_version = api_version or "v1"
        listed = self._by_version.get(api_version)
        if api_version not in self._by_version:
            listed = await self._group_version(api_version)
        for discovered in listed or []:
            if discovered.resource.kind == kind:
                return discovered.resource
        return None

    async def _group_version(self, api_version: str) -> list[Discovered] | None:
        path = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        try:
            listing = await self.api.get(path)
        except ApiError as error:
            # An aggregated API that is down (metrics.k8s.io): kubectl warns and goes on.
            log.debug("discovery of %s failed: %s", api_version, error)
            listing = None
            if error.status in (401, 403):
                raise
        except TRANSPORT_ERRORS as error:
            log.debug("discovery of %s failed: %s", api_version, error)
            return None
        found = _discovered(api_version, listing) if listing is not None else None
        self._by_version[api_version] = found
        return found


def _discovered(api_version: str, listing: Any) -> list[Discovered]:
    group, _, version = api_version.rpartition("/")
    found = []
    for item in (listing or {}).get("resources") or []:
        name = str(item.get("name") or "")
        kind = str(item.get("kind") or "")
        if not name or "/" in name or not kind:
            continue  # subresources like pods/log
        found.append(
            Discovered(
                Resource(group, version, name, kind, bool(item.get("namespaced"))),
                singular=str(item.get("singularName") or "").lower(),
                short_names=tuple(str(s).lower() for s in item.get("shortNames") or ()),
            )
        )
    return found
