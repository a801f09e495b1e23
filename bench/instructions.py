"""Instructions `eventtrace run` executes, counted by valgrind's callgrind.

    .venv/bin/python bench/instructions.py [--events 20000] [--paths relist,watch]
                                           [--source CHECKOUT]

A figure this machine's slow spells do not move (the same run counts the same within
~1 %), for telling apart two versions of the code where events/s cannot tell a few per
cent from noise. It runs path 4 of pipeline.py as it is (the test API server, the OTLP
receiver, `eventtrace run` between them over real HTTPS and gRPC) with `eventtrace run`
under callgrind, ~50 times slower: 20 000 events take about a minute a path. The count is
the whole process's, start-up included; `--events 3000` measures little else, so the
difference between two sizes is what the events cost.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import pipeline  # noqa: E402  (bench/ is not a package)

_measure_run_as_is = pipeline.measure_run
_python_as_is = pipeline.python
_counts: dict[str, Path] = {}  # path (relist, watch) -> its callgrind output
_measuring: list[str] = []  # the path being measured


def _measure_run_counted(mode: pipeline.Mode, work: Path, how: str, profile: bool) -> Any:
    _counts[how] = work / f"callgrind-{how}.out"
    _measuring[:] = [how]
    try:
        return _measure_run_as_is(mode, work, how, profile)
    finally:
        _measuring.clear()


def _python_counted(*args: str) -> list[str]:
    if _measuring and args[:3] == ("-m", "eventtrace", "run"):
        output = f"--callgrind-out-file={_counts[_measuring[0]]}"
        return ["valgrind", "--tool=callgrind", output, *_python_as_is(*args)]
    return _python_as_is(*args)


pipeline.measure_run = _measure_run_counted
pipeline.python = _python_counted


def instructions(path: Path) -> int:
    match = re.search(r"^totals: (\d+)", path.read_text(errors="replace"), re.MULTILINE)
    if match is None:
        raise SystemExit(f"{path}: no totals line; did callgrind finish?")
    return int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="watch frames (20000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--paths", default="relist,watch", help="relist, watch or both")
    parser.add_argument("--source", type=Path, help="count the eventtrace of this checkout")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("bench/instructions.py needs valgrind (callgrind) on the PATH")
    paths = [path for path in args.paths.split(",") if path]
    if set(paths) - {"relist", "watch"}:
        parser.error(f"--paths: relist and/or watch, not {args.paths!r}")
    pipeline.SOURCE = args.source.resolve() if args.source else None
    pipeline.STALL_SECONDS = 1800.0  # callgrind is slow, not stuck
    pipeline.RESULTS.mkdir(parents=True, exist_ok=True)
    mode = pipeline.run_mode("instructions", args.events, 0, args.seed, paths, False)
    print(f"eventtrace {pipeline._revision(pipeline.SOURCE or pipeline.ROOT)}", end="")
    print(f" from {pipeline.SOURCE}" if pipeline.SOURCE else "")
    print("| path | events | spans received / expected | instructions |")
    print("|---|---|---|---|")
    failed = False
    for path, result in zip(paths, mode.results, strict=True):
        counted = instructions(_counts[path])
        received = f"{result.spans_received} / {result.spans_expected}"
        print(f"| {result.label} | {result.events} | {received} | {counted:,} |")
        failed = failed or not result.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
