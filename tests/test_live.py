"""`eventtrace run` end to end: the real process, the real kubernetes-asyncio client through
a kubeconfig, the test API server speaking the list/watch protocol over HTTPS, and the OTLP
receiver decoding the protobuf the exporter sent. Every scenario checks that each
occurrence arrives exactly once and that the trees are as DESIGN §1 says."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from eventtrace.source.frames import METADATA, METADATA_LIST
from support.apiserver import ApiServer, make_event, object_reference, unreachable_url
from support.live import Live, free_port
from support.otlp_receiver import ReceivedSpan

NS = "default"


# ---- cluster objects -------------------------------------------------------------------


def owned_by(owner: dict[str, Any]) -> list[dict[str, Any]]:
    meta = owner["metadata"]
    return [{"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"],
             "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}]  # fmt: skip


def deployment(name: str, manager: str = "kubectl-client-side-apply") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS, "managedFields": [
                {"manager": manager, "operation": "Update", "apiVersion": "apps/v1",
                 "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
            "spec": {"replicas": 1}}  # fmt: skip


def replicaset(name: str, owner: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": NS, "ownerReferences": owned_by(owner)}}  # fmt: skip


def pod(name: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if owner is not None:
        meta["ownerReferences"] = owned_by(owner)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta}


def a_pod_owned_by_a_widget(api: ApiServer) -> dict[str, Any]:
    """Pod "shop-runner", controlled by a custom resource (Widget "shop", example.com/v1):
    outside the watched kinds, so only a GET found through discovery resolves it."""
    api.register_custom_resource("example.com", "v1", "Widget", "widgets")
    widget = api.create(
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "shop", "namespace": NS},
        }
    )
    return api.create(pod("shop-runner", widget))


def scaled(api: ApiServer, deploy: dict[str, Any], rs_name: str) -> dict[str, Any]:
    return api.create(make_event("ScalingReplicaSet", f"Scaled up replica set {rs_name} from 0 to 1",
                                 object_reference(deploy), component="deployment-controller"))  # fmt: skip


def created(api: ApiServer, rs: dict[str, Any], pod_name: str) -> dict[str, Any]:
    return api.create(make_event("SuccessfulCreate", f"Created pod: {pod_name}", object_reference(rs),
                                 component="replicaset-controller"))  # fmt: skip


def kubelet(
    api: ApiServer, target: dict[str, Any], reason: str, message: str, **kw: Any
) -> dict[str, Any]:
    return api.create(make_event(reason, message, object_reference(target, "spec.containers{app}"),
                                 component="kubelet", host="node-a", **kw))  # fmt: skip


# ---- what arrived ------------------------------------------------------------------------


def by_name(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.name == name]


def one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = by_name(spans, name)
    assert len(found) == 1, f"{len(found)} spans named {name}: {[s.name for s in spans]}"
    return found[0]


def parent_of(spans: list[ReceivedSpan], span: ReceivedSpan) -> ReceivedSpan | None:
    return next((s for s in spans if s.span_id == span.parent_id), None)


def assert_exactly_once(spans: list[ReceivedSpan], expected_occurrences: dict[str, int]) -> None:
    """No span twice; per event uid, the spans' occurrences add up to the event's count."""
    ids = Counter(span.span_id for span in spans)
    assert [i for i, n in ids.items() if n > 1] == []
    covered: dict[str, int] = defaultdict(int)
    for span in spans:
        if "k8s.event.uid" in span.attributes:
            covered[span.attributes["k8s.event.uid"]] += span.attributes["eventtrace.occurrences"]
    assert dict(covered) == expected_occurrences


def uid(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["uid"])


async def settle(live: Live, count: int, within: float = 15.0) -> list[ReceivedSpan]:
    """Wait for `count` spans; on failure show what eventtrace logged."""
    try:
        return await live.receiver.wait_for_spans(count, within=within)
    except AssertionError as error:
        raise AssertionError(
            f"{error}; got {[s.name for s in live.receiver.spans]}\n{live.log()}"
        ) from None


# ---- scenarios -----------------------------------------------------------------------------


async def test_a_rollout_created_live_with_objects_after_their_events(apiserver, start_run) -> None:
    api: ApiServer = apiserver
    live = await start_run()
    deploy = api.create(deployment("web"))
    scale = scaled(api, deploy, "web-5d8b")  # the event comes before the ReplicaSet exists
    await asyncio.sleep(0.1)
    rs = api.create(replicaset("web-5d8b", deploy))
    create = created(api, rs, "web-5d8b-x1")
    the_pod = api.create(pod("web-5d8b-x1", rs))
    sched = api.create(make_event("Scheduled", "Successfully assigned default/web-5d8b-x1 to node-a",
                                  object_reference(the_pod), component="default-scheduler",
                                  new_api=True, action="Binding", host="cp"))  # fmt: skip
    pulling = kubelet(api, the_pod, "Pulling", 'Pulling image "nginx"')
    await settle(live, 4)
    code, took = await live.stop()
    assert code == 0 and took < 10
    spans = live.receiver.spans
    assert len(spans) == 7, [s.name for s in spans]
    assert len({s.trace_id for s in spans}) == 1
    root = one(spans, "deployment/web")
    assert root.parent_id is None
    assert root.resource["service.name"] == "kubectl-client-side-apply"
    assert root.resource["k8s.cluster.name"] == "test"
    rs_span = one(spans, "replicaset/web-5d8b")
    assert parent_of(spans, rs_span) == one(spans, "ScalingReplicaSet")
    assert rs_span.resource["service.name"] == "deployment-controller"
    pod_span = one(spans, "pod/web-5d8b-x1")
    assert parent_of(spans, pod_span) == one(spans, "SuccessfulCreate")
    assert pod_span.attributes["k8s.pod.uid"] == uid(the_pod)
    for name in ("Scheduled", "Pulling"):
        assert parent_of(spans, one(spans, name)) == pod_span
    assert one(spans, "Scheduled").resource["service.name"] == "default-scheduler"
    pulling_span = one(spans, "Pulling")
    assert pulling_span.resource["service.name"] == "kubelet"
    assert pulling_span.attributes["k8s.node.name"] == "node-a"
    assert pulling_span.attributes["k8s.object.fieldpath"] == "spec.containers{app}"
    assert_exactly_once(spans, {uid(e): 1 for e in (scale, create, sched, pulling)})


async def test_workload_objects_are_read_as_metadata_only(apiserver, start_run) -> None:
    """Owner chains need metadata only: pods and their owners are asked for as the API
    server's PartialObjectMetadata, so a pod's spec (a secret in an env var, say) is never
    sent to eventtrace; the chains resolve from the listed and the watched objects alike."""
    api: ApiServer = apiserver
    deploy = api.create(deployment("web"))
    rs = api.create(replicaset("web-5d8b", deploy))
    secret = {"containers": [{"name": "app", "env": [{"name": "PASSWORD", "value": "hunter2"}]}]}
    listed = api.create({**pod("web-5d8b-x1", rs), "spec": secret})
    live = await start_run()
    watched = api.create({**pod("web-5d8b-x2", rs), "spec": secret})
    events = [kubelet(api, p, "Pulling", 'Pulling image "nginx"') for p in (listed, watched)]
    await settle(live, 2)
    assert (await live.stop())[0] == 0
    spans = live.receiver.spans
    for name in ("pod/web-5d8b-x1", "pod/web-5d8b-x2"):
        assert parent_of(spans, one(spans, name)) == one(spans, "replicaset/web-5d8b")
    assert one(spans, "deployment/web").resource["service.name"] == "kubectl-client-side-apply"
    assert_exactly_once(spans, {uid(e): 1 for e in events})
    asked = {(r.resource, r.verb, r.accept) for r in api.requests.matching() if r.resource}
    for resource in ("pods", "replicasets", "deployments", "nodes"):
        assert {(verb, accept) for name, verb, accept in asked if name == resource} == {
            ("list", METADATA_LIST),
            ("watch", METADATA),
        }
    assert {accept for name, _, accept in asked if name == "events"} == {"application/json"}


async def test_count_bumps_arriving_as_modified_become_one_span_each(apiserver, start_run) -> None:
    api: ApiServer = apiserver
    the_pod = api.create(pod("crashy"))
    backoff = kubelet(
        api, the_pod, "BackOff", "Back-off restarting failed container", type="Warning"
    )
    live = await start_run()
    await settle(live, 1)
    for _ in range(3):
        await asyncio.sleep(0.05)
        api.repeat_event(backoff)
    await settle(live, 4)
    assert await live.metric("eventtrace_occurrences_total") == 4
    assert (await live.stop())[0] == 0
    spans = by_name(live.receiver.spans, "BackOff")
    assert sorted(s.attributes["k8s.event.count"] for s in spans) == [1, 2, 3, 4]
    assert all(s.status_code == "ERROR" for s in spans)
    assert spans[0].status_message == "Back-off restarting failed container"
    assert_exactly_once(live.receiver.spans, {uid(backoff): 4})


async def test_a_burst_ends_without_waiting_the_export_interval(apiserver, start_run) -> None:
    """A re-list's events go out in pieces; the last, partial batch is sent at once rather
    than after export_interval (a minute here)."""
    api: ApiServer = apiserver
    the_pod = api.create(pod("busy"))
    listed = [kubelet(api, the_pod, "Pulling", f"image {i}") for i in range(10)]
    env = {"EVENTTRACE_EXPORT_INTERVAL": "60", "EVENTTRACE_EXPORT_BATCH_SIZE": "4"}
    live = await start_run(env=env)
    await settle(live, 10, within=10)
    assert [request.span_count for request in live.receiver.requests] == [4, 4, 2]
    assert (await live.stop())[0] == 0
    assert_exactly_once(live.receiver.spans, {uid(event): 1 for event in listed})


async def test_a_dropped_stream_reconnects_from_the_last_version(apiserver, start_run) -> None:
    api: ApiServer = apiserver
    the_pod = api.create(pod("p1"))
    first = kubelet(api, the_pod, "Pulling", "one")
    live = await start_run()
    await settle(live, 1)
    restarts_before = await live.metric("eventtrace_watch_restarts_total")
    assert api.drop_watches("events") >= 1
    second = kubelet(api, the_pod, "Pulled", "two")
    api.repeat_event(first)
    await settle(live, 3)
    assert await live.metric("eventtrace_watch_restarts_total") > restarts_before
    assert (await live.stop())[0] == 0
    assert_exactly_once(live.receiver.spans, {uid(first): 2, uid(second): 1})
    watches = api.requests.matching(resource="events", verb="watch")
    assert any(r.query.get("resourceVersion") for r in watches[1:])


async def test_410_mid_watch_relists_and_keeps_events_from_the_gap(apiserver, start_run) -> None:
    api: ApiServer = apiserver
    the_pod = api.create(pod("p1"))
    before = kubelet(api, the_pod, "Pulling", "before the gap")
    live = await start_run()
    await settle(live, 1)
    lists_before = len(api.requests.matching(resource="events", verb="list"))
    api.faults.expire_watch("events")
    api.drop_watches("events")  # the reconnect gets ERROR 410 Expired in the stream
    during = kubelet(api, the_pod, "Pulled", "in the gap")
    api.repeat_event(before)
    await settle(live, 3)
    assert len(api.requests.matching(resource="events", verb="list")) > lists_before
    assert (
        await live.metric(
            "eventtrace_watch_restarts_total", resource="events.events.k8s.io", reason="expired"
        )
        >= 1
    )
    assert (await live.stop())[0] == 0
    # The re-list brings `before` (count 2) and `during` again: nothing is exported twice.
    assert_exactly_once(live.receiver.spans, {uid(before): 2, uid(during): 1})


async def test_api_500s_and_429s_are_retried_honouring_retry_after(apiserver, start_run) -> None:
    api: ApiServer = apiserver
    the_pod = api.create(pod("p1"))
    first = kubelet(api, the_pod, "Pulling", "one")
    api.faults.fail(500, resource="events", verbs="list", times=2)
    live = await start_run()
    await settle(live, 1)
    api.faults.throttle(resource="events", verbs="watch", times=1, retry_after=1)
    api.drop_watches("events")
    later = kubelet(api, the_pod, "Pulled", "two")
    await settle(live, 2)
    assert (await live.stop())[0] == 0
    assert_exactly_once(live.receiver.spans, {uid(first): 1, uid(later): 1})
    watches = api.requests.matching(resource="events", verb="watch")
    throttled = next(i for i, r in enumerate(watches) if r.status == 429)
    assert watches[throttled + 1].time - watches[throttled].time >= 0.95
    assert "429" in live.log() and "retrying" in live.log()


async def test_403_on_deployments_warns_once_and_the_chain_ends_at_the_owner_ref(
    apiserver, start_run
) -> None:
    api: ApiServer = apiserver
    api.faults.forbid("deployments")
    deploy = api.create(deployment("web"))
    rs = api.create(replicaset("web-5d8b", deploy))
    live = await start_run()
    event = created(api, rs, "web-5d8b-x1")
    await settle(live, 1)
    assert (await live.stop())[0] == 0
    spans = live.receiver.spans
    root = one(spans, "deployment/web")
    assert root.parent_id is None
    assert root.attributes["eventtrace.object.unresolved"] is True
    assert root.attributes["k8s.deployment.uid"] == uid(deploy)  # known from the ownerReference
    assert parent_of(spans, one(spans, "replicaset/web-5d8b")) == root
    warnings = [line for line in live.stderr if "deployments.apps" in line and "WARNING" in line]
    assert len(warnings) == 1, live.log()
    assert "Grant get/list/watch on deployments in API group apps" in warnings[0]
    assert_exactly_once(spans, {uid(event): 1})


async def test_a_deleted_replicaset_still_resolves_from_its_tombstone(apiserver, start_run) -> None:
    api: ApiServer = apiserver
    deploy = api.create(deployment("web"))
    rs = api.create(replicaset("web-old", deploy))
    live = await start_run()
    api.delete(rs)
    await asyncio.sleep(0.3)
    event = api.create(make_event("SuccessfulDelete", "Deleted pod: web-old-x1", object_reference(rs),
                                  component="replicaset-controller"))  # fmt: skip
    await settle(live, 1)
    assert (await live.stop())[0] == 0
    spans = live.receiver.spans
    rs_span = one(spans, "replicaset/web-old")
    assert "eventtrace.object.unresolved" not in rs_span.attributes
    assert parent_of(spans, rs_span) == one(spans, "deployment/web")
    assert_exactly_once(spans, {uid(event): 1})


async def test_an_owner_reference_cycle_is_cut(apiserver, start_run) -> None:
    api: ApiServer = apiserver
    api.register_custom_resource("example.com", "v1", "Widget", "widgets")
    a = api.create(
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "a", "namespace": NS},
        }
    )
    b = api.create({"apiVersion": "example.com/v1", "kind": "Widget",
                    "metadata": {"name": "b", "namespace": NS, "ownerReferences": owned_by(a)}})  # fmt: skip
    a["metadata"]["ownerReferences"] = owned_by(b)
    a = api.update(a)
    live = await start_run()
    event = api.create(
        make_event("Synced", "widget a synced", object_reference(a), component="widget-controller")
    )
    await settle(live, 1)
    assert (await live.stop())[0] == 0
    spans = live.receiver.spans
    assert sorted(s.name for s in spans) == ["Synced", "widget/a", "widget/b"]
    assert one(spans, "widget/b").parent_id is None
    assert_exactly_once(spans, {uid(event): 1})


async def test_node_events_with_the_name_as_uid_share_one_node_span(apiserver, start_run) -> None:
    api: ApiServer = apiserver
    node = api.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}})
    live = await start_run()
    by_kubelet = {"kind": "Node", "apiVersion": "v1", "name": "node-a", "uid": "node-a"}
    starting = api.create(make_event("Starting", "Starting kubelet.", by_kubelet, component="kubelet",
                                     host="node-a", namespace="default"))  # fmt: skip
    registered = api.create(make_event("RegisteredNode", "Node node-a event: Registered Node node-a in Controller",
                                       object_reference(node), component="node-controller",
                                       namespace="default"))  # fmt: skip
    await settle(live, 2)
    assert (await live.stop())[0] == 0
    spans = live.receiver.spans
    node_span = one(spans, "node/node-a")
    assert node_span.attributes["k8s.node.uid"] == uid(node)
    assert "k8s.namespace.name" not in node_span.attributes
    assert {
        parent_of(spans, s).name
        for s in by_name(spans, "Starting") + by_name(spans, "RegisteredNode")
    } == {"node/node-a"}
    assert_exactly_once(spans, {uid(starting): 1, uid(registered): 1})


async def test_a_listed_hour_goes_out_without_waiting_the_reorder_window(
    apiserver, start_run
) -> None:
    """A complete list is all there is up to its version: its events are released once
    listed, not a reorder window (`--resolve-timeout`, 30 s here) later. Events that
    follow on the watch still wait it out."""
    api: ApiServer = apiserver
    the_pod = api.create(pod("web-1"))
    listed = [kubelet(api, the_pod, "Pulling", f"image {i}") for i in range(5)]
    live = await start_run("--resolve-timeout", "30s")
    await settle(live, 5, within=10)
    watched = kubelet(api, the_pod, "Started", "Started container app")
    await asyncio.sleep(1.5)
    assert [span.name for span in live.receiver.spans] == ["Pulling"] * 5
    assert (await live.stop())[0] == 0  # the watched one is flushed on the way out
    expected = {uid(event): 1 for event in [*listed, watched]}
    assert_exactly_once(live.receiver.spans, expected)


async def test_a_listed_event_waits_for_the_owner_it_asked_for(apiserver, start_run) -> None:
    """Released early, a listed event still waits for the GET of an owner its chain
    lacks (a custom resource, outside the watched kinds), not for the whole window."""
    api: ApiServer = apiserver
    the_pod = a_pod_owned_by_a_widget(api)
    event = kubelet(api, the_pod, "Started", "Started container app")
    live = await start_run("--resolve-timeout", "30s")
    await settle(live, 1, within=10)
    assert (await live.stop())[0] == 0
    root = one(live.receiver.spans, "widget/shop")
    assert root.parent_id is None
    assert "eventtrace.object.unresolved" not in root.attributes  # fetched, not guessed
    assert_exactly_once(live.receiver.spans, {uid(event): 1})


async def test_a_custom_resource_owner_is_found_through_discovery(apiserver, start_run) -> None:
    api: ApiServer = apiserver
    the_pod = a_pod_owned_by_a_widget(api)
    live = await start_run()
    event = kubelet(api, the_pod, "Started", "Started container app")
    await settle(live, 1)
    assert (await live.stop())[0] == 0
    spans = live.receiver.spans
    root = one(spans, "widget/shop")
    assert root.parent_id is None and root.attributes["k8s.object.api_version"] == "example.com/v1"
    assert parent_of(spans, one(spans, "pod/shop-runner")) == root
    assert [r.path for r in api.requests.matching(resource="widgets", verb="get")] == [
        "/apis/example.com/v1/namespaces/default/widgets/shop"
    ]
    assert_exactly_once(spans, {uid(event): 1})


# ---- operating it ----------------------------------------------------------------------------


async def test_metrics_health_and_readiness(apiserver, start_run) -> None:
    api: ApiServer = apiserver
    the_pod = api.create(pod("p1"))
    kubelet(api, the_pod, "Pulling", "one", type="Warning")
    live = await start_run()
    await settle(live, 1)
    assert await live.get("/healthz") == (200, "ok\n")
    assert (await live.get("/readyz"))[0] == 200
    assert await live.metric("eventtrace_events_received_total", type="Warning") == 1
    assert await live.metric("eventtrace_occurrences_total") == 1
    assert await live.metric("eventtrace_spans_exported_total", kind="event") == 1
    assert await live.metric("eventtrace_open_episodes") == 1
    _, text = await live.get("/metrics")
    assert "eventtrace_export_lag_seconds_bucket" in text
    # API trouble after the first list: not ready meanwhile, and the process stays up.
    api.faults.fail(503, resource="events", times=None)
    api.drop_watches("events")
    for _ in range(100):
        if (await live.get("/readyz"))[0] == 503:
            break
        await asyncio.sleep(0.05)
    assert (await live.get("/readyz"))[0] == 503
    api.faults.clear()
    await live.wait_ready()
    assert live.process.returncode is None
    assert (await live.stop())[0] == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_stop_signal_closes_open_traces_and_exits_0_within_10s(
    apiserver, start_run, signum
) -> None:
    api: ApiServer = apiserver
    the_pod = api.create(pod("p1"))
    live = await start_run("--trace-idle", "10m")
    kubelet(api, the_pod, "Pulling", "one")
    await settle(live, 1)
    assert [s.name for s in live.receiver.spans] == ["Pulling"]  # the object span waits
    code, took = await live.stop(signum=signum)
    assert code == 0 and took < 10
    assert sorted(s.name for s in live.receiver.spans) == ["Pulling", "pod/p1"]
    assert "closed every open trace" in live.log()


async def test_filters_leave_events_out_and_count_them(apiserver, start_run) -> None:
    api: ApiServer = apiserver
    the_pod = api.create(pod("p1"))
    live = await start_run(
        "--exclude-reasons", "Pulled", env={"EVENTTRACE_INCLUDE_TYPES": "Warning,Normal"}
    )
    kubelet(api, the_pod, "Pulled", "filtered")
    kept = kubelet(api, the_pod, "Started", "kept")
    await settle(live, 1)
    assert await live.metric("eventtrace_events_filtered_total", filter="exclude_reason") == 1
    assert (await live.stop())[0] == 0
    assert_exactly_once(live.receiver.spans, {uid(kept): 1})


async def test_a_namespace_filter_watches_only_that_namespace(apiserver, start_run) -> None:
    api: ApiServer = apiserver
    live = await start_run("--namespace", "team-a")
    api.create(make_event("Pulled", "other", {"kind": "Pod", "name": "x", "namespace": "team-b", "uid": "u1"},
                          component="kubelet"))  # fmt: skip
    mine = api.create(make_event("Pulled", "mine", {"kind": "Pod", "name": "y", "namespace": "team-a", "uid": "u2"},
                                 component="kubelet"))  # fmt: skip
    await settle(live, 1)
    assert (await live.stop())[0] == 0
    assert_exactly_once(live.receiver.spans, {uid(mine): 1})
    paths = {r.path for r in api.requests.matching(resource="events")}
    assert paths == {"/apis/events.k8s.io/v1/namespaces/team-a/events"}


async def test_with_two_namespaces_a_list_is_not_released_while_the_other_is_half_in(
    apiserver, start_run
) -> None:
    """Two namespaces, two lists whose items interleave in one queue: the first to end
    does not release what has come so far, since the other's first part would go with
    it before its rest is in. Both go once the second list is complete."""
    api: ApiServer = apiserver
    team_a = make_event("Pulled", "a", {"kind": "Pod", "name": "x", "namespace": "team-a", "uid": "u1"},
                        component="kubelet")  # fmt: skip
    team_b = make_event("Pulled", "b", {"kind": "Pod", "name": "y", "namespace": "team-b", "uid": "u2"},
                        component="kubelet")  # fmt: skip
    listed = [api.create(team_a), api.create(team_b)]
    api.faults.delay(3.0, verbs="list", path="/apis/events.k8s.io/v1/namespaces/team-b/events")
    live = await start_run(
        "--namespace", "team-a", "--namespace", "team-b", "--resolve-timeout", "30s", ready=False
    )  # fmt: skip
    await api.requests.wait_for(
        lambda r: r.verb == "list" and r.namespace == "team-b" and r.resource == "events",
        within=15,
    )
    await asyncio.sleep(2.0)  # team-a's list is in; team-b's answer is 1 s away
    assert live.receiver.spans == []
    await settle(live, 2, within=10)  # not the 30 s window: once team-b's list is in
    assert (await live.stop())[0] == 0
    assert_exactly_once(live.receiver.spans, {uid(event): 1 for event in listed})


# ---- startup errors: one line, exit 1 --------------------------------------------------------


async def run_to_exit(*args: str, within: float = 30) -> tuple[int, str]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("EVENTTRACE_", "KUBECONFIG"))
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eventtrace", "run", "--metrics-addr", f"127.0.0.1:{free_port()}", *args,
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, env=environment,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), within)
    return int(process.returncode or 0), stderr.decode()


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


async def test_the_startup_timeout_is_a_deadline_even_for_a_server_that_hangs(
    apiserver: ApiServer,
) -> None:
    """The API server takes the connection and never answers: exit 1 at the deadline, not
    after the request's own 30 s timeout."""
    apiserver.faults.delay(60, resource="events")
    started = time.monotonic()
    code, stderr = await run_to_exit(
        "--kubeconfig", str(apiserver.kubeconfig), "--startup-timeout", "2s"
    )
    took = time.monotonic() - started
    assert code == 1
    assert 2 <= took < 8, took  # the deadline, plus the interpreter's start
    assert "cannot reach the Kubernetes API server" in last_line(stderr)
    assert "Traceback" not in stderr


async def test_unreachable_api_server_exits_1_after_the_startup_timeout(
    apiserver, tmp_path: Path
) -> None:
    config = apiserver.write_kubeconfig(tmp_path / "unreachable", server=unreachable_url())
    started = time.monotonic()
    code, stderr = await run_to_exit("--kubeconfig", str(config), "--startup-timeout", "1")
    assert code == 1
    assert 1 <= time.monotonic() - started < 20
    assert last_line(stderr).startswith(
        "eventtrace: cannot reach the Kubernetes API server at https://127.0.0.1:"
    )
    assert "check that the cluster is running" in last_line(stderr)
    assert "Traceback" not in stderr


async def test_rejected_credentials_exit_1_saying_what_to_do(apiserver, tmp_path: Path) -> None:
    config = apiserver.write_kubeconfig(tmp_path / "expired", token="expired-token")
    code, stderr = await run_to_exit("--kubeconfig", str(config), "--startup-timeout", "1")
    assert code == 1
    assert "rejected the credentials" in last_line(stderr) and "401" in last_line(stderr)
    assert "Traceback" not in stderr


async def test_forbidden_events_exit_1_naming_the_rbac_rule(apiserver) -> None:
    apiserver.faults.forbid("events")
    code, stderr = await run_to_exit(
        "--kubeconfig", str(apiserver.kubeconfig), "--startup-timeout", "1"
    )
    assert code == 1
    assert last_line(stderr).startswith("eventtrace: not allowed to list events")
    assert 'grant get/list/watch on events in API groups "" and events.k8s.io' in last_line(stderr)


async def test_a_missing_kubeconfig_exits_1(tmp_path: Path) -> None:
    code, stderr = await run_to_exit("--kubeconfig", str(tmp_path / "nope"))
    assert code == 1
    assert (
        stderr.strip()
        == f"eventtrace: kubeconfig {tmp_path / 'nope'} not found: pass --kubeconfig FILE or set KUBECONFIG (or run in a pod with a service account)"
    )


async def test_a_bad_kubeconfig_context_exits_1(apiserver) -> None:
    code, stderr = await run_to_exit("--kubeconfig", str(apiserver.kubeconfig), "--context", "nope")
    assert code == 1
    assert last_line(stderr).startswith("eventtrace: cannot use the Kubernetes credentials:")
    assert "nope" in last_line(stderr)


async def test_without_events_k8s_io_the_core_api_is_watched(apiserver, start_run) -> None:
    """Discovery decides: a server without events.k8s.io/v1 is watched through core/v1."""
    api: ApiServer = apiserver
    api.faults.fail(404, path="/apis/events.k8s.io", times=None)
    the_pod = api.create(pod("p1"))
    live = await start_run()
    event = kubelet(api, the_pod, "Pulled", "through core/v1")
    await settle(live, 1)
    assert (await live.stop())[0] == 0
    assert_exactly_once(live.receiver.spans, {uid(event): 1})
    paths = {r.path for r in api.requests.matching(resource="events") if r.status == 200}
    assert paths == {"/api/v1/events"}
    assert "events (v1) in all namespaces" in live.log()


async def test_a_stream_silent_past_the_inactivity_limit_is_restarted(apiserver, start_run) -> None:
    api: ApiServer = apiserver
    the_pod = api.create(pod("p1"))
    live = await start_run(env={"EVENTTRACE_INACTIVITY_TIMEOUT": "1"})
    watches_before = len(api.requests.matching(resource="events", verb="watch"))
    await asyncio.sleep(2.5)  # no event: the quiet stream is given up and reopened
    assert (
        await live.metric(
            "eventtrace_watch_restarts_total", resource="events.events.k8s.io", reason="drop"
        )
        >= 1
    )
    assert len(api.requests.matching(resource="events", verb="watch")) > watches_before
    event = kubelet(api, the_pod, "Pulled", "after the restart")
    await settle(live, 1)
    assert (await live.stop())[0] == 0
    assert_exactly_once(live.receiver.spans, {uid(event): 1})


# ---- a hostile world never stops the collector ------------------------------------------------


def _deep_event(api: ApiServer, target: dict[str, Any], message: str) -> dict[str, Any]:
    event = make_event("Pulling", message, object_reference(target), component="kubelet")
    event["metadata"]["annotations"] = {"a": "@@DEEP@@"}  # nested 1,000 deep on the wire
    return api.create(event)


async def test_what_cannot_be_decoded_is_skipped_and_the_collector_goes_on(
    apiserver, start_run
) -> None:
    """Events nested 1,000 deep and not UTF-8, in the first list and on the watch, and a
    pod nested 1,000 deep for the object cache: each skipped, counted and logged once;
    the rest exported exactly once, the process up."""
    api: ApiServer = apiserver
    api.faults.rewrite(b'"@@DEEP@@"', b"[" * 1000 + b"]" * 1000)
    api.faults.rewrite(b'"@@BAD@@"', b'"\xff\xfe"')
    the_pod = api.create(pod("p1"))
    deep_pod = pod("deep")
    deep_pod["metadata"]["annotations"] = {"a": "@@DEEP@@"}
    api.create(deep_pod)
    _deep_event(api, the_pod, "deep, listed")
    kubelet(api, the_pod, "Pulling", "@@BAD@@")
    listed = kubelet(api, the_pod, "Pulling", "listed")
    live = await start_run()
    _deep_event(api, the_pod, "deep, watched")
    kubelet(api, the_pod, "Pulled", "@@BAD@@")
    watched = kubelet(api, the_pod, "Started", "watched")
    await settle(live, 2)
    assert await live.get("/healthz") == (200, "ok\n")
    assert await live.metric("eventtrace_invalid_events_total", reason="too_deep") == 3
    assert await live.metric("eventtrace_invalid_events_total", reason="bad_utf8") == 2
    assert (await live.stop())[0] == 0
    assert_exactly_once(live.receiver.spans, {uid(listed): 1, uid(watched): 1})
    skipped = [line for line in live.stderr if "WARNING" in line and "skipped" in line]
    assert len(skipped) == 5, live.log()
    assert "Traceback" not in live.log()


async def test_a_watch_ended_the_moment_it_opens_backs_off(apiserver, start_run) -> None:
    api: ApiServer = apiserver
    the_pod = api.create(pod("p1"))
    live = await start_run()
    api.faults.end_watch("events", times=None)
    api.close_watches("events")
    before = len(api.requests.matching(resource="events", verb="watch"))
    await asyncio.sleep(3.0)
    opened = len(api.requests.matching(resource="events", verb="watch")) - before
    assert 2 <= opened <= 8, opened  # not hundreds a second
    assert "ended the watch after" in live.log()
    api.faults.clear()
    event = kubelet(api, the_pod, "Pulled", "after the back-off")
    await settle(live, 1, within=20)
    assert (await live.stop())[0] == 0
    assert_exactly_once(live.receiver.spans, {uid(event): 1})


async def test_a_rotated_token_is_read_again_from_the_kubeconfig(apiserver, start_run) -> None:
    api: ApiServer = apiserver
    the_pod = api.create(pod("p1"))
    live = await start_run()
    assert api.kubeconfig is not None
    api.write_kubeconfig(api.kubeconfig, token=api.rotate_token())
    api.drop_watches()  # every watch reconnects: a 401, then the new token
    event = kubelet(api, the_pod, "Pulled", "with the new token")
    await settle(live, 1, within=20)
    assert (await live.stop())[0] == 0
    assert_exactly_once(live.receiver.spans, {uid(event): 1})
    assert api.requests.matching(status=401)
    assert "read the credentials again" in live.log()


async def test_credentials_refused_for_too_long_fail_healthz(apiserver, start_run) -> None:
    """The token is revoked and no new one comes: after unauthorized_timeout, /healthz
    fails too, so Kubernetes restarts the pod (and it logs in afresh)."""
    api: ApiServer = apiserver
    live = await start_run(env={"EVENTTRACE_UNAUTHORIZED_TIMEOUT": "1s"})
    assert (await live.get("/healthz"))[0] == 200
    api.rotate_token()  # the kubeconfig keeps the old one
    api.drop_watches()
    deadline = time.monotonic() + 15
    while (await live.get("/healthz"))[0] == 200:
        assert time.monotonic() < deadline, live.log()
        await asyncio.sleep(0.2)
    status, text = await live.get("/healthz")
    assert status == 503 and "refused the credentials" in text
    assert (await live.get("/readyz"))[0] == 503
    assert (await live.stop())[0] == 0
