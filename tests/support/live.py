"""`eventtrace run` as a real process, for the end-to-end tests: the `start_run` fixture
starts it against the test API server (through a kubeconfig) and the OTLP receiver, and
`Live` reads what it logged, serves and exported."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.apiserver import ApiServer
from support.otlp_receiver import OtlpReceiver


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Live:
    """A running `eventtrace run` process and what it wrote."""

    process: asyncio.subprocess.Process
    receiver: OtlpReceiver
    metrics_port: int
    stderr: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def stop(self, within: float = 10.0, signum: int = signal.SIGTERM) -> tuple[int, float]:
        """SIGTERM, as Kubernetes stops a pod; returns the exit code and how long it took."""
        started = time.monotonic()
        self.process.send_signal(signum)
        code = await asyncio.wait_for(self.process.wait(), within)
        if self.reader is not None:
            await asyncio.wait_for(self.reader, 5)
        return code, time.monotonic() - started

    async def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status, await response.text()

    async def wait_ready(self, within: float = 15.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                if (await self.get("/readyz"))[0] == 200:
                    return
            await asyncio.sleep(0.05)
        raise AssertionError(f"not ready after {within}s:\n" + "\n".join(self.stderr))

    async def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels`."""
        _, text = await self.get("/metrics")
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )

    def log(self) -> str:
        return "\n".join(self.stderr)


@pytest.fixture
async def start_run(
    apiserver: ApiServer, otlp_receiver: OtlpReceiver
) -> AsyncIterator[Callable[..., Awaitable[Live]]]:
    started: list[Live] = []

    async def start(*args: str, env: dict[str, str] | None = None, ready: bool = True) -> Live:
        port = free_port()
        command = [
            sys.executable, "-m", "eventtrace", "run",
            "--kubeconfig", str(apiserver.kubeconfig),
            "--otlp-endpoint", otlp_receiver.grpc_endpoint,
            "--metrics-addr", f"127.0.0.1:{port}",
            "--resolve-timeout", "0.3s",
            "--cluster-name", "test",
            *args,
        ]  # fmt: skip
        environment = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("EVENTTRACE_", "OTEL_", "KUBECONFIG"))
        }
        # No state unless a test asks for one: each scenario starts afresh and closes its
        # traces at the stop (tests of the state give EVENTTRACE_STATE).
        environment.update(
            {"OTEL_EXPORTER_OTLP_INSECURE": "true", "EVENTTRACE_STATE": "none", **(env or {})}
        )
        process = await asyncio.create_subprocess_exec(
            *command,
            stderr=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            env=environment,
        )
        live = Live(process, otlp_receiver, port)
        live.reader = asyncio.create_task(_collect(process, live.stderr))
        started.append(live)
        if ready:
            await live.wait_ready()
        return live

    yield start
    for live in started:
        if live.process.returncode is None:
            live.process.kill()
            await live.process.wait()
        if live.reader is not None:
            live.reader.cancel()


async def _collect(process: asyncio.subprocess.Process, lines: list[str]) -> None:
    assert process.stderr is not None
    async for line in process.stderr:
        lines.append(line.decode().rstrip())
