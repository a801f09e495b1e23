"""`--output console`: each trace as a waterfall tree, printed when its episode closes.

deployment/px  trace 26251334a19138c9…
  2021-05-19 09:42:58Z  lasted 9.0s  19 events, 1 warning
  +0.000s    9.0s  deployment/px  kubectl-client-side-apply
  +0.000s       -  ├─ ScalingReplicaSet  Scaled up replica set px-5d567cc74c to 1
  +0.000s    8.2s  │  └─ replicaset/px-5d567cc74c  deployment-controller
  +1m05s        -  │     └─ ✗ BackOff (x4)  Back-off pulling image "nginx:nope"

Offsets from the trace's start and lengths are in human units: `+0.638s` under a
minute, then `+1m05s`, `+1h02m`, `+3d04h`. On a terminal, lines are cut to its width;
piped (or `wide`), messages are printed in full. Warnings are red (and marked `✗`, for
whoever reads without colour); `NO_COLOR` turns colour off.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from eventtrace.core.model import Span, SpanKind, SpanStatus

_RED = "\033[31m"
_DIM = "\033[2m"
_BOLD = "\033[1m"
_RESET = "\033[0m"

_SECOND = 1_000_000_000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_NARROWEST = 60  # a terminal narrower than this is drawn as if it were this wide
_NEWLINES = re.compile(r"\s*[\r\n]+\s*")


@dataclass(frozen=True, slots=True)
class Style:
    """How to draw for one stream: `width` None means never cut a line."""

    width: int | None = None
    color: bool = False


def style_for(stream: TextIO, *, wide: bool = False, color: bool | None = None) -> Style:
    """A terminal gets colour (unless NO_COLOR is set, or TERM=dumb) and lines cut to its
    width; a pipe or a file gets plain text in full, as does `wide`."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream
        tty = False
    if color is None:
        color = tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    width = None if wide or not tty else max(_NARROWEST, shutil.get_terminal_size().columns)
    return Style(width, color)


class ConsoleExporter:
    """The waterfall printer: a trace is printed once its root object span arrives (its
    episode closed), whatever never closed at shutdown."""

    def __init__(
        self, stream: TextIO | None = None, *, color: bool | None = None, wide: bool = False
    ) -> None:
        self._stream = stream or sys.stdout
        self._style = style_for(self._stream, wide=wide, color=color)
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
        style = self._style
        self._stream.write(render_trace(spans, width=style.width, color=style.color))
        self._stream.write("\n")


def render_trace(spans: list[Span], *, width: int | None = None, color: bool = False) -> str:
    """The whole trace as text lines: a header, then the tree, children by start time.
    Lines are cut to `width` columns; with None (the default) nothing is cut. The same
    spans always give the same text."""
    ids = {span.span_id for span in spans}
    children: dict[str | None, list[Span]] = defaultdict(list)
    for span in spans:
        parent = span.parent_id if span.parent_id in ids else None
        children[parent].append(span)
    for siblings in children.values():
        siblings.sort(key=lambda s: (s.start_ns, s.kind is SpanKind.OBJECT, s.name, s.span_id))

    start = min(span.start_ns for span in spans)
    roots = children[None]
    title = roots[0].name if roots else "?"
    lines = [
        _cut(_paint(f"{title}  trace {spans[0].trace_id}", _BOLD, color), width, color),
        _cut(summary(spans, color=color), width, color),
    ]

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


def summary(spans: list[Span], *, color: bool = False) -> str:
    """The episode's header line: when it began (UTC), how long it lasted, its events
    and warnings: `  2021-05-19 09:42:58Z  lasted 9.0s  19 events, 1 warning`."""
    start = min(span.start_ns for span in spans)
    end = max(span.end_ns for span in spans)
    warnings = sum(1 for span in spans if span.status is SpanStatus.ERROR)
    events = sum(1 for span in spans if span.kind is SpanKind.EVENT)
    moment = datetime.fromtimestamp(start // _SECOND, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    text = f"  {moment}  lasted {duration(end - start)}  {plural(events, 'event')}"
    if warnings:
        text += ", " + _paint(plural(warnings, "warning"), _RED, color)
    return text


def plural(count: int, noun: str) -> str:
    """`1 event`, `2 events`, `0 events`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _line(span: Span, trace_start: int, tree: str, width: int | None, color: bool) -> str:
    length = span.end_ns - span.start_ns
    shown_length = duration(length) if length else "-"
    warning = span.status is SpanStatus.ERROR
    if span.kind is SpanKind.EVENT:
        occurrences = span.attribute("eventtrace.occurrences")
        repeat = f" (x{occurrences})" if isinstance(occurrences, int) and occurrences > 1 else ""
        label = f"{'✗ ' if warning else ''}{span.name}{repeat}"
        detail = one_line(str(span.attribute("k8s.event.message") or ""))
    else:
        label = span.name
        detail = span.service_name
    left = f"{offset(span.start_ns - trace_start):>9} {shown_length:>7}  {tree}{label}"
    if width is not None and len(left) > width:
        left = left[: width - 1] + "…"
    if detail and width is not None:
        room = width - len(left) - 2
        detail = "" if room <= 8 else (detail if len(detail) <= room else detail[: room - 1] + "…")
    if not detail:
        return _paint(left, _RED, color) if warning else left
    if warning:  # reason and message in red: what went wrong is the point of the line
        return _paint(f"{left}  {detail}", _RED, color)
    return f"{left}  {_paint(detail, _DIM, color)}"


def one_line(message: str) -> str:
    """A message on one line: a tree line cannot hold a newline."""
    return _NEWLINES.sub(" ", message.strip())


def offset(ns: int) -> str:
    """Time since the trace began: `+0.638s` under a minute (to the millisecond, rounded),
    then `+1m05s`, `+1h02m`, `+3d04h` (whole units, cut)."""
    seconds = f"{max(ns, 0) / _SECOND:.3f}"
    return f"+{seconds}s" if float(seconds) < 60 else "+" + _coarse(max(ns, _MINUTE))


def duration(ns: int) -> str:
    """A length: `9.0s` under a minute (rounded to a tenth), then `1m05s`, `1h02m`,
    `3d04h` (whole units, cut)."""
    seconds = f"{max(ns, 0) / _SECOND:.1f}"
    return f"{seconds}s" if float(seconds) < 60 else _coarse(max(ns, _MINUTE))


def _coarse(ns: int) -> str:
    if ns < _HOUR:
        return f"{ns // _MINUTE}m{ns % _MINUTE // _SECOND:02d}s"
    if ns < _DAY:
        return f"{ns // _HOUR}h{ns % _HOUR // _MINUTE:02d}m"
    return f"{ns // _DAY}d{ns % _DAY // _HOUR:02d}h"


def _cut(text: str, width: int | None, color: bool) -> str:
    """A header line cut to `width` (its escapes do not count)."""
    if width is None:
        return text
    plain = re.sub(r"\033\[[0-9;]*m", "", text) if color else text
    if len(plain) <= width:
        return text
    return plain[: width - 1] + "…"


def _paint(text: str, style: str, color: bool) -> str:
    return f"{style}{text}{_RESET}" if color else text
