"""The object index by hand: by uid and by kind/namespace/name, newest version wins, forget
only what is still current, and chains up the controller owners."""

from __future__ import annotations

from eventtrace.core.model import EventState, KubeObject, ObjectRef, OwnerRef
from eventtrace.core.owners import ObjectIndex


def obj(
    kind: str, name: str, uid: str, version: str, owner: KubeObject | None = None
) -> KubeObject:
    owners = (OwnerRef(owner.ref, controller=True),) if owner else ()
    return KubeObject(ObjectRef(kind, name, "shop", uid, "v1"), owners, "", version)


def test_found_by_uid_or_by_name_and_counted_once_per_name() -> None:
    index = ObjectIndex()
    web = obj("Deployment", "web", "d1", "5")
    index.put(web)
    index.put(obj("Deployment", "web", "d1", "4"))  # older: ignored
    assert len(index) == 1
    assert index.find(ObjectRef("Deployment", "web", "shop", "d1")) is web
    assert index.find(ObjectRef("Deployment", "web", "shop")) is web  # no uid: by name
    assert index.find(ObjectRef("Deployment", "web", "other")) is None
    assert index.find(ObjectRef("ReplicaSet", "web", "shop")) is None


def test_a_recreated_object_replaces_the_old_one_by_name_and_forget_keeps_it() -> None:
    index = ObjectIndex()
    old, new = obj("Pod", "web-0", "p1", "10"), obj("Pod", "web-0", "p2", "20")
    index.put(old)
    index.put(new)
    assert len(index) == 1
    assert index.find(ObjectRef("Pod", "web-0", "shop")) is new
    index.forget(old)  # the old uid's deletion arrives late: the new one stays
    assert index.find(ObjectRef("Pod", "web-0", "shop")) is new
    assert len(index) == 1
    index.forget(new)
    assert len(index) == 0
    assert index.find(ObjectRef("Pod", "web-0", "shop")) is None
    index.put(new)  # and the namespace can come back after it emptied
    assert index.find(ObjectRef("Pod", "web-0", "shop", "p2")) is new


def test_the_chain_goes_up_the_controllers_to_the_root() -> None:
    index = ObjectIndex()
    deployment = obj("Deployment", "web", "d1", "1")
    replicaset = obj("ReplicaSet", "web-5d", "r1", "2", owner=deployment)
    pod = obj("Pod", "web-5d-x", "p1", "3", owner=replicaset)
    for each in (pod, replicaset, deployment):
        index.put(each)
    chain = index.chain(ObjectRef("Pod", "web-5d-x", "shop", "p1", "v1"))
    assert [link.identity for link in chain] == ["p1", "r1", "d1"]
    assert [link.known for link in chain] == [pod, replicaset, deployment]


def test_unknown_owners_are_what_the_chain_has_unresolved() -> None:
    deployment = obj("Deployment", "web", "d1", "1")
    replicaset = obj("ReplicaSet", "web-5d", "r1", "2", owner=deployment)
    pod = obj("Pod", "web-5d-x", "p1", "3", owner=replicaset)
    pod_ref = ObjectRef("Pod", "web-5d-x", "shop", "p1", "v1")

    def unresolved(index: ObjectIndex) -> list[ObjectRef]:
        return [link.ref for link in index.chain(pod_ref) if link.known is None]

    everything, no_replicaset, nothing = ObjectIndex(), ObjectIndex(), ObjectIndex()
    for each in (pod, replicaset, deployment):
        everything.put(each)
    no_replicaset.put(pod)  # the chain ends at the ReplicaSet, as its ownerReference says
    for index in (everything, no_replicaset, nothing):
        assert index.unknown_owners(pod_ref) == unresolved(index)
    assert everything.unknown_owners(pod_ref) == []
    assert no_replicaset.unknown_owners(pod_ref) == [replicaset.ref]
    assert nothing.unknown_owners(pod_ref) == [pod_ref]


def test_an_owner_cycle_ends_both_walks() -> None:
    index = ObjectIndex()
    a_ref, b_ref = (
        ObjectRef("Thing", "a", "shop", "a1", "v1"),
        ObjectRef("Thing", "b", "shop", "b1", "v1"),
    )
    index.put(KubeObject(a_ref, (OwnerRef(b_ref, controller=True),), "", "1"))
    index.put(KubeObject(b_ref, (OwnerRef(a_ref, controller=True),), "", "1"))
    assert [link.identity for link in index.chain(a_ref)] == ["a1", "b1"]
    assert index.unknown_owners(a_ref) == []


def test_owner_hints_are_forgotten_by_arrival() -> None:
    """A hint lives as long as events keep naming the child; then it goes, after two
    housekeeping turns (never by the event's own time): the index does not grow for ever."""
    index = ObjectIndex()
    rs = ObjectRef("ReplicaSet", "web-1", "shop", "rs-uid", "apps/v1")

    def created(pod: str) -> None:
        event = EventState("e-" + pod, "e", "shop", "SuccessfulCreate", f"Created pod: {pod}",
                           "Normal", rs, 1, 0, 0)  # fmt: skip
        index.learn_from(event)

    created("web-1-a")
    created("web-1-b")
    assert index.forget_hints() == 0
    created("web-1-a")  # named again: kept
    assert index.forget_hints() == 1
    assert index.hinted_owner(ObjectRef("Pod", "web-1-a", "shop")) == rs
    assert index.hinted_owner(ObjectRef("Pod", "web-1-b", "shop")) is None
