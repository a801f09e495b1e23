"""The Kubernetes side's client and list/watch loop, against the test API server through
a kubeconfig with the real kubernetes-asyncio client: proxies from the environment (read
once, as kubectl does), no netrc, a list that asks for its next page early, and watch
frames split into lines whatever the reads of the socket bring."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from eventtrace.metrics import Metrics
from eventtrace.source import kube, watch
from eventtrace.source.frames import EventFrames, Frames, JsonFrames
from eventtrace.source.kube import CORE_EVENTS, KubeApi, load_client
from eventtrace.source.schema import Event as EventShape
from eventtrace.source.watch import Change, Item, Listed, Listing, Watcher
from support.apiserver import ApiServer, make_event, object_reference, write_kubeconfig
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


@pytest.mark.parametrize("frames", [JsonFrames(), EventFrames()], ids=["json", "events"])
async def test_a_list_asks_for_the_next_page_before_handling_this_one(
    apiserver: ApiServer, monkeypatch: pytest.MonkeyPatch, frames: Frames
) -> None:
    """Pages of events come as dicts or as event shapes (frames.py), page after page."""
    monkeypatch.setattr(watch, "PAGE_SIZE", 2)
    names = some_events(apiserver, 5)
    handled: list[str] = []

    def pages_asked() -> int:
        return len(apiserver.requests.matching(resource="events", verb="list"))

    async def handle(item: Item) -> None:
        if not isinstance(item, Change):
            return
        event = item.object
        if not handled:  # page 2 is on its way while page 1's first event is handled
            await apiserver.requests.wait_for(
                lambda r: r.verb == "list" and "continue" in r.query, within=5
            )
        assert pages_asked() <= len(handled) // 2 + 2, "no more than one page ahead"
        assert watcher.listing  # what the handler has is not all there is, yet
        if isinstance(frames, EventFrames):
            assert isinstance(event, EventShape)
            handled.append(event.metadata.name)
        else:
            handled.append(event["metadata"]["name"])

    api = await connect(apiserver)
    try:
        watcher = Watcher(api, CORE_EVENTS, handle, Metrics(), namespace="default", frames=frames)
        running = asyncio.create_task(watcher.run())
        await asyncio.wait_for(watcher.synced.wait(), 10)
        assert not watcher.listing
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    finally:
        await api.close()
    assert handled == names
    assert pages_asked() == 3


async def test_a_list_comes_between_its_markers_then_the_watch_follows(
    apiserver: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listing, every item of every page, Listed; then what the watch brings."""
    monkeypatch.setattr(watch, "PAGE_SIZE", 2)
    names = some_events(apiserver, 5)
    items: list[Item] = []
    watched = asyncio.Event()

    async def consume(item: Item) -> None:
        items.append(item)
        if len(items) == 8:
            watched.set()

    api = await connect(apiserver)
    try:
        watcher = Watcher(api, CORE_EVENTS, consume, Metrics(), namespace="default")
        running = asyncio.create_task(watcher.run())
        await asyncio.wait_for(watcher.synced.wait(), 10)
        await apiserver.wait_for_watches("events")
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}}
        event = make_event("Pulling", "image 5", object_reference(pod))
        names.append(apiserver.create(event)["metadata"]["name"])
        await asyncio.wait_for(watched.wait(), 10)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    finally:
        await api.close()
    assert items[0] == Listing("events in default")
    assert items[6] == Listed("events in default")
    changes = [item for item in items if isinstance(item, Change)]
    assert [change.type for change in changes] == ["ADDED"] * 6
    assert [change.object["metadata"]["name"] for change in changes] == names


async def test_a_failing_handler_leaves_no_page_request_behind(
    apiserver: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch, "PAGE_SIZE", 2)
    some_events(apiserver, 5)

    async def handle(item: Item) -> None:
        if isinstance(item, Change):
            raise RuntimeError("a bug in the handler")

    api = await connect(apiserver)
    try:
        watcher = Watcher(api, CORE_EVENTS, handle, Metrics(), namespace="default")
        with pytest.raises(RuntimeError, match="a bug in the handler"):
            await asyncio.wait_for(watcher.run(), 10)
        assert watcher.listing  # a list that failed half-way is not complete
        left = [t for t in asyncio.all_tasks() if "KubeApi" in repr(t.get_coro())]
        assert left == []
    finally:
        await api.close()


async def test_a_watch_delivers_every_frame_whole_however_the_reads_cut_them(
    apiserver: ApiServer,
) -> None:
    """Many frames come in one read of the socket, and a frame of 300 KB takes several
    (the stream reads 64 KB at a time): each arrives once, whole, in order."""
    pod = apiserver.create({"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": "p", "namespace": "default"}})  # fmt: skip
    seen: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    async def handle(item: Item) -> None:
        if not isinstance(item, Change):
            return
        seen.append(item.object)
        if len(seen) == 201:
            arrived.set()

    api = await connect(apiserver)
    try:
        watcher = Watcher(api, CORE_EVENTS, handle, Metrics(), namespace="default")
        running = asyncio.create_task(watcher.run())
        await asyncio.wait_for(watcher.synced.wait(), 10)
        await apiserver.wait_for_watches("events")
        names = []
        for i in range(201):
            event = make_event("Pulling", f"image {i}", object_reference(pod))
            if i == 100:
                event["metadata"]["annotations"] = {"big": "x" * 300_000}
            names.append(apiserver.create(event)["metadata"]["name"])
        await asyncio.wait_for(arrived.wait(), 10)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    finally:
        await api.close()
    assert [event["metadata"]["name"] for event in seen] == names
    assert seen[100]["metadata"]["annotations"]["big"] == "x" * 300_000


async def serve_raw(
    chunks: list[bytes], tmp_path: Path, *, listing: bytes | None = None
) -> tuple[web.AppRunner, KubeApi]:
    """A plain-HTTP server whose every request gets `chunks` as a body, one write (and
    one read at the other end) each (with a `listing`, only watches do: lists get it);
    and a client for it through a kubeconfig."""

    async def body(request: web.Request) -> web.StreamResponse:
        if listing is not None and "watch" not in request.query:
            return web.Response(body=listing, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for chunk in chunks:
            await response.write(chunk)
            await asyncio.sleep(0.02)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/{path:.*}", body)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    config = write_kubeconfig(
        tmp_path / "raw.kubeconfig", server=f"http://127.0.0.1:{port}", token="t", ca_pem=b""
    )
    client, _ = await load_client(str(config), None)
    return runner, KubeApi(client)


async def lines_of(api: KubeApi) -> list[bytes]:
    stream = api.stream(EVENTS, {"watch": "true"}, inactivity=5, deadline=10)
    return [line async for batch in stream for line in batch]


async def test_frames_cut_anywhere_are_joined_and_a_last_one_needs_no_newline(
    tmp_path: Path,
) -> None:
    frames = [
        orjson.dumps({"type": "ADDED", "object": {"n": i, "pad": "y" * i * 7}}) for i in range(3)
    ]
    whole = frames[0] + b"\n" + frames[1] + b"\n\n" + frames[2]  # a blank line; no final newline
    cuts = [5, len(frames[0]) + 1, len(frames[0]) + 9, len(whole) - 1]
    chunks = [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)]
    runner, api = await serve_raw(chunks, tmp_path)
    try:
        lines = await lines_of(api)
    finally:
        await api.close()
        await runner.cleanup()
    assert [line for line in lines if line] == frames
    assert lines.count(b"") == 1


async def test_a_frame_past_the_size_limit_is_dropped_as_it_streams_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not kept (memory stays bounded), nor a failure of the stream (the watch would get it
    again, forever): in its place its first bytes and its length, then the next frame."""
    monkeypatch.setattr(kube, "MAX_FRAME_BYTES", 1000)
    big = b'{"type": "ADDED", "object": {"a": "' + b"z" * 2000
    after = b'{"type": "ADDED", "object": {"n": 2}}'
    chunks = [big[:600], big[600:1500], big[1500:], b'"}}\n' + after + b"\n"]
    runner, api = await serve_raw(chunks, tmp_path)
    try:
        lines = await lines_of(api)
    finally:
        await api.close()
        await runner.cleanup()
    assert [type(line).__name__ for line in lines if line] == ["Oversized", "bytes"]
    dropped = lines[0]
    assert isinstance(dropped, kube.Oversized)
    assert big.startswith(dropped) and dropped.size == len(big) + 3
    assert lines[1] == after


@pytest.mark.parametrize("frames", [JsonFrames(), EventFrames()], ids=["json", "events"])
async def test_a_watch_frame_without_an_object_is_counted_logged_and_skipped(
    tmp_path: Path, frames: Frames, caplog: pytest.LogCaptureFixture
) -> None:
    """Not a watch event as the API defines it: the watch goes on, nothing is lost silently."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}}
    event = make_event("Pulling", "image", object_reference(pod), name="e1")
    event["metadata"]["resourceVersion"] = "7"
    stream = [b'{"type": "ADDED", "object": "not an event"}\n', b"[]\n"]
    stream.append(orjson.dumps({"type": "ADDED", "object": event}) + b"\n")
    listing = orjson.dumps({"kind": "EventList", "metadata": {"resourceVersion": "5"}, "items": []})
    runner, api = await serve_raw(stream, tmp_path, listing=listing)
    seen: list[Any] = []
    arrived = asyncio.Event()

    async def handle(item: Item) -> None:
        if not isinstance(item, Change):
            return
        seen.append(item.object)
        arrived.set()

    metrics = Metrics()
    watcher = Watcher(api, CORE_EVENTS, handle, metrics, namespace="default", frames=frames)
    running = asyncio.create_task(watcher.run())
    try:
        await asyncio.wait_for(arrived.wait(), 10)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await api.close()
        await runner.cleanup()
    assert len(seen) == 1 and watcher.resource_version == "7"
    counted = {"reason": "not_an_object"}
    assert metrics.registry.get_sample_value("eventtrace_invalid_events_total", counted) == 2
    skipped = [r.getMessage() for r in caplog.records if "without an object" in r.getMessage()]
    assert len(skipped) == 2 and "not an event" in skipped[0]
