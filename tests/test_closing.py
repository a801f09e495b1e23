"""When episodes close, live ("now" is wall time): idle for trace_idle or open for
trace_max, a touch putting the idle deadline off, and due episodes closing in the order
they opened."""

from __future__ import annotations

from eventtrace.core.episodes import Assembler, TraceRules
from eventtrace.core.model import EventState, KubeObject, ObjectRef, Occurrence, SpanKind
from eventtrace.core.owners import Link
from helpers import flat

S = 1_000_000_000
RULES = TraceRules("prod", trace_idle_ns=10 * S, trace_max_ns=60 * S)


def occurrence(deployment: str, at_s: int, uid: str) -> tuple[Occurrence, tuple[Link, ...]]:
    ref = ObjectRef("Deployment", deployment, "shop", f"{deployment}-uid", "apps/v1")
    state = EventState(
        uid=uid,
        name=f"{deployment}.{uid}",
        namespace="shop",
        reason="ScalingReplicaSet",
        message="Scaled up",
        type="Normal",
        involved=ref,
        count=1,
        first_ns=at_s * S,
        last_ns=at_s * S,
    )
    chain = (Link(ref.uid, ref, KubeObject(ref)),)
    return Occurrence(state, previous_count=0, start_ns=at_s * S, end_ns=at_s * S), chain


def closed_roots(assembler: Assembler, now_s: int) -> list[str]:
    spans = flat(assembler.close_due(now_s * S))
    return [span.name for span in spans if span.kind is SpanKind.OBJECT]


def test_an_episode_closes_once_idle_and_a_touch_puts_that_off() -> None:
    assembler = Assembler(RULES)
    assembler.add(*occurrence("web", 0, "a"), now=0)
    assert closed_roots(assembler, 9) == []
    assembler.add(*occurrence("web", 5, "b"), now=8 * S)  # touched: idle from 8 s on
    assert closed_roots(assembler, 10) == []
    assert closed_roots(assembler, 17) == []
    assert closed_roots(assembler, 18) == ["deployment/web"]
    assert assembler.open_episodes == 0
    assert closed_roots(assembler, 100) == []  # closed once


def test_a_busy_episode_closes_at_trace_max() -> None:
    assembler = Assembler(RULES)
    for second in range(0, 60, 5):
        assembler.add(*occurrence("web", second, f"e{second}"), now=second * S)
        assert closed_roots(assembler, second) == []
    # Opened at 0, last touched at 55 (idle until 65): trace_max closes it at 60.
    assert closed_roots(assembler, 59) == []
    assert closed_roots(assembler, 60) == ["deployment/web"]


def test_due_episodes_close_in_the_order_they_opened() -> None:
    assembler = Assembler(RULES)
    for second, name in enumerate(["c", "a", "d", "b"]):
        assembler.add(*occurrence(name, second, name), now=second * S)
    assembler.add(*occurrence("c", 4, "c2"), now=4 * S)  # c: due last, but opened first
    assert closed_roots(assembler, 12) == ["deployment/a", "deployment/d"]
    assert closed_roots(assembler, 14) == ["deployment/c", "deployment/b"]
