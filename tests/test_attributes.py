"""The attributes of event and object spans, written out by hand for the kinds that
differ: the semantic-convention pair, a Node's name winning over the reporting host, a
Namespace's name, a kind without a pair, no uid, an object not found, and empty strings
left out."""

from __future__ import annotations

import pytest

from eventtrace.core.episodes import Episode, EventNote, ObjectEntry, object_spans
from eventtrace.core.model import EventState, KubeObject, ObjectRef, Occurrence
from eventtrace.core.owners import Link
from eventtrace.core.spans import event_span

BASE = {
    "eventtrace.occurrences": 2,
    "k8s.event.count": 3,
    "k8s.event.message": "something happened",
    "k8s.event.name": "thing.17a",
    "k8s.event.reason": "Happened",
    "k8s.event.start_time": "1970-01-01T00:00:00.000000001Z",  # its first occurrence
    "k8s.event.type": "Normal",
    "k8s.event.uid": "e-uid",
    "k8s.node.name": "node-7",  # the reporting host
}


# What event and object spans both say about the object, for a known object: a Pod (its
# semantic-convention pair), a Namespace (its own name, not the empty namespace it lives
# in), a kind with no pair and no uid.
ABOUT_AN_OBJECT: list[tuple[ObjectRef, dict[str, object]]] = [
    (
        ObjectRef("Pod", "web-1", "shop", "p-uid", "v1"),
        {
            "k8s.object.kind": "Pod",
            "k8s.object.name": "web-1",
            "k8s.object.uid": "p-uid",
            "k8s.object.api_version": "v1",
            "k8s.namespace.name": "shop",
            "k8s.pod.name": "web-1",
            "k8s.pod.uid": "p-uid",
        },
    ),
    (
        ObjectRef("Namespace", "shop", "", "ns-uid", "v1"),
        {
            "k8s.object.kind": "Namespace",
            "k8s.object.name": "shop",
            "k8s.object.uid": "ns-uid",
            "k8s.object.api_version": "v1",
            "k8s.namespace.name": "shop",
            "k8s.namespace.uid": "ns-uid",
        },
    ),
    (
        ObjectRef("Widget", "w", "shop", "", "example.com/v1"),
        {
            "k8s.object.kind": "Widget",
            "k8s.object.name": "w",
            "k8s.object.api_version": "example.com/v1",
            "k8s.namespace.name": "shop",
        },
    ),
]


def attributes(involved: ObjectRef, resolved: ObjectRef | None = None) -> dict[str, object]:
    state = EventState(
        uid="e-uid",
        name="thing.17a",
        namespace=involved.namespace,
        reason="Happened",
        message="something happened",
        type="Normal",
        involved=involved,
        count=3,
        first_ns=1,
        last_ns=2,
        host="node-7",
    )
    link = Link("identity", resolved or involved, None)
    span = event_span(
        Occurrence(state, previous_count=1, start_ns=1, end_ns=2),
        trace_id="1" * 32,
        span_id="2" * 16,
        parent_id="3" * 16,
        involved=link,
        cluster="c",
    )
    return dict(span.attributes)


@pytest.mark.parametrize(
    ("involved", "resolved", "expected"),
    [
        *[(ref, None, expected) for ref, expected in ABOUT_AN_OBJECT],
        (  # kubelet names a Node by its name as uid: no uid at all, its name wins
            ObjectRef("Node", "node-1", "", "node-1", ""),
            None,
            {"k8s.object.kind": "Node", "k8s.object.name": "node-1", "k8s.node.name": "node-1"},
        ),
        (  # ... unless the Node is known: its real uid
            ObjectRef("Node", "node-1", "", "node-1", ""),
            ObjectRef("Node", "node-1", "", "n-uid", "v1"),
            {
                "k8s.object.kind": "Node",
                "k8s.object.name": "node-1",
                "k8s.object.uid": "n-uid",
                "k8s.node.name": "node-1",
                "k8s.node.uid": "n-uid",
            },
        ),
    ],
)
def test_event_span_attributes(
    involved: ObjectRef, resolved: ObjectRef | None, expected: dict[str, object]
) -> None:
    assert attributes(involved, resolved) == {**BASE, **expected}


def object_attributes(ref: ObjectRef, known: bool) -> dict[str, object]:
    link = Link("identity", ref, KubeObject(ref) if known else None)
    episode = Episode(link, "1" * 32, start_ns=1, last_ns=2, opened_at=0, touched_at=0)
    episode.objects["identity"] = ObjectEntry(link, None, "2" * 16, start_ns=1, end_ns=2)
    (span,) = object_spans(episode, "prod")
    return dict(span.attributes)


@pytest.mark.parametrize(
    ("ref", "known", "expected"),
    [
        *[(ref, True, expected) for ref, expected in ABOUT_AN_OBJECT],
        (  # not found: said so, and kubelet's name-as-uid left out
            ObjectRef("Node", "node-1", "", "node-1", ""),
            False,
            {
                "k8s.object.kind": "Node",
                "k8s.object.name": "node-1",
                "k8s.node.name": "node-1",
                "eventtrace.object.unresolved": True,
            },
        ),
    ],
)
def test_object_span_attributes(ref: ObjectRef, known: bool, expected: dict[str, object]) -> None:
    attributes = object_attributes(ref, known)
    assert attributes == expected
    assert list(attributes) == list(object_attributes(ref, known))  # one order, always


def test_an_object_hangs_under_the_earliest_event_of_its_owner_that_names_it() -> None:
    rs = ObjectRef("ReplicaSet", "web-1a", "shop", "rs-uid", "apps/v1")
    pod = ObjectRef("Pod", "web-1a-x", "shop", "p-uid", "v1")
    rs_link, pod_link = Link("rs-uid", rs, KubeObject(rs)), Link("p-uid", pod, KubeObject(pod))
    episode = Episode(rs_link, "1" * 32, start_ns=1, last_ns=9, opened_at=0, touched_at=0)
    owner = episode.objects["rs-uid"] = ObjectEntry(rs_link, None, "2" * 16, 1, 9)
    episode.objects["p-uid"] = ObjectEntry(pod_link, "rs-uid", "3" * 16, 5, 9)

    def note(start: int, name: str, message: str, uid: str) -> None:
        owner.events[uid] = EventNote(start, name, message, "replicaset-controller", "", uid, 1)

    note(3, "a", "Created pod: web-1a-y", "u-other-pod")  # earlier, another pod
    note(9, "0", "Created pod: web-1a-x", "u-later")  # names it, later
    note(5, "c", "Created pod: web-1a-x", "u-c")  # names it, same time, a later name
    note(5, "b", "Created pod: web-1a-x", "u-b1")  # these two: same time, same name;
    note(5, "b", "Created pod: web-1a-x", "u-b2")  # the lower span id wins
    tied = {uid: owner.events[uid].span_id for uid in ("u-b1", "u-b2")}

    def parent_of_pod() -> str | None:
        spans = {span.span_id: span for span in object_spans(episode, "prod")}
        return spans["3" * 16].parent_id

    assert parent_of_pod() == min(tied.values())
    for uid in list(owner.events)[::-1]:  # the same whatever order they came in
        owner.events[uid] = owner.events.pop(uid)
    assert parent_of_pod() == min(tied.values())
