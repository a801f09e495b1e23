"""The reorder window live: a state waits it out unless a complete list it came in has
been settled, and releases stay in occurrence order either way."""

from __future__ import annotations

from eventtrace.core.episodes import TraceRules
from eventtrace.core.model import EventState, SpanKind
from eventtrace.core.pipeline import Pipeline
from eventtrace.source.parse import parse_event
from helpers import core_event, flat, ref

S = 1_000_000_000
WINDOW = 5 * S
RULES = TraceRules("reorder", trace_idle_ns=120 * S, trace_max_ns=900 * S)


def pulled(name: str, at: float) -> EventState:
    state = parse_event(core_event(name, ref("Pod", "web-1"), "Pulled", "pulled", at=at), "list")
    assert isinstance(state, EventState)
    return state


def released(pipeline: Pipeline, now: int) -> list[str]:
    """The names of the events whose spans `release` gives, in the order given."""
    spans = flat(pipeline.release(now))
    return [str(span.attribute("k8s.event.name")) for span in spans if span.kind is SpanKind.EVENT]


def test_listed_states_wait_the_window_until_settled_then_go_at_once() -> None:
    pipeline = Pipeline(RULES, WINDOW)
    pipeline.offer(pulled("b", at=20), now=0)
    pipeline.offer(pulled("a", at=10), now=0)
    assert released(pipeline, 1 * S) == []
    pipeline.settle(pipeline.arrivals)
    assert released(pipeline, 1 * S) == ["a", "b"]
    assert pipeline.pending == 0


def test_a_state_after_the_settle_still_waits_and_holds_back_later_ones() -> None:
    pipeline = Pipeline(RULES, WINDOW)
    pipeline.offer(pulled("listed-late", at=30), now=0)
    pipeline.settle(pipeline.arrivals)
    pipeline.offer(pulled("watched-early", at=10), now=1 * S)  # due before the listed one
    assert released(pipeline, 2 * S) == []  # the earlier one waits; order comes first
    assert released(pipeline, 5 * S) == []
    assert released(pipeline, 6 * S) == ["watched-early", "listed-late"]
    assert pipeline.pending == 0


def test_events_always_arriving_with_old_times_hold_nothing_back_for_ever() -> None:
    """A node clock hours behind: its events are the earliest, and one has always just
    arrived. What arrived first still goes within twice the window."""
    pipeline = Pipeline(RULES, WINDOW)
    pipeline.offer(pulled("ordinary", at=3600), now=0)
    out: list[str] = []
    for second in range(1, 30):  # one behind-the-clock event a second
        pipeline.offer(pulled(f"behind-{second}", at=second), now=second * S)
        out += released(pipeline, second * S)
    assert "ordinary" in out
    assert out.index("ordinary") <= 2 * WINDOW // S
    assert pipeline.pending < 2 * WINDOW // S + 1


def test_a_time_offered_again_after_everything_went_counts_afresh() -> None:
    """A driver that passes the same "now" again once all pending states went (a test, a
    replay) opens a new mark: the overdue rule reads when what is pending arrived."""
    pipeline = Pipeline(RULES, WINDOW)
    pipeline.offer(pulled("first", at=10), now=0)
    pipeline.settle(pipeline.arrivals)
    assert released(pipeline, 0) == ["first"]
    pipeline.offer(pulled("again", at=100), now=0)  # the same "now", nothing pending
    assert released(pipeline, 1 * S) == []
    pipeline.offer(pulled("early", at=5), now=9 * S)  # earliest, but it has just arrived
    # "again" has waited twice the window: the earliest goes, though it has not.
    assert released(pipeline, 10 * S) == ["early", "again"]
    assert pipeline.pending == 0
