"""The terminal waterfall (`--output console`, `eventtrace tree`): human units, plurals,
full messages when piped, widths that follow the terminal, NO_COLOR."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import random
import re
import struct
import subprocess
import sys
import termios

import pytest

from eventtrace.core.model import Span, SpanKind, SpanStatus
from eventtrace.export.console import ConsoleExporter, duration, offset, render_trace

S = 1_000_000_000
T0 = 1_790_000_000 * S  # 2026-09-21 14:13:20Z
TRACE = "84ea4efe4244849b7e9a65e99758da79"
LONG = (
    'Failed to pull image "ghcr.io/example/api:v2.3.0-rc1": rpc error: code = NotFound desc = '
    'failed to pull and unpack image "ghcr.io/example/api:v2.3.0-rc1": failed to resolve '
    'reference "ghcr.io/example/api:v2.3.0-rc1": ghcr.io/example/api:v2.3.0-rc1: not found'
)
ESCAPE = re.compile(r"\033\[[0-9;]*m")


def obj(name: str, start: float, end: float, parent: str | None = None) -> Span:
    return Span(TRACE, f"o-{name}", parent, name, SpanKind.OBJECT, T0 + int(start * S),
                T0 + int(end * S), SpanStatus.UNSET, "", (("service.name", "kubelet"),), {})  # fmt: skip


def ev(
    reason: str, at: float, parent: str, message: str = "", *, warning: bool = False,
    occurrences: int = 1, until: float | None = None,
) -> Span:  # fmt: skip
    attributes = {"eventtrace.occurrences": occurrences, "k8s.event.message": message}
    status = SpanStatus.ERROR if warning else SpanStatus.UNSET
    end = at if until is None else until
    return Span(TRACE, f"e-{reason}-{at}", parent, reason, SpanKind.EVENT, T0 + int(at * S),
                T0 + int(end * S), status, message if warning else "",
                (("service.name", "kubelet"),), attributes)  # fmt: skip


def stuck_pod() -> list[Span]:
    """A pod stuck on a missing image for days: offsets in every unit."""
    end = 3 * 86400 + 4 * 3600
    return [
        obj("pod/api-x7k2p", 0, end),
        ev("Scheduled", 0, "o-pod/api-x7k2p", "Successfully assigned shop/api-x7k2p to kind-worker"),
        ev("Pulling", 0.638, "o-pod/api-x7k2p", 'Pulling image "ghcr.io/example/api:v2.3.0-rc1"'),
        ev("Failed", 65, "o-pod/api-x7k2p", LONG, warning=True),
        ev("BackOff", 3720, "o-pod/api-x7k2p", "Back-off pulling image", occurrences=40, until=7200),
        ev("Failed", end, "o-pod/api-x7k2p", "Error: ImagePullBackOff", warning=True),
    ]  # fmt: skip


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def printed(exporter: ConsoleExporter, spans: list[Span]) -> str:
    await exporter.export(spans)
    stream = exporter._stream
    assert isinstance(stream, io.StringIO)
    return stream.getvalue()


# ---- units ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ns", "as_offset", "as_duration"),
    [
        (0, "+0.000s", "0.0s"),
        (638_000_000, "+0.638s", "0.6s"),  # under a minute: as it always was
        (13_999_600_000, "+14.000s", "14.0s"),
        (59_999_600_000, "+1m00s", "1m00s"),  # rounding up to a minute reads as one
        (65 * S, "+1m05s", "1m05s"),
        (65 * S + 999_000_000, "+1m05s", "1m05s"),  # whole units past a minute, cut
        (3720 * S, "+1h02m", "1h02m"),
        ((3 * 86400 + 4 * 3600) * S, "+3d04h", "3d04h"),
        (1_056_715 * S, "+12d05h", "12d05h"),  # was +1056715.000s, wider than its column
    ],
)
def test_offsets_and_durations_in_human_units(ns: int, as_offset: str, as_duration: str) -> None:
    assert offset(ns) == as_offset
    assert duration(ns) == as_duration


def test_a_trace_over_days_keeps_its_columns() -> None:
    text = render_trace(stuck_pod())
    lines = text.splitlines()
    assert lines[1] == "  2026-09-21 14:13:20Z  lasted 3d04h  5 events, 2 warnings"
    rows = lines[2:]
    assert [row.split()[0] for row in rows] == [
        "+0.000s", "+0.000s", "+0.638s", "+1m05s", "+1h02m", "+3d04h"
    ]  # fmt: skip
    # Offset and length are right-aligned columns; the tree starts at column 19 always.
    assert all(re.fullmatch(r" *\+\S+ +\S+  ", row[:19]) and row[19] != " " for row in rows)
    assert rows[0][19:].startswith("pod/api-x7k2p  kubelet")
    assert rows[4] == "   +1h02m  58m00s  ├─ BackOff (x40)  Back-off pulling image"
    assert rows[0].split()[1] == "3d04h"


@pytest.mark.parametrize(
    ("events", "warnings", "said"),
    [
        (1, 0, "1 event"),
        (2, 0, "2 events"),
        (2, 1, "2 events, 1 warning"),
        (3, 3, "3 events, 3 warnings"),
    ],
)
def test_the_header_says_events_and_warnings_in_singular_and_plural(
    events: int, warnings: int, said: str
) -> None:
    spans = [obj("pod/p", 0, events)] + [
        ev(f"E{i}", i, "o-pod/p", "m", warning=i < warnings) for i in range(events)
    ]
    title, summary = render_trace(spans).splitlines()[:2]
    assert title == f"pod/p  trace {TRACE}"
    assert summary.endswith(f"  {said}")
    assert re.fullmatch(r"  2026-09-21 14:13:20Z  lasted \S+  " + re.escape(said), summary)


def test_the_same_spans_in_any_order_print_the_same() -> None:
    spans = stuck_pod()
    expected = render_trace(spans, width=80, color=True)
    for seed in range(5):
        shuffled = spans[:]
        random.Random(seed).shuffle(shuffled)
        assert render_trace(shuffled, width=80, color=True) == expected


def test_a_message_of_several_lines_stays_on_its_line() -> None:
    spans = [
        obj("pod/p", 0, 0),
        ev("Failed", 0, "o-pod/p", "Error: one\n  two\r\nthree", warning=True),
    ]
    assert render_trace(spans).splitlines()[-1].endswith("✗ Failed  Error: one two three")


# ---- width: the terminal's, or none when piped -----------------------------------------------


async def test_piped_messages_are_printed_in_full() -> None:
    out = await printed(ConsoleExporter(io.StringIO()), stuck_pod())
    assert f"├─ ✗ Failed  {LONG}\n" in out
    assert "…" not in out and "\033[" not in out


@pytest.mark.parametrize("columns", [80, 132])
async def test_on_a_terminal_lines_are_cut_to_its_width(
    monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setenv("NO_COLOR", "1")
    out = await printed(ConsoleExporter(FakeTerminal()), stuck_pod())
    lines = out.splitlines()
    assert max(len(line) for line in lines) == columns
    failed = next(line for line in lines if "✗ Failed  Failed" in line)
    assert failed.endswith("…") and LONG[: columns // 4] in failed
    wide = await printed(ConsoleExporter(FakeTerminal(), wide=True), stuck_pod())
    assert LONG in wide  # --wide: in full on a terminal too


# ---- colour ------------------------------------------------------------------------------------


async def test_warnings_are_red_with_their_reason_and_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "400")
    out = await printed(ConsoleExporter(FakeTerminal()), stuck_pod())
    failed = next(line for line in out.splitlines() if "Error: ImagePullBackOff" in line)
    assert failed.startswith("\033[31m") and failed.endswith("\033[0m")
    assert "✗ Failed  Error: ImagePullBackOff" in ESCAPE.sub("", failed)
    assert out.splitlines()[0].startswith("\033[1mpod/api-x7k2p")  # the title in bold
    assert "\033[31m2 warnings\033[0m" in out.splitlines()[1]
    pulling = next(line for line in out.splitlines() if "Pulling" in line)
    assert "\033[31m" not in pulling and "\033[2m" in pulling  # other messages dimmed


@pytest.mark.parametrize(
    ("env", "coloured"),
    [({"NO_COLOR": "1"}, False), ({"NO_COLOR": ""}, True), ({"TERM": "dumb"}, False), ({}, True)],
)
async def test_no_color_is_honoured(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], coloured: bool
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = await printed(ConsoleExporter(FakeTerminal()), stuck_pod())
    assert ("\033[" in out) is coloured


def test_eventtrace_demo_on_a_terminal_obeys_no_color() -> None:
    """The real process on a pseudo-terminal: coloured, and cut to the terminal's width;
    with NO_COLOR set, plain."""

    def on_a_terminal(**env: str) -> str:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        environment = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS")}
        environment.update(TERM="xterm", **env)
        process = subprocess.Popen(
            [sys.executable, "-m", "eventtrace", "demo", "--log-level", "WARNING"],
            stdout=slave, stderr=subprocess.DEVNULL, env=environment,
        )  # fmt: skip
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(master)
        assert process.wait(timeout=60) == 0
        return b"".join(chunks).decode().replace("\r\n", "\n")

    coloured = on_a_terminal()
    assert "\033[31m" in coloured
    assert max(len(ESCAPE.sub("", line)) for line in coloured.splitlines()) <= 100
    plain = on_a_terminal(NO_COLOR="1")
    assert "\033[" not in plain and "✗ Failed" in plain
    assert max(len(line) for line in plain.splitlines()) == 100  # cut to the terminal
