"""Restart, upgrade, crash (DESIGN §2): the real `eventtrace run` processes against the test
API server (Leases and ConfigMaps with optimistic concurrency) and one OTLP receiver that
sees what every replica sent. In each scenario the test counts, per event, the
occurrences that arrived: every one exactly once, and an episode that spans the restart
keeps its trace id."""

from __future__ import annotations

import asyncio
import base64
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from test_live import assert_exactly_once, kubelet, pod, settle, uid

from eventtrace.state import Progress, uid_hash
from support.apiserver import ApiServer
from support.live import Live
from support.otlp_receiver import ReceivedSpan

# Short timings, so hand-overs and idle closes happen within a test. Replicas on one host
# need identities of their own (in pods, each pod's name is).
IDLE = "8s"
HA_ENV = {
    "EVENTTRACE_LEADER_ELECTION": "lease:default/eventtrace",
    "EVENTTRACE_STATE": "configmap:default/eventtrace-state",
    "EVENTTRACE_LEASE_DURATION": "4s",
    "EVENTTRACE_RENEW_DEADLINE": "3s",
    "EVENTTRACE_RETRY_PERIOD": "1s",
    "EVENTTRACE_STATE_INTERVAL": "1s",
}


def event_spans(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [span for span in spans if "k8s.event.uid" in span.attributes]


def object_spans(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [span for span in spans if "k8s.event.uid" not in span.attributes]


def event_lists(api: ApiServer) -> int:
    """Lists of events, not counting the start-up check (limit=1)."""
    lists = api.requests.matching(resource="events", verb="list")
    return sum(1 for request in lists if request.query.get("limit") != "1")


async def wait_for(predicate: Any, within: float, what: str) -> float:
    """Poll an async predicate; returns how long it took."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await predicate():
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {within}s: {what}")


async def leading(live: Live) -> bool:
    try:
        return await live.metric("eventtrace_leader") == 1
    except Exception:
        return False


async def test_restart_exports_what_came_while_down_once_and_keeps_the_trace(
    apiserver: ApiServer, start_run, tmp_path: Path
) -> None:
    api = apiserver
    env = {"EVENTTRACE_STATE": f"file:{tmp_path / 'state'}"}
    web = api.create(pod("web"))
    first = await start_run("--trace-idle", IDLE, env=env)
    pulling = kubelet(api, web, "Pulling", "Pulling image")
    pulled = kubelet(api, web, "Pulled", "Pulled image")
    await settle(first, 2)
    code, _ = await first.stop()
    assert code == 0
    assert object_spans(first.receiver.spans) == []  # the episode is carried on, not closed
    # While it is down: a new event and a count bump.
    started = kubelet(api, web, "Started", "Started container")
    api.repeat_event(pulling)
    lists_before = event_lists(api)
    second = await start_run("--trace-idle", IDLE, env=env)
    spans = await settle(second, 5, within=30)  # 4 occurrences, then pod/web at the close
    assert (await second.stop())[0] == 0
    assert_exactly_once(spans, {uid(pulling): 2, uid(pulled): 1, uid(started): 1})
    assert len({span.trace_id for span in spans}) == 1, "one episode across the restart"
    assert [span.name for span in object_spans(spans)] == ["pod/web"]
    assert "state from file" in second.log()
    assert event_lists(api) == lists_before, "it watched on from where it stopped"


async def test_restart_after_compaction_relists_and_exports_nothing_twice(
    apiserver: ApiServer, start_run, tmp_path: Path
) -> None:
    api = apiserver
    env = {"EVENTTRACE_STATE": f"file:{tmp_path / 'state'}"}
    web = api.create(pod("web"))
    first = await start_run("--trace-idle", IDLE, env=env)
    pulling = kubelet(api, web, "Pulling", "Pulling image")
    await settle(first, 1)
    assert (await first.stop())[0] == 0
    pulled = kubelet(api, web, "Pulled", "Pulled image")
    api.repeat_event(pulling)
    api.compact()  # the saved resourceVersion is gone: the watch gets 410
    lists_before = event_lists(api)
    second = await start_run("--trace-idle", IDLE, env=env)
    spans = await settle(second, 4, within=30)  # Pulling, Pulled, Pulling again, pod/web
    assert (await second.stop())[0] == 0
    assert event_lists(api) > lists_before, "a 410, then a list"
    assert_exactly_once(spans, {uid(pulling): 2, uid(pulled): 1})
    assert len({span.trace_id for span in spans}) == 1


async def test_a_corrupt_state_is_one_warning_and_a_fresh_start(
    apiserver: ApiServer, start_run, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.write_bytes(b"\x00not a state at all")
    web = apiserver.create(pod("web"))
    pulling = kubelet(apiserver, web, "Pulling", "Pulling image")
    live = await start_run(env={"EVENTTRACE_STATE": f"file:{state}"})
    spans = await settle(live, 1)
    assert (await live.stop())[0] == 0
    assert_exactly_once(event_spans(spans), {uid(pulling): 1})
    warnings = [line for line in live.log().splitlines() if "not used" in line]
    assert len(warnings) == 1 and str(state) in warnings[0], live.log()
    assert state.read_bytes() != b"\x00not a state at all"  # saved anew at the stop


async def test_a_state_of_another_cluster_is_not_used(
    apiserver: ApiServer, start_run, tmp_path: Path
) -> None:
    env = {"EVENTTRACE_STATE": f"file:{tmp_path / 'state'}"}
    web = apiserver.create(pod("web"))
    pulling = kubelet(apiserver, web, "Pulling", "Pulling image")
    first = await start_run(env=env)
    await settle(first, 1)
    assert (await first.stop())[0] == 0
    second = await start_run("--cluster-name", "another", env=env)
    await asyncio.sleep(1.5)
    assert (await second.stop())[0] == 0
    assert "saved for cluster" in second.log()
    assert_exactly_once(event_spans(second.receiver.spans)[1:], {uid(pulling): 1})


async def test_two_replicas_hand_over_on_sigterm_exactly_once(
    apiserver: ApiServer, start_run
) -> None:
    api = apiserver
    web = api.create(pod("web"))
    first = await start_run("--trace-idle", IDLE, env={**HA_ENV, "EVENTTRACE_IDENTITY": "a"})
    await wait_for(lambda: leading(first), 10, "the first replica leads")
    second = await start_run("--trace-idle", IDLE, env={**HA_ENV, "EVENTTRACE_IDENTITY": "b"})
    assert await second.metric("eventtrace_leader") == 0
    assert (await second.get("/readyz"))[0] == 200  # a healthy standby is ready
    pulling = kubelet(api, web, "Pulling", "Pulling image")
    await settle(first, 1)
    first.process.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    assert await asyncio.wait_for(first.process.wait(), 15) == 0
    took = await wait_for(lambda: leading(second), 10, "the standby takes over")
    takeover = time.monotonic() - stopped
    assert took < 4, "within the retry period, not the lease duration"
    pulled = kubelet(api, web, "Pulled", "Pulled image")
    spans = await settle(second, 3, within=30)  # Pulling, Pulled, then pod/web
    assert (await second.stop())[0] == 0
    assert_exactly_once(spans, {uid(pulling): 1, uid(pulled): 1})
    assert len({span.trace_id for span in spans}) == 1, "the episode spans the hand-over"
    assert [s.name for s in object_spans(spans)] == ["pod/web"]
    print(f"hand-over: the standby led {takeover:.1f}s after SIGTERM")


async def test_a_killed_leader_loses_nothing(apiserver: ApiServer, start_run) -> None:
    api = apiserver
    web = api.create(pod("web"))
    first = await start_run("--trace-idle", IDLE, env={**HA_ENV, "EVENTTRACE_IDENTITY": "a"})
    await wait_for(lambda: leading(first), 10, "the first replica leads")
    second = await start_run("--trace-idle", IDLE, env={**HA_ENV, "EVENTTRACE_IDENTITY": "b"})
    pulling = kubelet(api, web, "Pulling", "Pulling image")
    await settle(first, 1)
    await wait_for(lambda: _saved(api, pulling), 10, "a state save after the delivery")
    first.process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    await first.process.wait()
    pulled = kubelet(api, web, "Pulled", "Pulled image")  # while nobody leads
    await wait_for(lambda: leading(second), 15, "the standby takes over")
    takeover = time.monotonic() - killed
    spans = await settle(second, 3, within=30)
    assert (await second.stop())[0] == 0
    counts = Counter(span.span_id for span in spans)
    duplicates = sum(n - 1 for n in counts.values())
    twice = [s.name for s in spans if counts[s.span_id] > 1]
    assert duplicates == 0, f"nothing was delivered after the last save: {twice}"
    assert_exactly_once(spans, {uid(pulling): 1, uid(pulled): 1})
    assert [s.name for s in object_spans(spans)] == ["pod/web"]
    assert takeover < 4 + 3, "after the lease ran out, within a retry or two"
    print(f"crash: the standby led {takeover:.1f}s after SIGKILL")


async def _saved(api: ApiServer, event: dict[str, Any]) -> bool:
    """Does the saved state (the ConfigMap, as the server has it) count the event?"""
    saved = api.get("configmaps", "eventtrace-state", "default")
    if saved is None:
        return False
    data = base64.b64decode(saved["binaryData"]["state"])
    progress = Progress.decode(data, f"test {api.url}")
    return progress.exported.get(uid_hash(uid(event)), 0) >= 1


async def test_a_leader_whose_renewals_are_refused_stops_exporting(
    apiserver: ApiServer, start_run
) -> None:
    api = apiserver
    web = api.create(pod("web"))
    live = await start_run("--trace-idle", IDLE, env=HA_ENV)
    await wait_for(lambda: leading(live), 10, "it leads")
    refused = api.faults.fail(resource="leases", verbs="update", status=500, times=None)
    await wait_for(lambda: _not_leading(live), 10, "it stops leading")
    pulling = kubelet(api, web, "Pulling", "Pulling image")
    await asyncio.sleep(2)
    assert event_spans(live.receiver.spans) == [], "a leader that cannot renew exports nothing"
    api.faults.remove(refused)
    await wait_for(lambda: leading(live), 15, "it leads again")
    spans = await settle(live, 1, within=15)
    assert (await live.stop())[0] == 0
    assert_exactly_once(event_spans(spans), {uid(pulling): 1})


async def _not_leading(live: Live) -> bool:
    return await live.metric("eventtrace_leader") == 0
