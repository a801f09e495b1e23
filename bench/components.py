"""What each stage of the pipeline costs, per item, in one process (no I/O, no threads).

    .venv/bin/python bench/components.py [--events 200000] [--source CHECKOUT]

On the benchmark's generated data (bench/results/data/, made by bench/pipeline.py):
reading events from their watch lines' bytes, parsing events and objects from dicts, the
pure pipeline (`trace_recording`), and encoding the spans for OTLP (the SDK's ReadableSpan
+ encoder where this checkout has no encoder of its own). With `--source`, the eventtrace
package of another checkout is measured (a git worktree of an older commit, say), so
optimisations can be compared stage by stage.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import generate  # noqa: E402  (bench/ is not a package)


def measure(directory: Path) -> dict[str, Any]:
    import orjson

    from eventtrace.core.episodes import TraceRules
    from eventtrace.core.pipeline import trace_recording
    from eventtrace.source.parse import parse_event, parse_object

    dataset = generate.load(directory)
    raws = [raw for _, raw in generate.watch_frames(dataset.events_path)]
    with dataset.objects_path.open("rb") as lines:
        objects_raw = [orjson.loads(line) for line in lines]
    results: dict[str, Any] = {"events": len(raws), "objects": len(objects_raw)}

    results["read_event_us"], results["reader"] = _read_events(dataset.events_path)
    started = time.perf_counter()
    states = [parse_event(raw, "bench") for raw in raws]
    results["parse_event_us"] = (time.perf_counter() - started) / len(raws) * 1e6
    started = time.perf_counter()
    objects = [parse_object(raw, "bench") for raw in objects_raw]
    results["parse_object_us"] = (time.perf_counter() - started) / len(objects_raw) * 1e6
    del raws, objects_raw

    rules = TraceRules("bench", 120 * 10**9, 1800 * 10**9)
    gc.collect()
    started = time.perf_counter()
    spans, _ = trace_recording(states, objects, rules)  # type: ignore[arg-type]
    results["pipeline_us_per_event"] = (time.perf_counter() - started) / len(states) * 1e6
    results["spans"] = len(spans)

    from eventtrace.export import otlp

    batches = [spans[start : start + 512] for start in range(0, len(spans), 512)]
    started = time.perf_counter()
    try:  # in export/protobuf.py since a80d70f; before, in otlp.py
        from eventtrace.export.protobuf import SpanEncoder

        encoder = SpanEncoder("eventtrace")
    except ImportError:
        encoder = otlp.SpanEncoder() if hasattr(otlp, "SpanEncoder") else None
    if encoder is not None:
        size = sum(len(encoder.encode(batch)) for batch in batches)
        results["encoder"] = "eventtrace SpanEncoder"
    else:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        cache = otlp.ResourceCache()
        size = 0
        for batch in batches:
            readable = [otlp.to_readable_span(span, cache.get(span.resource)) for span in batch]
            size += len(encode_spans(readable).SerializeToString())
        results["encoder"] = "SDK ReadableSpan + encode_spans"
    results["encode_us_per_span"] = (time.perf_counter() - started) / len(spans) * 1e6
    results["bytes_per_span"] = size / len(spans)
    return results


def _read_events(path: Path) -> tuple[float, str]:
    """A watch line's bytes to a state, as `eventtrace run` reads them (states let go)."""
    from eventtrace.source import parse

    with path.open("rb") as stream:
        lines = stream.read().splitlines()
    try:  # since af099fd: events decoded by msgspec into their shape (source/frames.py)
        from eventtrace.source.frames import EventFrames
    except ImportError:  # before: orjson, then the parser's dict fast path
        import orjson

        started = time.perf_counter()
        for line in lines:
            parse.parse_event(orjson.loads(line)["object"], "bench")
        return (time.perf_counter() - started) / len(lines) * 1e6, "orjson + parse_event"
    frames = EventFrames()
    started = time.perf_counter()
    for line in lines:
        parse.parse_event(frames.frame(line).object, "bench")
    return (time.perf_counter() - started) / len(lines) * 1e6, "EventFrames + parse_event"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--objects", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--source", type=Path, help="measure this checkout's eventtrace")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    name = f"e{args.events}-o{args.objects}-s{args.seed}-v1"
    directory = BENCH / "results" / "data" / name
    if not (directory / "meta.json").exists():
        print(f"no data set {name}: run bench/pipeline.py with that size first", file=sys.stderr)
        return 2
    if args.child:
        print(json.dumps(measure(directory)))
        return 0
    env = dict(os.environ)
    if args.source is not None:
        env["PYTHONPATH"] = str(args.source.resolve())
    argv = [sys.executable, __file__, "--child", "--events", str(args.events)]
    argv += ["--objects", str(args.objects), "--seed", str(args.seed)]
    answer = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    results = json.loads(answer.stdout)
    source = args.source or BENCH.parent
    print(f"eventtrace from {source}: {results['events']} events, {results['objects']} objects")
    print(f"  read_event           {results['read_event_us']:6.1f} µs/event ({results['reader']})")
    print(f"  parse_event          {results['parse_event_us']:6.1f} µs/event (from a dict)")
    print(f"  parse_object         {results['parse_object_us']:6.1f} µs/object")
    print(f"  pipeline             {results['pipeline_us_per_event']:6.1f} µs/event")
    print(
        f"  OTLP encoding        {results['encode_us_per_span']:6.1f} µs/span "
        f"({results['encoder']}, {results['bytes_per_span']:.0f} B/span)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
