"""The state `run` saves (eventtrace/state.py) at 100,000 live events: its size against a
ConfigMap's 1 MiB, and how long encoding and saving it take.

    .venv/bin/python bench/state.py [--events 200000]

On the benchmark's generated data (an hour of events, made by bench/pipeline.py or here):
every event is taken as exported, and the episodes still open at the end of the hour are
what a save carries, as they would be in a live `run` saving at that moment. The save is
timed twice: into a file, and into a ConfigMap of the test API server over HTTPS (a create,
then a replace), through the same code `run` uses.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "tests"))

import generate  # noqa: E402  (bench/ is not a package)

CONFIGMAP_LIMIT = 1 << 20


def open_at_the_end(directory: Path) -> tuple[int, object, object]:
    """(events, tracker, assembler) after the hour, with the episodes still open then."""
    import orjson

    from eventtrace.core.episodes import TraceRules
    from eventtrace.core.model import EventState, KubeObject
    from eventtrace.core.pipeline import Pipeline
    from eventtrace.source.parse import parse_event, parse_object

    dataset = generate.load(directory)
    pipeline = Pipeline(TraceRules("bench", 120 * 10**9, 1800 * 10**9), reorder_window_ns=0)
    with dataset.objects_path.open("rb") as lines:
        for line in lines:
            obj = parse_object(orjson.loads(line), "bench")
            if isinstance(obj, KubeObject):
                pipeline.add_object(obj)
    states = []
    for _, raw in generate.watch_frames(dataset.events_path):
        state = parse_event(raw, "bench")
        if isinstance(state, EventState):
            states.append(state)
    states.sort(key=lambda s: s.sort_key)
    for state in states:
        pipeline.offer(state, now=state.last_ns)
        for _ in pipeline.release(state.last_ns):
            pass
    return len({s.uid for s in states}), pipeline.tracker, pipeline.assembler


async def measure(events: int) -> str:
    from eventtrace.source.kube import load_client
    from eventtrace.state import ConfigMapStore, FileStore, Progress, uid_hash
    from support.apiserver import ApiServer

    directory = generate.generate(BENCH / "results" / "data", events=events, seed=1).directory
    live, tracker, assembler = open_at_the_end(directory)
    progress = Progress("bench https://127.0.0.1")
    for uid, count in tracker.counts():  # type: ignore[attr-defined]
        progress.exported[uid_hash(uid)] = count
    episodes = assembler.episodes()  # type: ignore[attr-defined]

    encode_times = []
    for _ in range(5):
        started = time.perf_counter()
        data = progress.encode(episodes)
        encode_times.append(time.perf_counter() - started)
    without_episodes = len(progress.encode([]))
    decoded = Progress.decode(data, progress.cluster)
    assert decoded.exported == progress.exported and len(decoded.restored_episodes) == len(episodes)

    with tempfile.TemporaryDirectory() as scratch:
        store = FileStore(Path(scratch) / "state")
        file_times = []
        for _ in range(5):
            started = time.perf_counter()
            await store.save(data)
            file_times.append(time.perf_counter() - started)

        async with ApiServer(kubeconfig=Path(scratch) / "kubeconfig") as server:
            client, _ = await load_client(str(server.kubeconfig), None)
            configmap = ConfigMapStore(client, "default", "eventtrace-state")
            cm_times = []
            for _ in range(5):
                started = time.perf_counter()
                await configmap.save(data)
                cm_times.append(time.perf_counter() - started)
            stored = server.get("configmaps", "eventtrace-state", "default")
            assert stored is not None and base64.b64decode(stored["binaryData"]["state"]) == data
            await client.close()

    in_configmap = len(base64.b64encode(data))
    return "\n".join(
        [
            f"live events (exported, remembered): {live:,}",
            f"open episodes carried: {len(episodes):,}",
            f"state: {len(data):,} bytes compressed ({without_episodes:,} without episodes); "
            f"{in_configmap:,} bytes as the ConfigMap's base64 binaryData, "
            f"{in_configmap / CONFIGMAP_LIMIT:.0%} of 1 MiB",
            f"encode: median {statistics.median(encode_times) * 1000:.0f} ms (5 runs)",
            f"save to a file: median {statistics.median(file_times) * 1000:.0f} ms",
            f"save to a ConfigMap (test API server, HTTPS): median "
            f"{statistics.median(cm_times) * 1000:.0f} ms",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="watch frames to generate")
    args = parser.parse_args()
    print(asyncio.run(measure(args.events)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
