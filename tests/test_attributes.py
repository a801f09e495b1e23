"""The attributes of an event span, written out by hand for the kinds that differ: the
semantic-convention pair, a Node's name winning over the reporting host, a Namespace's
name, a kind without a pair, no uid, and empty strings left out."""

from __future__ import annotations

import pytest

from eventtrace.assemble import event_span
from eventtrace.model import EventState, ObjectRef, Occurrence
from eventtrace.owners import Link

BASE = {
    "eventtrace.occurrences": 2,
    "k8s.event.count": 3,
    "k8s.event.message": "something happened",
    "k8s.event.name": "thing.17a",
    "k8s.event.reason": "Happened",
    "k8s.event.type": "Normal",
    "k8s.event.uid": "e-uid",
    "k8s.node.name": "node-7",  # the reporting host
}


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
    keys = [key for key, _ in span.attributes]
    assert keys == sorted(keys), "sorted by key"
    return dict(span.attributes)


@pytest.mark.parametrize(
    ("involved", "resolved", "expected"),
    [
        (
            ObjectRef("Pod", "web-1", "shop", "p-uid", "v1"),
            None,
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
        (
            ObjectRef("Namespace", "shop", "", "ns-uid", "v1"),
            None,
            {
                "k8s.object.kind": "Namespace",
                "k8s.object.name": "shop",
                "k8s.object.uid": "ns-uid",
                "k8s.object.api_version": "v1",
                "k8s.namespace.name": "shop",
                "k8s.namespace.uid": "ns-uid",
            },
        ),
        (  # no semantic-convention pair, no uid
            ObjectRef("Widget", "w", "shop", "", "example.com/v1"),
            None,
            {
                "k8s.object.kind": "Widget",
                "k8s.object.name": "w",
                "k8s.object.api_version": "example.com/v1",
                "k8s.namespace.name": "shop",
            },
        ),
    ],
)
def test_event_span_attributes(
    involved: ObjectRef, resolved: ObjectRef | None, expected: dict[str, object]
) -> None:
    assert attributes(involved, resolved) == {**BASE, **expected}
