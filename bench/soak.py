"""Weeks of uptime in minutes: `eventtrace run` under endless churn, its memory sampled.

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 150]

A test API server (tests/support) is driven without pause: pods created and deleted
within seconds (with a ReplicaSet each time, as rollouts make them), each with kubelet
events, some bumped as BackOffs repeat, a share written by nodes whose clocks are hours
behind, and every event deleted again after a while, as the API server's TTL does. The
time windows that bound eventtrace's memory are shortened so that many of them pass in
the run: events and owner hints are forgotten 60 s after they last arrived (3 h by
default), tombstones after 30 s (1 h), housekeeping every 5 s (60 s). Memory must then
plateau: the script prints RSS every sample and compares the last third of the run with
the middle third.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.apiserver import ApiServer, make_event, object_reference  # noqa: E402
from support.otlp_receiver import OtlpReceiver  # noqa: E402

NS = "soak"
HOURS_BEHIND = 3 * 3600
SHORT_WINDOWS = {
    "EVENTTRACE_EVENT_MEMORY": "60s",
    "EVENTTRACE_OBJECT_MEMORY": "30s",
    "EVENTTRACE_HOUSEKEEPING_INTERVAL": "5s",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Churn:
    """What a busy cluster does, forever: short-lived pods and their events."""

    def __init__(self, api: ApiServer, rng: random.Random) -> None:
        self.api = api
        self.rng = rng
        self.generation = 0
        self.events: list[tuple[float, dict[str, Any]]] = []  # (created at, event)
        self.pods: list[tuple[float, dict[str, Any]]] = []
        self.created = 0

    def step(self) -> None:
        api, rng = self.api, self.rng
        self.generation += 1
        name = f"app-{self.generation % 50}-{self.generation}"
        rs = api.create(
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {"name": name, "namespace": NS},
            }
        )
        pod = api.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{name}-x",
                    "namespace": NS,
                    "ownerReferences": [
                        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name,
                         "uid": rs["metadata"]["uid"], "controller": True}
                    ],
                },
            }
        )  # fmt: skip
        now = time.time()
        self._event(rs, "SuccessfulCreate", f"Created pod: {name}-x", "replicaset-controller")
        for reason in ("Scheduled", "Pulled", "Created", "Started"):
            self._event(pod, reason, f"{reason} {name}", "kubelet")
        if rng.random() < 0.2:  # crash-looping: a BackOff bumped a few times
            backoff = self._event(pod, "BackOff", "Back-off restarting", "kubelet")
            for _ in range(rng.randint(1, 4)):
                api.repeat_event(backoff)
        if rng.random() < 0.1:  # a node clock hours behind
            event = make_event("Pulled", "from a node in the past", object_reference(pod),
                               component="kubelet", host="old-node")  # fmt: skip
            past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - HOURS_BEHIND))
            event["firstTimestamp"] = event["lastTimestamp"] = past
            self.events.append((now, api.create(event)))
        self.pods.append((now, rs))
        self.pods.append((now, pod))

    def _event(self, target: dict[str, Any], reason: str, message: str, component: str) -> Any:
        event = self.api.create(
            make_event(reason, message, object_reference(target), component=component)
        )
        self.events.append((time.time(), event))
        self.created += 1
        return event

    def expire(self, pods_after: float, events_after: float) -> None:
        """Delete pods after a few seconds (deleted, then tombstones) and events after a
        while (the API server's TTL)."""
        now = time.time()
        while self.pods and now - self.pods[0][0] > pods_after:
            self.api.delete(self.pods.pop(0)[1])
        while self.events and now - self.events[0][0] > events_after:
            self.api.delete(self.events.pop(0)[1])


async def soak(minutes: float, rate: float, sample_every: float) -> str:
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        receiver = OtlpReceiver().start()
        async with ApiServer(kubeconfig=work / "kubeconfig") as api:
            env = {
                "OTEL_EXPORTER_OTLP_INSECURE": "true",
                "EVENTTRACE_STATE": "none",
                **SHORT_WINDOWS,
            }
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "eventtrace", "run", "--kubeconfig", str(api.kubeconfig),
                "--otlp-endpoint", receiver.grpc_endpoint, "--metrics-addr",
                f"127.0.0.1:{free_port()}", "--trace-idle", "10s", "--log-level", "WARNING",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                env={**_clean_env(), **env},
            )  # fmt: skip
            churn = Churn(api, random.Random(1))
            samples: list[tuple[float, float]] = []
            started = time.monotonic()
            next_sample = started + sample_every
            watched = psutil.Process(process.pid)
            try:
                while time.monotonic() - started < minutes * 60:
                    churn.step()
                    churn.expire(pods_after=5, events_after=45)
                    if time.monotonic() >= next_sample:
                        api.compact()  # the server's own history stays bounded too
                        rss = watched.memory_info().rss / 2**20
                        samples.append((time.monotonic() - started, rss))
                        print(f"{samples[-1][0]:6.0f} s  {rss:6.1f} MB  "
                              f"{churn.created:,} events created", flush=True)  # fmt: skip
                        next_sample += sample_every
                    await asyncio.sleep(1 / rate)
            finally:
                process.terminate()
                await process.wait()
                receiver.stop()
            spans = receiver.span_count
    third = len(samples) // 3
    middle = statistics.median(rss for _, rss in samples[third : 2 * third])
    last = statistics.median(rss for _, rss in samples[2 * third :])
    peak = max(rss for _, rss in samples)
    return (
        f"{minutes:g} min, {churn.generation:,} pods, {churn.created:,} events, "
        f"{spans:,} spans received; RSS median middle third {middle:.1f} MB, last third "
        f"{last:.1f} MB ({(last - middle) / middle:+.1%}), peak {peak:.1f} MB"
    )


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("EVENTTRACE_", "OTEL_"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=40, help="pods a second")
    parser.add_argument("--sample-every", type=float, default=15, help="seconds")
    args = parser.parse_args()
    print(asyncio.run(soak(args.minutes, args.rate, args.sample_every)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
