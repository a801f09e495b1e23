"""The Kubernetes side's client and list loop, against the test API server through a
kubeconfig with the real kubernetes-asyncio client: proxies from the environment (read
once, as kubectl does), no netrc, and a list that asks for its next page early."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from eventtrace.metrics import Metrics
from eventtrace.source import watch
from eventtrace.source.kube import CORE_EVENTS, KubeApi, load_client
from eventtrace.source.watch import Watcher
from support.apiserver import ApiServer, make_event, object_reference
from support.connect_proxy import ConnectProxy

EVENTS = "/api/v1/namespaces/default/events"


@pytest.fixture
async def proxy() -> AsyncIterator[ConnectProxy]:
    server = await ConnectProxy().start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


async def connect(apiserver: ApiServer) -> KubeApi:
    client, _ = await load_client(str(apiserver.kubeconfig), None)
    return KubeApi(client)


def some_events(apiserver: ApiServer, count: int) -> list[str]:
    pod = apiserver.create({"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": "p", "namespace": "default"}})  # fmt: skip
    return [
        apiserver.create(make_event("Pulling", f"image {i}", object_reference(pod)))["metadata"][
            "name"
        ]
        for i in range(count)
    ]


async def test_https_proxy_from_the_environment_carries_every_request(
    apiserver: ApiServer, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    some_events(apiserver, 1)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url.replace("http://", "http://ops:s3cret@"))
    api = await connect(apiserver)
    monkeypatch.delenv("HTTPS_PROXY")  # read once, when the client is made (as kubectl)
    try:
        listed = await api.get(EVENTS)
    finally:
        await api.close()
    assert len(listed["items"]) == 1
    assert [t.target for t in proxy.tunnels] == [f"127.0.0.1:{apiserver.port}"]
    assert (
        proxy.tunnels[0].proxy_authorization == "Basic " + base64.b64encode(b"ops:s3cret").decode()
    )


async def test_no_proxy_lets_the_api_server_be_reached_directly(
    apiserver: ApiServer, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    api = await connect(apiserver)
    try:
        await api.get(EVENTS)
    finally:
        await api.close()
    assert proxy.tunnels == []


async def test_a_netrc_entry_for_the_api_server_is_not_used(
    apiserver: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kubectl reads no netrc; an entry for the server's host must neither replace the
    kubeconfig's token nor clash with it."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password something\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    api = await connect(apiserver)
    try:
        listed = await api.get(EVENTS)
    finally:
        await api.close()
    assert listed["kind"] == "EventList"


async def test_a_list_asks_for_the_next_page_before_handling_this_one(
    apiserver: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch, "PAGE_SIZE", 2)
    names = some_events(apiserver, 5)
    handled: list[str] = []

    def pages_asked() -> int:
        return len(apiserver.requests.matching(resource="events", verb="list"))

    async def handle(kind: str, event: dict[str, Any]) -> None:
        if not handled:  # page 2 is on its way while page 1's first event is handled
            await apiserver.requests.wait_for(
                lambda r: r.verb == "list" and "continue" in r.query, within=5
            )
        assert pages_asked() <= len(handled) // 2 + 2, "no more than one page ahead"
        handled.append(event["metadata"]["name"])

    api = await connect(apiserver)
    try:
        watcher = Watcher(api, CORE_EVENTS, handle, Metrics(), namespace="default")
        running = asyncio.create_task(watcher.run())
        await asyncio.wait_for(watcher.synced.wait(), 10)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    finally:
        await api.close()
    assert handled == names
    assert pages_asked() == 3


async def test_a_failing_handler_leaves_no_page_request_behind(
    apiserver: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch, "PAGE_SIZE", 2)
    some_events(apiserver, 5)

    async def handle(kind: str, event: dict[str, Any]) -> None:
        raise RuntimeError("a bug in the handler")

    api = await connect(apiserver)
    try:
        watcher = Watcher(api, CORE_EVENTS, handle, Metrics(), namespace="default")
        with pytest.raises(RuntimeError, match="a bug in the handler"):
            await asyncio.wait_for(watcher.run(), 10)
        left = [t for t in asyncio.all_tasks() if "KubeApi" in repr(t.get_coro())]
        assert left == []
    finally:
        await api.close()
