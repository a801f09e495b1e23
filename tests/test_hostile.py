"""A hostile world never stops the collector. What a real API server would not send (an
object nested 1,000 deep, a frame that is not UTF-8, a watch ended the moment it opens,
Retry-After 0 or 3600, a 403 during an RBAC rollout, a rotated token), written on the
wire by the test API server, and read by the real kubernetes-asyncio client through a
kubeconfig; and files and kubeconfigs no one should have written."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from kubernetes_asyncio.config import incluster_config
from tenacity import AsyncRetrying, RetryCallState, wait_exponential
from test_kube_client import serve_raw

from eventtrace.core.owners import ObjectIndex
from eventtrace.metrics import Metrics
from eventtrace.source import kube, watch
from eventtrace.source.files import Record, read_records
from eventtrace.source.frames import EventFrames, Frames, JsonFrames
from eventtrace.source.kube import CORE_EVENTS, WORKLOADS, ApiError, KubeApi, Resource, load_client
from eventtrace.source.resolve import Resolver
from eventtrace.source.watch import Change, Item, Watcher, wait_before_retry
from support.apiserver import ApiServer, make_event, object_reference
from support.live import free_port

DEEP = b"[" * 1000 + b"]" * 1000  # 1,000 levels: past where msgspec, json and PyYAML recurse
NOT_UTF8 = b'"\xff\xfe not UTF-8"'
PODS = WORKLOADS[0]
FRAMES = pytest.mark.parametrize("frames", [EventFrames(), JsonFrames()], ids=["events", "json"])


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def invalid(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("eventtrace_invalid_events_total", {"reason": reason})
    return value or 0.0


def restarts(metrics: Metrics, resource: str, reason: str) -> float:
    labels = {"resource": resource, "reason": reason}
    return metrics.registry.get_sample_value("eventtrace_watch_restarts_total", labels) or 0.0


POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}}


def event(api: ApiServer, name: str, *, message: str = "fine", annotation: str = "") -> str:
    """An event stored by the server (`annotation`: the value of annotation `a`); returns
    its resourceVersion."""
    made = make_event("Pulling", message, object_reference(POD), name=name)
    if annotation:
        made["metadata"]["annotations"] = {"a": annotation}
    return str(api.create(made)["metadata"]["resourceVersion"])


class Watching:
    """A Watcher running against the test API server, and the names of what it handed
    over."""

    watcher: Watcher

    def __init__(self) -> None:
        self.names: list[str] = []

    async def handle(self, item: Item) -> None:
        if isinstance(item, Change):
            meta = (
                item.object["metadata"] if isinstance(item.object, dict) else item.object.metadata
            )
            self.names.append(meta["name"] if isinstance(meta, dict) else meta.name)

    async def wait_for(self, name: str, within: float = 5.0) -> None:
        deadline = time.monotonic() + within
        while name not in self.names:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} not handed over within {within}s: {self.names}")
            await asyncio.sleep(0.02)


@asynccontextmanager
async def watching(
    apiserver: ApiServer,
    resource: Resource = CORE_EVENTS,
    frames: Frames | None = None,
    metrics: Metrics | None = None,
    **options: Any,
) -> AsyncIterator[Watching]:
    client, _ = await load_client(str(apiserver.kubeconfig), None)
    api = KubeApi(client)
    running: asyncio.Task[None] | None = None
    try:
        seen = Watching()
        seen.watcher = Watcher(
            api, resource, seen.handle, metrics or Metrics(), namespace="default",
            frames=frames, **options,
        )  # fmt: skip
        running = asyncio.create_task(seen.watcher.run())
        yield seen
        assert not running.done(), running.exception()
    finally:
        if running is not None:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        await api.close()


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and text in r.getMessage()
    ]


# ---- 1, 2: what cannot be decoded is skipped, counted, logged; the watch goes on ----------


@FRAMES
async def test_a_watch_frame_nested_1000_deep_is_skipped_and_the_watch_goes_on(
    apiserver: ApiServer, frames: Frames, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: a RecursionError out of msgspec ended the watch task (events), or orjson's
    depth error was retried on the same frame forever (json)."""
    apiserver.faults.rewrite(b'"@@DEEP@@"', DEEP)
    metrics = Metrics()
    async with watching(apiserver, frames=frames, metrics=metrics) as seen:
        await asyncio.wait_for(seen.watcher.synced.wait(), 10)
        await apiserver.wait_for_watches("events")
        deep_version = event(apiserver, "deep", annotation="@@DEEP@@")
        event(apiserver, "after")
        await seen.wait_for("after")
    assert seen.names == ["after"]
    assert invalid(metrics, "too_deep") == 1
    [said] = warnings_about(caplog, "nested more than 100 levels")
    assert said.startswith("events in default: skipped the watch frame at resourceVersion")
    assert deep_version in said


@FRAMES
async def test_a_watch_frame_not_utf8_is_skipped_and_the_watch_moves_past_it(
    apiserver: ApiServer, frames: Frames, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the watch resumed from the version before the frame, got it again, and
    backed off up to 30 s, forever: nothing after it was ever seen."""
    apiserver.faults.rewrite(b'"@@BAD@@"', NOT_UTF8)
    metrics = Metrics()
    async with watching(apiserver, frames=frames, metrics=metrics) as seen:
        await asyncio.wait_for(seen.watcher.synced.wait(), 10)
        await apiserver.wait_for_watches("events")
        bad_version = event(apiserver, "bad", message="@@BAD@@")
        event(apiserver, "after")
        await seen.wait_for("after")
        assert seen.watcher.resource_version != bad_version
        # The server ends the watch right after the bad frame: resumed past it, not before.
        event(apiserver, "bad-2", message="@@BAD@@")
        apiserver.close_watches("events")
        await apiserver.wait_for_watches("events")
        event(apiserver, "later")
        await seen.wait_for("later")
    assert seen.names == ["after", "later"]
    assert invalid(metrics, "bad_utf8") == 2  # each bad frame once, though a watch ended
    said = warnings_about(caplog, "not valid UTF-8")
    assert len(said) == 2 and f"resourceVersion {bad_version}" in said[0]
    resumed = apiserver.requests.matching(resource="events", verb="watch")[-1]
    assert int(resumed.query["resourceVersion"]) > int(bad_version)


@FRAMES
async def test_a_list_skips_only_the_items_it_cannot_decode(
    apiserver: ApiServer,
    frames: Frames,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A restart lists what is there, bad items included. Before: the first list failed
    on them and was retried forever (a RecursionError ended it, for events)."""
    monkeypatch.setattr(watch, "PAGE_SIZE", 2)
    apiserver.faults.rewrite(b'"@@DEEP@@"', DEEP)
    apiserver.faults.rewrite(b'"@@BAD@@"', NOT_UTF8)
    event(apiserver, "e1")
    event(apiserver, "e2", annotation="@@DEEP@@")
    event(apiserver, "e3")
    event(apiserver, "e4", message="@@BAD@@")
    event(apiserver, "e5")
    metrics = Metrics()
    async with watching(apiserver, frames=frames, metrics=metrics) as seen:
        await asyncio.wait_for(seen.watcher.synced.wait(), 10)
    assert seen.names == ["e1", "e3", "e5"]
    assert (invalid(metrics, "too_deep"), invalid(metrics, "bad_utf8")) == (1, 1)
    lists = apiserver.requests.matching(resource="events", verb="list")
    assert len(lists) == 3 and all(r.status == 200 for r in lists)  # three pages, once
    said = warnings_about(caplog, "skipped item")
    assert [line.split(": ")[1] for line in said] == [
        f"skipped item 1 of the list at resourceVersion {apiserver.resource_version}",
        f"skipped item 3 of the list at resourceVersion {apiserver.resource_version}",
    ]


async def test_a_frame_too_long_to_keep_is_dropped_and_the_watch_lists_past_it(
    apiserver: ApiServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A frame past the size limit is dropped as it streams in; its resourceVersion (after
    the 300 KB annotation) unknown, the watch cannot resume past it: when the server ends
    the watch, it lists again rather than get the frame again. Before: the stream failed
    on it, and every watch from then on."""
    monkeypatch.setattr(kube, "MAX_FRAME_BYTES", 100_000)
    metrics = Metrics()
    async with watching(apiserver, metrics=metrics) as seen:
        await asyncio.wait_for(seen.watcher.synced.wait(), 10)
        await apiserver.wait_for_watches("events")
        event(apiserver, "huge", annotation="x" * 300_000)
        event(apiserver, "after")
        await seen.wait_for("after")
        event(apiserver, "huge-2", annotation="y" * 300_000)
        await asyncio.sleep(0.3)
        apiserver.close_watches("events")
        await seen.wait_for("huge-2")  # listed again (a list's items are not bounded so)
        event(apiserver, "later")
        await seen.wait_for("later")
    assert seen.names == ["after", "after", "huge", "huge-2", "later"]
    assert invalid(metrics, "too_big") == 2
    assert len(warnings_about(caplog, "bytes or more")) == 2
    assert restarts(metrics, "events", "unreadable") == 1
    assert len(apiserver.requests.matching(resource="events", verb="list")) == 2


async def test_a_workload_list_item_that_is_no_object_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Pods listed for the object cache, one of them a string. Before: it reached the
    cache's handler, whose AttributeError ended the watch task (and the process)."""
    pods = [{"metadata": {"name": name, "namespace": "default", "uid": name}} for name in "ab"]
    listing = orjson.dumps({"kind": "PodList", "metadata": {"resourceVersion": "5"},
                            "items": [pods[0], "not a pod", 5, pods[1]]})  # fmt: skip
    runner, api = await serve_raw([], tmp_path, listing=listing)
    metrics = Metrics()
    resolver = Resolver(api, ObjectIndex(), metrics)
    watcher = Watcher(api, PODS, resolver.feed("Pod"), metrics, namespace="default")
    running = asyncio.create_task(watcher.run())
    try:
        await asyncio.wait_for(watcher.synced.wait(), 10)
        assert not running.done()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await api.close()
        await runner.cleanup()
    assert sorted(obj.ref.name for obj in resolver.index.objects()) == ["a", "b"]
    assert invalid(metrics, "not_an_object") == 2
    said = warnings_about(caplog, "expected an object")
    assert said == [
        "pods in default: skipped item 1 of the list at resourceVersion 5: "
        "expected an object, got str",
        "pods in default: skipped item 2 of the list at resourceVersion 5: "
        "expected an object, got int",
    ]


# ---- 1: files ------------------------------------------------------------------------------


def records(path: Path) -> list[Record]:
    return list(read_records([str(path)]))


def rejected(found: list[Record]) -> list[tuple[str, str, str]]:
    return [
        (r.raw.where, r.raw.category, r.raw.reason) for r in found if not isinstance(r.raw, dict)
    ]


def event_json(name: str, **extra: Any) -> dict[str, Any]:
    made = make_event("Pulling", "fine", object_reference(POD), name=name)
    made["metadata"].update(extra)
    return made


@pytest.mark.parametrize("form", ["jsonl", "json-list", "json-pretty-stream", "yaml"])
def test_a_file_item_nested_1000_deep_or_not_utf8_is_skipped(tmp_path: Path, form: str) -> None:
    """Before: a RecursionError out of json (or PyYAML) ended the replay; a byte that is
    not UTF-8 anywhere refused the whole file."""
    good = [event_json("one"), event_json("two")]
    deep = b'{"kind": "Event", "metadata": {"name": "deep", "annotations": {"a": ' + DEEP + b"}}}"
    bad = b'{"kind": "Event", "metadata": {"name": "\xff"}}'
    path = tmp_path / f"events.{form}"
    if form == "jsonl":
        lines = [orjson.dumps(good[0]), deep, bad, orjson.dumps(good[1])]
        path.write_bytes(b"\n".join(lines) + b"\n")
        expected = [(f"{path}:2", "too_deep"), (f"{path}:3", "bad_utf8")]
    elif form == "json-list":
        items = [json.dumps(good[0], indent=1).encode(), deep, bad, json.dumps(good[1]).encode()]
        path.write_bytes(b'{"kind": "EventList", "items": [\n' + b",\n".join(items) + b"\n]}\n")
        expected = [(f"{path}:1: items[1]", "too_deep"), (f"{path}:1: items[2]", "bad_utf8")]
    elif form == "json-pretty-stream":
        pieces = [
            json.dumps(good[0], indent=2).encode(),
            deep,
            bad,
            json.dumps(good[1], indent=2).encode(),
        ]
        path.write_bytes(b"\n".join(pieces) + b"\n")
        first = json.dumps(good[0], indent=2).count("\n") + 2
        expected = [(f"{path}:{first}", "too_deep"), (f"{path}:{first + 1}", "bad_utf8")]
    else:
        documents = [
            yaml.safe_dump(good[0]).encode(),
            b"kind: Event\nmetadata:\n  name: deep\n  annotations:\n    a: " + DEEP + b"\n",
            b"kind: Event\nmetadata: {name: \xff}\n",
            yaml.safe_dump(good[1]).encode(),
        ]
        path.write_bytes(b"---\n".join(documents))
        first = yaml.safe_dump(good[0]).count("\n") + 2
        expected = [(f"{path}:{first}", "too_deep"), (f"{path}:{first + 6}", "bad_utf8")]
    found = records(path)
    names = [r.raw["metadata"]["name"] for r in found if isinstance(r.raw, dict)]
    assert names == ["one", "two"]
    assert [(where, category) for where, category, _ in rejected(found)] == expected
    assert all(r.is_event for r in found)


def test_yaml_aliases_cannot_nest_deeper_than_the_limit_or_without_end(tmp_path: Path) -> None:
    """A YAML alias inside the node it names is a structure without end; a chain of
    aliases nests as deep as the nodes it names. Neither reaches a decoder that recurses."""
    path = tmp_path / "aliases.yaml"
    chain = "a0: &a0 {x: 1}\n" + "".join(f"a{i}: &a{i} {{k: *a{i - 1}}}\n" for i in range(1, 150))
    merges = "a0: &a0 {x: 1}\n" + "".join(
        f"a{i}: &a{i} {{<<: *a{i - 1}}}\n" for i in range(1, 1500)
    )
    path.write_text(
        "\n---\n".join(["loop: &l [*l]", chain, merges, "kind: Event\nm: &m ok\nn: *m"])
    )
    found = records(path)
    assert [category for _, category, _ in rejected(found)] == ["too_deep"] * 3
    assert [r.raw for r in found if isinstance(r.raw, dict)] == [
        {"kind": "Event", "m": "ok", "n": "ok"}
    ]


def test_replay_reports_each_bad_item_and_traces_the_rest(tmp_path: Path) -> None:
    """The real `eventtrace replay`: exit 0, one line per bad item naming file:line, and
    the counter by reason (the metric) is what `load_recording` counts with."""
    good = [event_json("web.1"), event_json("web.2")]
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        b"\n".join([orjson.dumps(good[0]), b'{"kind": "Event", "x": ' + DEEP + b"}",
                    b'{"kind": "Event", "message": "\xff"}', orjson.dumps(good[1])]) + b"\n"
    )  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "eventtrace", "replay", str(path), "--output", "jsonl"],
        capture_output=True, timeout=60, env=_clean_environment(),
    )  # fmt: skip
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert f"{path}:2: nested more than 100 levels deep" in stderr
    assert f"{path}:3: not valid UTF-8" in stderr
    spans = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(s["name"] for s in spans if s["kind"] == "event") == ["Pulling", "Pulling"]


def _clean_environment() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EVENTTRACE_", "OTEL_", "KUBECONFIG"))
    }


# ---- 3: a watch ended at once backs off ----------------------------------------------------


async def test_a_watch_the_server_ends_at_once_backs_off(
    apiserver: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: reopened at once, ~600 watches a second."""
    apiserver.faults.end_watch("events", times=None)
    metrics = Metrics()
    async with watching(apiserver, metrics=metrics) as seen:
        await asyncio.wait_for(seen.watcher.synced.wait(), 10)
        await asyncio.sleep(2.0)
        opened = len(apiserver.requests.matching(resource="events", verb="watch"))
        assert 2 <= opened <= 6, opened  # 0.25 s doubling, plus up to 1 s of jitter each
        apiserver.faults.clear()
        event(apiserver, "fresh")
        await seen.wait_for("fresh", within=10)  # the watch open again, as long as it lasts
    assert restarts(metrics, "events", "short") >= 2
    said = warnings_about(caplog, "ended the watch after")
    assert said and "retrying in" in said[0]


# ---- 4: Retry-After within bounds ---------------------------------------------------------


def state_after(error: BaseException, attempt: int = 1) -> RetryCallState:
    state = RetryCallState(AsyncRetrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    state.set_exception((type(error), error, None))
    return state


@pytest.mark.parametrize(
    ("retry_after", "waited"), [(0.0, 1.0), (0.2, 1.0), (7.0, 7.0), (3600.0, 60.0)]
)
def test_retry_after_is_honoured_between_1s_and_60s(retry_after: float, waited: float) -> None:
    throttled = ApiError(429, "TooManyRequests", "slow down", retry_after=retry_after)
    assert wait_before_retry(state_after(throttled)) == waited


async def test_retry_after_0_waits_a_second_and_3600_at_most_the_bound(
    apiserver: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the client: `Retry-After: 0` (before: a storm of requests) waits 1 s; 3600
    waits the upper bound (set to 1.5 s here, 60 s in earnest)."""
    monkeypatch.setattr(watch, "RETRY_AFTER_SECONDS", (1.0, 1.5), raising=False)
    apiserver.faults.throttle(resource="events", verbs="list", times=1, retry_after=0)
    apiserver.faults.throttle(resource="events", verbs="list", times=1, retry_after=3600)
    async with watching(apiserver) as seen:
        await asyncio.wait_for(seen.watcher.synced.wait(), 10)
    lists = apiserver.requests.matching(resource="events", verb="list")
    assert [r.status for r in lists] == [429, 429, 200]
    assert lists[1].time - lists[0].time >= 0.95
    assert 1.45 <= lists[2].time - lists[1].time < 2.5


# ---- 5: 403 is retried slowly, said once ---------------------------------------------------


def test_a_403_waits_minutes_doubling_to_10() -> None:
    forbidden = ApiError(403, "Forbidden", "pods is forbidden")
    assert 60 <= wait_before_retry(state_after(forbidden, 1)) <= 90
    assert 120 <= wait_before_retry(state_after(forbidden, 2)) <= 150
    assert 600 <= wait_before_retry(state_after(forbidden, 9)) <= 630
    assert wait_before_retry(state_after(ApiError(500, "InternalError", "x"), 1)) <= 1.25


async def test_a_transient_403_on_pods_is_retried_said_once_and_the_watch_recovers(
    apiserver: ApiServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: one 403 gave up on the kind for the life of the process."""
    caplog.set_level(logging.INFO, logger="eventtrace.watch")
    quickly = wait_exponential(multiplier=0.1, max=0.3)
    monkeypatch.setattr(watch, "FORBIDDEN_BACKOFF", quickly, raising=False)
    apiserver.create(POD)
    rbac = apiserver.faults.forbid("pods")
    told: list[str] = []
    metrics = Metrics()
    async with watching(
        apiserver, PODS, metrics=metrics,
        on_forbidden=lambda resource, message: told.append(message),
    ) as seen:  # fmt: skip
        await asyncio.wait_for(seen.watcher.settled.wait(), 5)  # nothing waits for it
        assert not seen.watcher.synced.is_set()
        await asyncio.sleep(1.0)
        apiserver.faults.remove(rbac)  # the RBAC rollout is done
        await seen.wait_for("p")
        assert seen.watcher.synced.is_set() and not seen.watcher.forbidden
    assert restarts(metrics, "pods", "forbidden") >= 3  # counted at each retry
    assert len(told) == 1 and "not allowed to list/watch pods" in told[0]
    assert "owner chains stop at Pod objects meanwhile" in told[0]
    assert warnings_about(caplog, "forbidden") == []  # the retries are not logged
    assert [r.getMessage() for r in caplog.records if "allowed again" in r.getMessage()]


# ---- 7: rotated credentials are read again -------------------------------------------------


def kubeconfig(path: Path, apiserver: ApiServer, user: dict[str, Any]) -> Path:
    apiserver.write_kubeconfig(path)
    config = yaml.safe_load(path.read_text())
    config["users"][0]["user"] = user
    path.write_text(yaml.safe_dump(config))
    return path


async def test_a_rotated_kubeconfig_token_is_read_again_on_401(apiserver: ApiServer) -> None:
    """Before: 401 forever, the kubeconfig read once."""
    client, _ = await load_client(str(apiserver.kubeconfig), None)
    api = KubeApi(client)
    try:
        await api.get("/api/v1/namespaces/default/events")
        new = apiserver.rotate_token()
        apiserver.write_kubeconfig(apiserver.kubeconfig, token=new)  # as a token rotation would
        listed = await api.get("/api/v1/namespaces/default/events")
    finally:
        await api.close()
    assert listed["kind"] == "EventList"
    assert [r.status for r in apiserver.requests.records] == [200, 401, 200]
    assert api.unauthorized_since is None


async def test_a_rewritten_token_file_is_read_again(apiserver: ApiServer, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(apiserver.token)
    config = kubeconfig(tmp_path / "config", apiserver, {"tokenFile": str(token_file)})
    client, _ = await load_client(str(config), None)
    api = KubeApi(client)
    try:
        await api.get("/version")
        token_file.write_text(apiserver.rotate_token())
        listed = await api.get("/api/v1/pods")
    finally:
        await api.close()
    assert listed["kind"] == "PodList"


async def test_how_long_it_has_been_unauthorized(
    apiserver: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube, "REREAD_SECONDS", 0.0, raising=False)
    client, _ = await load_client(str(apiserver.kubeconfig), None)
    api = KubeApi(client)
    try:
        assert api.unauthorized_since is None
        new = apiserver.rotate_token()  # the kubeconfig not (yet) rewritten
        before = time.monotonic()
        with pytest.raises(ApiError, match="401"):
            await api.get("/api/v1/pods")
        since = api.unauthorized_since
        assert since is not None and before <= since <= time.monotonic()
        with pytest.raises(ApiError, match="401"):
            await api.get("/api/v1/pods")
        assert api.unauthorized_since == since  # since the first
        apiserver.write_kubeconfig(apiserver.kubeconfig, token=new)
        await api.get("/api/v1/pods")
        assert api.unauthorized_since is None
    finally:
        await api.close()


EXEC_PLUGIN = """\
import json, sys, time, datetime
folder = sys.argv[1]
with open(folder + "/runs", "a") as runs:
    runs.write("run\\n")
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=float(sys.argv[2]))
print(json.dumps({
    "apiVersion": "client.authentication.k8s.io/v1beta1",
    "kind": "ExecCredential",
    "status": {"token": open(folder + "/token").read(),
               "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
}))
"""


def exec_user(tmp_path: Path, lifetime: float) -> dict[str, Any]:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(EXEC_PLUGIN)
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                     "command": sys.executable,
                     "args": [str(plugin), str(tmp_path), str(lifetime)]}}  # fmt: skip


async def test_an_exec_plugin_runs_again_before_its_token_expires_and_on_401(
    apiserver: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the plugin ran once; its token, expired, was sent forever."""
    monkeypatch.setattr(kube, "EXPIRY_MARGIN_SECONDS", 1.0, raising=False)
    monkeypatch.setattr(kube, "REREAD_SECONDS", 0.0, raising=False)
    (tmp_path / "token").write_text(apiserver.token)
    config = kubeconfig(tmp_path / "config", apiserver, exec_user(tmp_path, 2.5))
    client, _ = await load_client(str(config), None)
    api = KubeApi(client)
    runs = tmp_path / "runs"
    try:
        await api.get("/api/v1/pods")
        assert runs.read_text().count("run") == 1
        (tmp_path / "token").write_text(apiserver.rotate_token())
        await asyncio.sleep(2.0)  # within the margin of its expiry (second precision)
        await api.get("/api/v1/pods")  # the plugin ran first: its new token, no 401
        assert runs.read_text().count("run") == 2
        assert [r.status for r in apiserver.requests.records] == [200, 200]
        (tmp_path / "token").write_text(apiserver.rotate_token())  # revoked, early
        await api.get("/api/v1/pods")
    finally:
        await api.close()
    assert [r.status for r in apiserver.requests.records] == [200, 200, 401, 200]


async def test_the_in_cluster_token_is_read_again_on_401(
    apiserver: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kubernetes-asyncio re-reads the service account's token once a minute; a 401
    before that reads it at once. Before: 401 for up to a minute."""
    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text(apiserver.token)
    ca.write_bytes(apiserver.ca_pem)
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(apiserver.port))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    monkeypatch.delenv("KUBECONFIG", raising=False)
    client, source = await load_client(None, None)
    api = KubeApi(client)
    try:
        assert source == "in-cluster service account"
        await api.get("/api/v1/pods")
        token.write_text(apiserver.rotate_token())
        await api.get("/api/v1/pods")
    finally:
        await api.close()
    assert [r.status for r in apiserver.requests.records] == [200, 401, 200]


# ---- 8: a malformed kubeconfig is one line -------------------------------------------------


def good_kubeconfig() -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
    }  # fmt: skip


def changed(**fields: Any) -> str:
    config = good_kubeconfig()
    config.update(fields)
    return yaml.safe_dump(config)


def with_ca_data(data: str) -> str:
    cluster = {"server": "https://127.0.0.1:1", "certificate-authority-data": data}
    return changed(clusters=[{"name": "k", "cluster": cluster}])


EXEC_MISSING = {
    "apiVersion": "client.authentication.k8s.io/v1beta1",
    "command": "/nonexistent/plugin",
}
BAD_KUBECONFIGS = {
    "bad yaml": ("apiVersion: v1\nclusters: [\n", "not valid YAML: line 3"),
    "a scalar": (
        "just a string\n",
        "expected a mapping of clusters, contexts and users, got a str",
    ),
    "empty": ("", "got nothing"),
    "a list": ("- a\n- b\n", "got a list"),
    "no clusters": (changed(clusters=None), 'names cluster "k", which is not in clusters'),
    "a missing cluster": (
        changed(contexts=[{"name": "c", "context": {"cluster": "gone", "user": "u"}}]),
        'context "c" names cluster "gone", which is not in clusters',
    ),
    "clusters a mapping": (changed(clusters={"k": {}}), "clusters must be a list, not a dict"),
    "a user that is a number": (changed(users=[5]), "users[0] has no name"),
    "a cluster without server": (
        changed(clusters=[{"name": "k", "cluster": {}}]),
        'cluster "k" has no server',
    ),
    "a missing user": (
        changed(contexts=[{"name": "c", "context": {"cluster": "k", "user": "nobody"}}]),
        'names user "nobody", which is not in users',
    ),
    "no current context": (changed(**{"current-context": ""}), "no current-context"),
    "a list as current context": (
        changed(**{"current-context": ["c"]}),
        "current-context must be a name, not a list",
    ),
    "nested 1000 deep": ("a: " + "[" * 1000 + "]" * 1000 + "\n", "nested more than 100 levels"),
    "not UTF-8": (b"apiVersion: \xff\n", "not UTF-8"),
    "bad base64": (with_ca_data("!not base64!"), "not base64"),
    "a PEM that is none": (with_ca_data("bm90IGEgUEVN"), "cannot use its TLS certificates"),
    "a broken exec plugin": (
        changed(users=[{"name": "u", "user": {"exec": EXEC_MISSING}}]),
        "/nonexistent/plugin",
    ),
}


@pytest.mark.parametrize("case", BAD_KUBECONFIGS)
async def test_a_malformed_kubeconfig_is_one_line_naming_the_file(
    tmp_path: Path, case: str
) -> None:
    """Before: a traceback of some 60 lines for most of these."""
    content, said = BAD_KUBECONFIGS[case]
    path = tmp_path / "kubeconfig"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eventtrace", "run", "--kubeconfig", str(path),
        "--metrics-addr", f"127.0.0.1:{free_port()}",
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, env=_clean_environment(),
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    lines = stderr.decode().splitlines()
    assert process.returncode == 1
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"eventtrace: cannot use the Kubernetes credentials: kubeconfig {path}: "
    )
    assert said in lines[0]


# ---- the decode limits, on the bytes -------------------------------------------------------


def test_real_objects_are_far_within_the_depth_limit() -> None:
    lines = [
        line
        for path in sorted((Path(__file__).parents[1] / "eventtrace" / "demo").glob("*.jsonl"))
        for line in path.read_bytes().splitlines()
        if line.strip()
    ]
    assert all(EventFrames().frame(line).invalid is None for line in lines)
