"""EventFilter: which filter, if any, leaves an event out."""

from __future__ import annotations

import pytest

from eventtrace.core.filters import EventFilter
from eventtrace.core.model import EventState, ObjectRef


def state(
    type_: str = "Normal", reason: str = "Pulled", kind: str = "Pod", ns: str = "shop"
) -> EventState:
    involved = ObjectRef(kind, "web-1", ns, "u1", "v1")
    return EventState("e1", "web-1.1", ns, reason, "msg", type_, involved, 1, 1, 1)


def test_with_nothing_set_every_event_is_kept() -> None:
    keep = EventFilter()
    assert keep.rejects(state()) is None
    assert keep.rejects(state("Warning", "BackOff", "Node", "")) is None


@pytest.mark.parametrize(
    ("settings", "event", "verdict"),
    [
        ({"exclude_types": {"Normal"}}, state(), "exclude_type"),
        ({"include_types": {"Warning"}}, state(), "include_type"),
        ({"include_types": {"Normal"}}, state(), None),
        ({"exclude_reasons": {"Pulled"}}, state(), "exclude_reason"),
        ({"include_reasons": {"BackOff"}}, state(), "include_reason"),
        ({"exclude_kinds": {"Pod"}}, state(), "exclude_kind"),
        ({"include_kinds": {"Node"}}, state(), "include_kind"),
        ({"include_kinds": {"Node"}}, state(kind="Node"), None),
        ({"exclude_namespaces": {"shop"}}, state(), "exclude_namespace"),
        ({"include_namespaces": {"team-a"}}, state(), "include_namespace"),
        # The first dimension that leaves it out names it: type, reason, kind, namespace.
        ({"exclude_namespaces": {"shop"}, "exclude_types": {"Normal"}}, state(), "exclude_type"),
        ({"exclude_reasons": {"BackOff"}, "include_kinds": {"Pod"}}, state(), None),
    ],
)
def test_the_first_filter_that_leaves_an_event_out_names_it(
    settings: dict[str, set[str]], event: EventState, verdict: str | None
) -> None:
    keep = EventFilter(**{name: frozenset(values) for name, values in settings.items()})
    assert keep.rejects(event) == verdict
