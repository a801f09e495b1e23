"""A workload watch's feed into the index: DELETED makes a tombstone, and so does a
re-list that no longer has an object (its DELETED was never delivered), once, and only
for the feed's own kind, API group and namespace. Tombstones go at the sweep."""

from __future__ import annotations

import time
from typing import Any, cast

from eventtrace.core.model import ObjectRef
from eventtrace.core.owners import ObjectIndex
from eventtrace.metrics import Metrics
from eventtrace.source.resolve import TOMBSTONE_SECONDS, Resolver
from eventtrace.source.watch import Change, Listed, Listing


def raw(name: str, uid: str, namespace: str = "shop", api_version: str = "apps/v1") -> Any:
    return {
        "apiVersion": api_version,
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": "1"},
    }


def resolver() -> Resolver:
    return Resolver(cast(Any, None), ObjectIndex(), Metrics())  # no fetch is asked of it


def known(r: Resolver, kind: str, name: str, namespace: str = "shop") -> bool:
    return r.index.find(ObjectRef(kind, name, namespace)) is not None


def after_the_tombstones(r: Resolver) -> int:
    return r.sweep(time.monotonic() + TOMBSTONE_SECONDS + 1)


async def test_a_relist_buries_what_it_no_longer_has_once() -> None:
    r = resolver()
    feed = r.feed("ReplicaSet", "apps")
    for name, uid in [("a", "u-a"), ("b", "u-b"), ("c", "u-c")]:
        feed.change("ADDED", raw(name, uid))
    feed.listed({"u-a", "u-b", "u-c"})
    assert r.sweep(time.monotonic()) == 0
    feed.listed({"u-a", "u-c"})  # b was deleted while the watch was down
    feed.listed({"u-a", "u-c"})  # and a second re-list buries it no second time
    assert known(r, "ReplicaSet", "b"), "kept for late events until the sweep"
    assert after_the_tombstones(r) == 1
    assert [known(r, "ReplicaSet", n) for n in "abc"] == [True, False, True]


async def test_deleted_is_buried_and_a_relist_does_not_bury_it_again() -> None:
    r = resolver()
    feed = r.feed("ReplicaSet", "apps")
    feed.change("ADDED", raw("a", "u-a"))
    feed.change("DELETED", raw("a", "u-a"))
    feed.listed(set())
    assert after_the_tombstones(r) == 1
    assert not known(r, "ReplicaSet", "a")


async def test_a_relist_leaves_other_kinds_groups_and_namespaces_alone() -> None:
    r = resolver()
    shop = r.feed("ReplicaSet", "apps", namespace="shop")
    shop.change("ADDED", raw("mine", "u-1"))
    r.feed("ReplicaSet", "apps", namespace="other").change("ADDED", raw("x", "u-2", "other"))
    r.feed("ReplicaSet", "example.com").change(
        "ADDED", raw("y", "u-3", api_version="example.com/v1")
    )
    r.feed("Deployment", "apps").change("ADDED", raw("z", "u-4"))
    shop.listed(set())
    assert after_the_tombstones(r) == 1
    assert not known(r, "ReplicaSet", "mine")
    assert known(r, "ReplicaSet", "x", "other")
    assert known(r, "ReplicaSet", "y")
    assert known(r, "Deployment", "z")


async def test_a_list_between_its_markers_buries_what_it_did_not_bring() -> None:
    r = resolver()
    feed = r.feed("ReplicaSet", "apps")
    for name, uid in [("a", "u-a"), ("b", "u-b")]:
        feed.change("ADDED", raw(name, uid))
    await feed(Listing("replicasets.apps"))
    await feed(Change("ADDED", raw("a", "u-a")))
    await feed(Listed("replicasets.apps"))
    assert after_the_tombstones(r) == 1
    assert [known(r, "ReplicaSet", n) for n in "ab"] == [True, False]
