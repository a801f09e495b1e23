"""`--output console`: each trace as a waterfall tree, printed when its episode closes.

deployment/px  trace 26251334a19138c9…
  2021-05-19 09:42:58Z  9.0s  19 events
  +0.000s    9.0s  deployment/px  kubectl-client-side-apply
  +0.000s       -  ├─ ScalingReplicaSet  Scaled up replica set px-5d567cc74c to…
  +0.000s    8.2s  │  └─ replicaset/px-5d567cc74c  deployment-controller
"""

from __future__ import annotations

import os
import shutil
import sys
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from eventtrace.core.model import Span, SpanKind, SpanStatus

_RED = "\033[31m"
_DIM = "\033[2m"
_BOLD = "\033[1m"
_RESET = "\033[0m"


class ConsoleExporter:
    """The waterfall printer: a trace is printed once its root object span arrives (its
    episode closed), whatever never closed at shutdown."""

    def __init__(self, stream: TextIO | None = None, *, color: bool | None = None) -> None:
        self._stream = stream or sys.stdout
        if color is None:
            color = self._stream.isatty() and "NO_COLOR" not in os.environ
        self._color = color
        self._width = max(60, shutil.get_terminal_size((80, 24)).columns) if color else 80
        self._traces: dict[str, list[Span]] = defaultdict(list)

    def describe(self) -> str:
        return "the terminal"

    async def export(self, spans: Sequence[Span]) -> bool:
        finished = []
        for span in spans:
            self._traces[span.trace_id].append(span)
            if span.parent_id is None and span.kind is SpanKind.OBJECT:
                finished.append(span.trace_id)
        for trace_id in finished:
            self._print(self._traces.pop(trace_id))
        self._stream.flush()
        return True

    async def shutdown(self) -> None:
        # Whatever never closed (an interrupted run) is still shown, in a stable order.
        for trace_id in sorted(self._traces):
            self._print(self._traces.pop(trace_id))
        self._stream.flush()

    def _print(self, spans: list[Span]) -> None:
        self._stream.write(render_trace(spans, width=self._width, color=self._color))
        self._stream.write("\n")


def render_trace(spans: list[Span], *, width: int = 80, color: bool = False) -> str:
    """The whole trace as text lines: a header, then the tree, children by start time."""
    ids = {span.span_id for span in spans}
    children: dict[str | None, list[Span]] = defaultdict(list)
    for span in spans:
        parent = span.parent_id if span.parent_id in ids else None
        children[parent].append(span)
    for siblings in children.values():
        siblings.sort(key=lambda s: (s.start_ns, s.kind is SpanKind.OBJECT, s.name, s.span_id))

    start = min(span.start_ns for span in spans)
    end = max(span.end_ns for span in spans)
    roots = children[None]
    warnings = sum(1 for span in spans if span.status is SpanStatus.ERROR)
    events = sum(1 for span in spans if span.kind is SpanKind.EVENT)
    title = roots[0].name if roots else "?"
    moment = datetime.fromtimestamp(start / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    summary = f"{moment}  {_duration(end - start)}  {events} events" + (
        f", {warnings} warnings" if warnings else ""
    )
    lines = [_paint(f"{title}  trace {spans[0].trace_id}", _BOLD, color), f"  {summary}"]

    def walk(span: Span, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└─ " if last else "├─ ")
        lines.append(_line(span, start, prefix + branch, width, color))
        below = children.get(span.span_id, [])
        deeper = prefix + ("" if top else ("   " if last else "│  "))
        for position, child in enumerate(below):
            walk(child, deeper, position == len(below) - 1, False)

    for root in roots:
        walk(root, "", True, True)
    return "\n".join(lines) + "\n"


def _line(span: Span, trace_start: int, tree: str, width: int, color: bool) -> str:
    offset = f"+{(span.start_ns - trace_start) / 1e9:.3f}s"
    length = span.end_ns - span.start_ns
    duration = _duration(length) if length else "-"
    warning = span.status is SpanStatus.ERROR
    mark = "✗ " if warning else ""
    if span.kind is SpanKind.EVENT:
        occurrences = span.attribute("eventtrace.occurrences")
        repeat = f" (x{occurrences})" if isinstance(occurrences, int) and occurrences > 1 else ""
        label = f"{mark}{span.name}{repeat}"
        detail = str(span.attribute("k8s.event.message") or "")
    else:
        label = span.name
        detail = span.service_name
    left = f"{offset:>9} {duration:>7}  {tree}{label}"
    if len(left) > width:
        left = left[: width - 1] + "…"
    room = width - len(left) - 2
    text = left
    if room > 8 and detail:
        if len(detail) > room:
            detail = detail[: room - 1] + "…"
        text = f"{left}  {_paint(detail, _DIM, color)}"
    return _paint(text, _RED, color) if warning else text


def _duration(ns: int) -> str:
    seconds = ns / 1e9
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _paint(text: str, style: str, color: bool) -> str:
    return f"{style}{text}{_RESET}" if color else text
