"""The Kubernetes side's client and list loop, against the test API server through a
kubeconfig with the real kubernetes-asyncio client: proxies from the environment (read
once, as kubectl does) and no netrc."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventtrace.source.kube import KubeApi, load_client
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
