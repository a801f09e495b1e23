"""The test API server against the real clients: kubernetes-asyncio and kubectl.

If these pass, end-to-end tests of `eventtrace run` exercise the real protocol: discovery,
chunked lists, NDJSON watches, bookmarks, 410s, Status bodies, TLS and bearer auth.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from eventtrace.source.frames import METADATA, METADATA_LIST
from support.apiserver import ApiServer, make_event, object_reference, unreachable_url

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
SUPPORT_DIR = Path(__file__).parent / "support"

# ---- helpers -------------------------------------------------------------------------


@asynccontextmanager
async def api_client(kubeconfig: Path) -> AsyncIterator[client.ApiClient]:
    """A kubernetes-asyncio client configured from the kubeconfig, like eventtrace does."""
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    async with client.ApiClient(configuration=configuration) as api:
        yield api


@asynccontextmanager
async def raw_session(
    server: ApiServer, token: str | None = None
) -> AsyncIterator[aiohttp.ClientSession]:
    """Plain HTTPS to the server, to look at bytes and headers the clients hide."""
    headers = {"Authorization": f"Bearer {token or server.token}"} if token != "" else {}
    connector = aiohttp.TCPConnector(ssl=server.ssl_context())
    async with aiohttp.ClientSession(server.url, headers=headers, connector=connector) as session:
        yield session


async def read_frames(response: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    """Every watch frame until the body ends (raises if it ends uncleanly)."""
    return [orjson.loads(line) async for line in response.content if line.strip()]


async def next_frames(response: aiohttp.ClientResponse, count: int) -> list[dict[str, Any]]:
    frames = []
    async with asyncio.timeout(5):
        while len(frames) < count:
            line = await response.content.readline()
            assert line, f"stream ended after {len(frames)} frames"
            frames.append(orjson.loads(line))
    return frames


def pod(name: str, namespace: str = "default", **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, **metadata},
    }


def deployment(name: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
    }


def pod_event(server: ApiServer, pod_name: str, reason: str, **kwargs: Any) -> dict[str, Any]:
    """Create a pod (if needed) and an event about it; returns the stored event."""
    target = server.get("pods", pod_name, "default") or server.create(pod(pod_name))
    return server.create(
        make_event(reason, f"{reason} {pod_name}", object_reference(target), **kwargs)
    )


async def kubectl(server: ApiServer, *args: str, cache: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        KUBECTL or "kubectl",
        f"--kubeconfig={server.kubeconfig}",
        f"--cache-dir={cache}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode or 0, stdout.decode(), stderr.decode()


async def collect(stream: Any, count: int, within: float = 5.0) -> list[dict[str, Any]]:
    """The first `count` events of a kubernetes-asyncio watch stream."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        async for event in stream:
            events.append(event)
            if len(events) == count:
                break
    return events


# ---- TLS, auth, discovery ------------------------------------------------------------


async def test_kubernetes_asyncio_lists_events_through_the_kubeconfig(apiserver: ApiServer) -> None:
    created = pod_event(apiserver, "web-0", "Scheduled")
    async with api_client(apiserver.kubeconfig) as api:
        events = await client.CoreV1Api(api).list_event_for_all_namespaces()
    assert [e.metadata.name for e in events.items] == [created["metadata"]["name"]]
    assert events.items[0].reason == "Scheduled"
    assert events.metadata.resource_version == apiserver.resource_version


async def test_health_and_version_are_public_but_everything_else_needs_the_token(
    apiserver: ApiServer,
) -> None:
    async with raw_session(apiserver, token="") as anonymous:
        for path in ("/version", "/healthz", "/livez", "/readyz"):
            async with anonymous.get(path) as response:
                assert response.status == 200, path
        async with anonymous.get("/api/v1/events") as response:
            assert response.status == 401
            assert await response.json() == {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "Unauthorized",
                "reason": "Unauthorized",
                "code": 401,
            }
    async with raw_session(apiserver, token="wrong") as wrong, wrong.get("/version") as response:
        assert response.status == 401


async def test_kubeconfig_variants_for_error_paths(apiserver: ApiServer, tmp_path: Path) -> None:
    bad_token = apiserver.write_kubeconfig(tmp_path / "bad-token", token="nope")
    async with api_client(bad_token) as api:
        with pytest.raises(ApiException) as failure:
            await client.CoreV1Api(api).list_namespaced_pod("default")
    assert failure.value.status == 401

    nowhere = apiserver.write_kubeconfig(tmp_path / "nowhere", server=unreachable_url())
    async with api_client(nowhere) as api:
        with pytest.raises(aiohttp.ClientConnectorError):
            await client.CoreV1Api(api).list_namespaced_pod("default")


async def test_discovery_describes_builtin_and_custom_resources(apiserver: ApiServer) -> None:
    apiserver.register_custom_resource("example.com", "v1", "Widget", "widgets", short_names=["wg"])
    async with raw_session(apiserver) as session:
        async with session.get("/api") as response:
            assert (await response.json())["versions"] == ["v1"]
        async with session.get("/apis") as response:
            groups = {g["name"]: g for g in (await response.json())["groups"]}
        async with session.get("/apis/apps/v1") as response:
            apps = await response.json()
        async with session.get("/apis/example.com/v1") as response:
            custom = await response.json()
        async with session.get("/api/v1") as response:
            core = {r["name"]: r for r in (await response.json())["resources"]}
    assert {"apps", "batch", "events.k8s.io", "example.com"} <= groups.keys()
    assert groups["apps"]["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
    replicasets = next(r for r in apps["resources"] if r["name"] == "replicasets")
    assert replicasets["kind"] == "ReplicaSet" and replicasets["singularName"] == "replicaset"
    assert replicasets["namespaced"] is True and {"list", "watch", "get"} <= set(
        replicasets["verbs"]
    )
    assert custom["resources"][0]["kind"] == "Widget"
    assert core["nodes"]["namespaced"] is False and core["events"]["kind"] == "Event"


# ---- kubectl -------------------------------------------------------------------------


@needs_kubectl
async def test_kubectl_gets_events_pods_deployments_and_custom_resources(
    apiserver: ApiServer, tmp_path: Path
) -> None:
    pod_event(apiserver, "web-0", "Scheduled")
    pod_event(apiserver, "web-0", "BackOff", type="Warning", component="kubelet", host="node-1")
    apiserver.create(pod("api-1", namespace="x"))
    apiserver.create(deployment("frontend"))
    widgets = apiserver.register_custom_resource("example.com", "v1", "Widget", "widgets")
    apiserver.create(
        {"apiVersion": widgets.api_version, "kind": "Widget", "metadata": {"name": "w1"}}
    )

    code, out, err = await kubectl(apiserver, "get", "events", "-A", cache=tmp_path)
    assert code == 0, err
    assert "Scheduled" in out and "BackOff" in out and "pod/web-0" in out
    assert out.splitlines()[0].split()[:3] == ["NAMESPACE", "LAST", "SEEN"]

    code, out, err = await kubectl(apiserver, "get", "events", "-A", "-o", "json", cache=tmp_path)
    listed = orjson.loads(out)
    assert code == 0, err
    assert sorted(e["reason"] for e in listed["items"]) == ["BackOff", "Scheduled"]

    code, out, err = await kubectl(apiserver, "get", "pods", "-n", "x", cache=tmp_path)
    assert code == 0 and "api-1" in out and "web-0" not in out, err
    code, out, err = await kubectl(apiserver, "get", "deploy", cache=tmp_path)
    assert code == 0 and "frontend" in out, err
    code, out, err = await kubectl(apiserver, "get", "widgets", cache=tmp_path)
    assert code == 0 and "w1" in out, err

    code, out, err = await kubectl(apiserver, "api-resources", cache=tmp_path)
    kinds = {line.split()[-1] for line in out.splitlines()[1:]}
    assert code == 0, err
    assert {"Event", "Pod", "Node", "Namespace", "ReplicaSet", "Deployment", "StatefulSet"} <= kinds
    assert {"DaemonSet", "Job", "CronJob", "Widget"} <= kinds


@needs_kubectl
async def test_kubectl_reports_not_found(apiserver: ApiServer, tmp_path: Path) -> None:
    code, _, err = await kubectl(apiserver, "get", "pod", "missing", cache=tmp_path)
    assert code != 0 and 'Error from server (NotFound): pods "missing" not found' in err
    code, _, err = await kubectl(apiserver, "get", "deploy", "missing", cache=tmp_path)
    assert code != 0 and 'deployments.apps "missing" not found' in err


@needs_kubectl
async def test_kubectl_watch_sees_an_event_created_after_it_started(
    apiserver: ApiServer, tmp_path: Path
) -> None:
    pod_event(apiserver, "web-0", "Scheduled")
    process = await asyncio.create_subprocess_exec(
        KUBECTL or "kubectl",
        f"--kubeconfig={apiserver.kubeconfig}",
        f"--cache-dir={tmp_path}",
        "get", "events", "-A", "-w", "--request-timeout=30s",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        async with asyncio.timeout(20):
            while b"Scheduled" not in await process.stdout.readline():
                pass
            await apiserver.wait_for_watches("events")
            pod_event(apiserver, "web-0", "Pulling", component="kubelet")
            line = await process.stdout.readline()
        assert b"Pulling" in line and b"pod/web-0" in line
    finally:
        process.kill()
        await process.wait()


# ---- list ----------------------------------------------------------------------------


async def test_chunked_list_keeps_its_resource_version_and_snapshot(apiserver: ApiServer) -> None:
    names = [pod_event(apiserver, f"web-{i}", "Scheduled")["metadata"]["name"] for i in range(5)]
    async with api_client(apiserver.kubeconfig) as api:
        core = client.CoreV1Api(api)
        first = await core.list_namespaced_event("default", limit=2)
        # Changes after the first page: later pages still show the list's snapshot.
        pod_event(apiserver, "web-0", "Late")
        apiserver.delete("events", names[3], "default")
        second = await core.list_namespaced_event(
            "default", limit=2, _continue=first.metadata._continue
        )
        third = await core.list_namespaced_event(
            "default", limit=2, _continue=second.metadata._continue
        )
        fresh = await core.list_namespaced_event("default")
    pages = [first, second, third]
    assert {page.metadata.resource_version for page in pages} == {first.metadata.resource_version}
    assert [len(page.items) for page in pages] == [2, 2, 1]
    assert not third.metadata._continue
    assert [event.metadata.name for page in pages for event in page.items] == names
    assert int(fresh.metadata.resource_version) > int(first.metadata.resource_version)
    assert len(fresh.items) == 5 and names[3] not in {e.metadata.name for e in fresh.items}


async def test_history_limit_compacts_old_resource_versions(tmp_path: Path) -> None:
    async with ApiServer(kubeconfig=tmp_path / "kubeconfig", history_limit=10) as server:
        oldest = server.resource_version
        for index in range(20):
            pod_event(server, f"web-{index}", "Scheduled")
        recent = str(int(server.resource_version) - 2)
        async with raw_session(server) as session:
            path = "/api/v1/events?watch=1&timeoutSeconds=1&resourceVersion="
            async with session.get(path + oldest) as response:
                too_old = await read_frames(response)
            async with session.get(path + recent) as response:
                replayed = await read_frames(response)
    assert [f["type"] for f in too_old] == ["ERROR"]
    assert too_old[0]["object"]["code"] == 410
    # The last two changes: the 20th pod and its event (pods and events share the RV).
    assert [f["type"] for f in replayed] == ["ADDED"]


async def test_list_items_have_no_type_meta_but_the_list_has_its_kind(apiserver: ApiServer) -> None:
    pod_event(apiserver, "web-0", "Scheduled")
    async with raw_session(apiserver) as session, session.get("/api/v1/events") as response:
        body = await response.json()
    assert (body["kind"], body["apiVersion"]) == ("EventList", "v1")
    assert "kind" not in body["items"][0] and "apiVersion" not in body["items"][0]
    assert "continue" not in body["metadata"]


async def test_expired_continue_token_answers_410(apiserver: ApiServer) -> None:
    for index in range(3):
        pod_event(apiserver, f"web-{index}", "Scheduled")
    async with api_client(apiserver.kubeconfig) as api:
        core = client.CoreV1Api(api)
        first = await core.list_event_for_all_namespaces(limit=1)
        pod_event(apiserver, "web-9", "Late")
        apiserver.compact()
        with pytest.raises(ApiException) as failure:
            await core.list_event_for_all_namespaces(limit=1, _continue=first.metadata._continue)
    status = orjson.loads(failure.value.body)
    assert (failure.value.status, status["reason"], status["code"]) == (410, "Expired", 410)
    assert status["message"].startswith("The provided continue parameter is too old")


async def test_event_field_selectors(apiserver: ApiServer) -> None:
    pod_event(apiserver, "web-0", "Scheduled", component="default-scheduler")
    pod_event(apiserver, "web-1", "BackOff", type="Warning", component="kubelet")
    async with api_client(apiserver.kubeconfig) as api:
        core, events_v1 = client.CoreV1Api(api), client.EventsV1Api(api)

        async def reasons(selector: str) -> list[str]:
            found = await core.list_event_for_all_namespaces(field_selector=selector)
            return [event.reason for event in found.items]

        assert await reasons("involvedObject.name=web-1") == ["BackOff"]
        assert await reasons("involvedObject.kind=Pod,type=Warning") == ["BackOff"]
        assert await reasons("source=default-scheduler") == ["Scheduled"]
        assert await reasons("reason!=Scheduled") == ["BackOff"]
        assert await reasons("metadata.namespace=other") == []
        # Raw JSON: kubernetes-asyncio's EventsV1Event model rejects the null eventTime that
        # legacy events have when read through events.k8s.io/v1 (as on a real server).
        response = await events_v1.list_event_for_all_namespaces(
            field_selector="regarding.name=web-0", _preload_content=False
        )
        regarding = orjson.loads(await response.read())
        assert [event["reason"] for event in regarding["items"]] == ["Scheduled"]
        with pytest.raises(ApiException) as failure:
            await reasons("spec.nope=1")
    assert failure.value.status == 400
    assert orjson.loads(failure.value.body)["message"] == "field label not supported: spec.nope"


async def test_label_selectors(apiserver: ApiServer) -> None:
    apiserver.create(pod("a", labels={"app": "web", "tier": "front"}))
    apiserver.create(pod("b", labels={"app": "db"}))
    async with api_client(apiserver.kubeconfig) as api:
        core = client.CoreV1Api(api)

        async def names(selector: str) -> list[str]:
            found = await core.list_namespaced_pod("default", label_selector=selector)
            return [item.metadata.name for item in found.items]

        assert await names("app=web") == ["a"]
        assert await names("app in (web,db),!tier") == ["b"]
        assert await names("tier") == ["a"]
        assert await names("app notin (web)") == ["b"]


# ---- Event shapes --------------------------------------------------------------------


async def test_events_are_served_by_both_apis_in_their_own_shapes(apiserver: ApiServer) -> None:
    legacy = pod_event(apiserver, "web-0", "Pulled", component="kubelet", host="node-1", count=3)
    modern = pod_event(apiserver, "web-0", "Scheduled", component="default-scheduler", new_api=True)
    async with raw_session(apiserver) as session:
        path = f"/apis/events.k8s.io/v1/namespaces/default/events/{legacy['metadata']['name']}"
        async with session.get(path) as response:
            converted = await response.json()
        path = f"/api/v1/namespaces/default/events/{modern['metadata']['name']}"
        async with session.get(path) as response:
            core_shape = await response.json()
    assert converted["apiVersion"] == "events.k8s.io/v1"
    assert converted["regarding"] == legacy["involvedObject"]
    assert converted["note"] == legacy["message"]
    assert converted["deprecatedSource"] == {"component": "kubelet", "host": "node-1"}
    assert converted["deprecatedCount"] == 3
    assert converted["deprecatedFirstTimestamp"] == legacy["firstTimestamp"]
    assert converted["eventTime"] is None and converted["reportingController"] == "kubelet"
    assert converted["metadata"] == legacy["metadata"]  # the same stored object
    # New-API shape read through core/v1: null timestamps kept, reporting fields present.
    assert core_shape["firstTimestamp"] is None and core_shape["lastTimestamp"] is None
    assert core_shape["eventTime"].endswith("Z") and "count" not in core_shape
    assert core_shape["reportingComponent"] == "default-scheduler"
    assert core_shape["reportingInstance"] == "default-scheduler"
    assert core_shape["source"] == {}


# ---- watch ---------------------------------------------------------------------------


async def test_watch_without_resource_version_starts_with_synthetic_added(
    apiserver: ApiServer,
) -> None:
    existing = pod_event(apiserver, "web-0", "Scheduled")
    async with api_client(apiserver.kubeconfig) as api, watch.Watch() as stream:
        events = stream.stream(
            client.CoreV1Api(api).list_event_for_all_namespaces, timeout_seconds=5
        )
        first = await collect(events, 1)
        later = pod_event(apiserver, "web-0", "Pulling")
        apiserver.repeat_event(later)
        rest = await collect(events, 2)
    assert [(e["type"], e["object"].reason) for e in first + rest] == [
        ("ADDED", "Scheduled"),
        ("ADDED", "Pulling"),
        ("MODIFIED", "Pulling"),
    ]
    assert first[0]["raw_object"]["metadata"]["uid"] == existing["metadata"]["uid"]
    assert first[0]["raw_object"]["kind"] == "Event"
    assert rest[1]["object"].count == 2


async def test_watch_from_a_resource_version_sends_only_later_changes(apiserver: ApiServer) -> None:
    pod_event(apiserver, "web-0", "Scheduled")
    since = apiserver.resource_version
    pulled = pod_event(apiserver, "web-0", "Pulled")
    deleted = apiserver.delete(pulled)
    async with api_client(apiserver.kubeconfig) as api, watch.Watch() as stream:
        core = client.CoreV1Api(api)
        events = stream.stream(
            core.list_namespaced_event, "default", resource_version=since, timeout_seconds=5
        )
        frames = await collect(events, 2)
    assert [(e["type"], e["object"].reason) for e in frames] == [
        ("ADDED", "Pulled"),
        ("DELETED", "Pulled"),
    ]
    # DELETED carries the last state, stamped with the deletion's resourceVersion.
    assert (
        frames[1]["raw_object"]["metadata"]["resourceVersion"]
        == deleted["metadata"]["resourceVersion"]
    )
    assert int(deleted["metadata"]["resourceVersion"]) > int(pulled["metadata"]["resourceVersion"])


async def test_watch_from_a_compacted_resource_version_gets_an_error_frame(
    apiserver: ApiServer,
) -> None:
    pod_event(apiserver, "web-0", "Scheduled")
    old = apiserver.resource_version
    pod_event(apiserver, "web-0", "Pulled")
    apiserver.compact()
    async with (
        raw_session(apiserver) as session,
        session.get(f"/api/v1/events?watch=1&resourceVersion={old}") as response,
    ):
        assert response.status == 200
        frames = await read_frames(response)  # ends cleanly after the error
    assert frames == [
        {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "The resourceVersion for the provided watch is too old.",
                "reason": "Expired",
                "code": 410,
            },
        }
    ]
    async with api_client(apiserver.kubeconfig) as api, watch.Watch() as stream:
        core = client.CoreV1Api(api)
        events = stream.stream(
            core.list_event_for_all_namespaces, resource_version=old, timeout_seconds=5
        )
        with pytest.raises(ApiException) as failure:
            await collect(events, 1)
    assert failure.value.status == 410


async def test_bookmarks_go_only_to_watches_that_asked(apiserver: ApiServer) -> None:
    rv = apiserver.resource_version
    async with raw_session(apiserver) as session:
        plain = await session.get(f"/api/v1/events?watch=1&resourceVersion={rv}&timeoutSeconds=1")
        asking = await session.get(
            f"/api/v1/events?watch=1&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=1"
        )
        await apiserver.wait_for_watches("events", count=2)
        assert apiserver.bookmark() == 1
        plain_frames, asking_frames = await read_frames(plain), await read_frames(asking)
    assert plain_frames == []  # no periodic bookmarks either, as for real Event watches
    assert [f["type"] for f in asking_frames] == ["BOOKMARK"]
    bookmark = asking_frames[0]["object"]
    assert bookmark["kind"] == "Event" and bookmark["metadata"] == {"resourceVersion": rv}
    assert bookmark["involvedObject"] == {} and bookmark["firstTimestamp"] is None


async def test_timeout_seconds_ends_the_stream_cleanly(apiserver: ApiServer) -> None:
    pod_event(apiserver, "web-0", "Scheduled")
    async with raw_session(apiserver) as session:
        started = time.monotonic()
        async with session.get("/api/v1/events?watch=true&timeoutSeconds=1") as response:
            assert response.headers["Content-Type"] == "application/json"
            assert response.headers["Transfer-Encoding"] == "chunked"
            frames = await read_frames(response)  # a payload error here would fail the test
        elapsed = time.monotonic() - started
    assert [f["type"] for f in frames] == ["ADDED"]
    assert 0.9 < elapsed < 3
    assert apiserver.watches() == []


async def test_watch_list_ends_initial_events_with_an_annotated_bookmark(
    apiserver: ApiServer,
) -> None:
    pod_event(apiserver, "web-0", "Scheduled")
    query = (
        "watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
    )
    async with (
        raw_session(apiserver) as session,
        session.get(f"/api/v1/events?{query}&timeoutSeconds=5") as response,
    ):
        frames = await next_frames(response, 2)
    assert [f["type"] for f in frames] == ["ADDED", "BOOKMARK"]
    assert frames[1]["object"]["metadata"] == {
        "resourceVersion": apiserver.resource_version,
        "annotations": {"k8s.io/initial-events-end": "true"},
    }


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "watch=1&resourceVersionMatch=NotOlderThan",
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless "
            "sendInitialEvents is provided",
        ),
        (
            "watch=1&sendInitialEvents=true",
            "resourceVersionMatch: Forbidden: sendInitialEvents requires setting "
            "resourceVersionMatch to NotOlderThan",
        ),
        (
            "sendInitialEvents=true",
            "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list",
        ),
        (
            "resourceVersionMatch=Exact",
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless "
            "resourceVersion is provided",
        ),
    ],
)
async def test_resource_version_match_misuse_is_422(
    apiserver: ApiServer, query: str, message: str
) -> None:
    async with (
        raw_session(apiserver) as session,
        session.get(f"/api/v1/events?{query}") as response,
    ):
        body = await response.json()
    assert response.status == 422
    assert (body["reason"], body["details"]["kind"]) == ("Invalid", "ListOptions")
    assert body["message"] == f'ListOptions.meta.k8s.io "" is invalid: {message}'


async def test_legacy_watch_prefix_and_selectors_on_watches(apiserver: ApiServer) -> None:
    apiserver.create(pod("a", labels={"app": "web"}))
    async with raw_session(apiserver) as session:
        path = "/api/v1/watch/namespaces/default/pods?labelSelector=app%3Dweb&timeoutSeconds=5"
        async with session.get(path) as response:
            first = await next_frames(response, 1)
            moved_out = apiserver.get("pods", "a")
            assert moved_out is not None
            moved_out["metadata"]["labels"] = {"app": "db"}
            apiserver.update(moved_out)
            apiserver.create(pod("b", labels={"app": "db"}))  # never matches: not sent
            apiserver.create(pod("c", labels={"app": "web"}))
            rest = await next_frames(response, 2)
    seen = [(f["type"], f["object"]["metadata"]["name"]) for f in first + rest]
    assert seen == [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "c")]


async def test_a_large_burst_streams_quickly(apiserver: ApiServer) -> None:
    count = 20_000
    async with raw_session(apiserver) as session:
        rv = apiserver.resource_version
        async with session.get(
            f"/api/v1/events?watch=1&resourceVersion={rv}&timeoutSeconds=30"
        ) as response:
            await apiserver.wait_for_watches("events")
            started = time.monotonic()
            involved = {"kind": "Pod", "name": "web-0", "namespace": "default"}
            for index in range(count):
                apiserver.store.create(
                    make_event("Pulled", "m", involved, name=f"e{index}"), copy=False
                )
            received = 0
            async with asyncio.timeout(20):
                while received < count:
                    line = await response.content.readline()
                    assert line
                    received += 1
    assert time.monotonic() - started < 10


# ---- GET and writes ------------------------------------------------------------------


async def test_get_of_a_missing_object_is_a_404_status(apiserver: ApiServer) -> None:
    async with raw_session(apiserver) as session:
        async with session.get("/api/v1/namespaces/default/pods/x") as response:
            pod_body = await response.json()
        async with session.get("/apis/apps/v1/namespaces/default/deployments/x") as response:
            deployment_body = await response.json()
            assert response.status == 404
    assert pod_body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "x" not found',
        "reason": "NotFound",
        "details": {"name": "x", "kind": "pods"},
        "code": 404,
    }
    assert deployment_body["message"] == 'deployments.apps "x" not found'
    assert deployment_body["details"] == {"name": "x", "group": "apps", "kind": "deployments"}


# What client-go's metadata client sends (k8s.io/client-go/metadata), protobuf first.
CLIENT_GO_METADATA_LIST = (
    "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
)


def secret_pod(name: str) -> dict[str, Any]:
    body = pod(
        name,
        labels={"app": "web"},
        ownerReferences=[
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web-1",
                "uid": "rs-uid",
                "controller": True,
            }
        ],
    )
    body["spec"] = {
        "containers": [{"name": "app", "env": [{"name": "PASSWORD", "value": "hunter2"}]}]
    }
    return body


async def test_metadata_only_reads_answer_partial_object_metadata(apiserver: ApiServer) -> None:
    stored = apiserver.create(secret_pod("web-1-a"))
    apiserver.create(secret_pod("web-1-b"))
    rv = apiserver.resource_version
    async with raw_session(apiserver) as session:
        listing = {"Accept": CLIENT_GO_METADATA_LIST}
        async with session.get("/api/v1/pods?limit=1", headers=listing) as response:
            first = await response.json()
        token = first["metadata"]["continue"]
        async with session.get(f"/api/v1/pods?limit=1&continue={token}", headers=listing) as r:
            second = await r.json()
        single = {"Accept": METADATA}
        async with session.get("/api/v1/namespaces/default/pods/web-1-a", headers=single) as r:
            got = await r.json()
        watch = await session.get(
            f"/api/v1/pods?watch=1&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=2",
            headers=single,
        )
        await apiserver.wait_for_watches("pods")
        apiserver.delete("pods", "web-1-b", "default")
        assert apiserver.bookmark() == 1
        frames = await read_frames(watch)
    assert (first["kind"], first["apiVersion"]) == ("PartialObjectMetadataList", "meta.k8s.io/v1")
    items = first["items"] + second["items"]
    assert [item["metadata"]["name"] for item in items] == ["web-1-a", "web-1-b"]
    for item in items + [got] + [frame["object"] for frame in frames]:
        assert (item["kind"], item["apiVersion"]) == ("PartialObjectMetadata", "meta.k8s.io/v1")
        assert set(item) == {"kind", "apiVersion", "metadata"}  # no spec, no status
        assert b"hunter2" not in orjson.dumps(item)
    assert got["metadata"] == stored["metadata"]  # all of it: owners, managers, labels
    assert [frame["type"] for frame in frames] == ["DELETED", "BOOKMARK"]


async def test_accept_is_negotiated_clause_by_clause(apiserver: ApiServer) -> None:
    apiserver.create(pod("web-0"))
    cases = {
        # list kind for a single object, single kind for a list: 406, as the real server
        ("/api/v1/pods", METADATA): 406,
        ("/api/v1/namespaces/default/pods/web-0", METADATA_LIST): 406,
        ("/api/v1/pods?watch=1&timeoutSeconds=1", METADATA_LIST): 406,
        ("/api/v1/pods", "application/vnd.kubernetes.protobuf"): 406,  # JSON only here
        ("/api/v1/pods", "application/vnd.kubernetes.protobuf, application/json"): 200,
        ("/api/v1/pods", "application/yaml, */*;q=0.5"): 200,
        ("/api/v1/namespaces/default/pods/gone", METADATA_LIST): 404,  # found out first
        ("/api/v1/namespaces/default/pods/web-0", f"*/*, {METADATA}"): 200,  # specific first
        # by q first: the plain JSON is preferred here
        (
            "/api/v1/pods",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1;q=0.5"
            ", application/json",
        ): 200,
    }
    async with raw_session(apiserver) as session:
        for (path, accept), expected in cases.items():
            async with session.get(path, headers={"Accept": accept}) as response:
                body = await response.json()
                assert response.status == expected, (path, accept, body)
            if expected == 406:
                assert (body["kind"], body["reason"]) == ("Status", "NotAcceptable")
            elif expected == 404:
                assert (body["kind"], body["reason"]) == ("Status", "NotFound")
            elif path.endswith("web-0"):
                assert body["kind"] == "PartialObjectMetadata"
            else:
                assert body["kind"] == "PodList"


async def test_writes_through_the_api(apiserver: ApiServer) -> None:
    async with api_client(apiserver.kubeconfig) as api:
        core = client.CoreV1Api(api)
        created = await core.create_namespaced_pod("default", pod("p"))
        assert created.metadata.uid and created.metadata.resource_version
        await core.replace_namespaced_pod("p", "default", api.sanitize_for_serialization(created))
        with pytest.raises(ApiException) as conflict:
            await core.replace_namespaced_pod(
                "p", "default", api.sanitize_for_serialization(created)
            )
        patched = await core.patch_namespaced_pod(
            "p", "default", {"metadata": {"labels": {"b": "2"}}}
        )
        await core.delete_namespaced_pod("p", "default")
    assert conflict.value.status == 409
    assert patched.metadata.labels == {"b": "2"}
    assert apiserver.get("pods", "p") is None


# ---- fault injection -----------------------------------------------------------------


async def test_forbidden_resource_has_the_rbac_message(apiserver: ApiServer) -> None:
    apiserver.faults.forbid("deployments")
    async with api_client(apiserver.kubeconfig) as api:
        apps = client.AppsV1Api(api)
        with pytest.raises(ApiException) as listing:
            await apps.list_deployment_for_all_namespaces()
        with pytest.raises(ApiException) as getting:
            await apps.read_namespaced_deployment("web", "default")
        await client.CoreV1Api(api).list_namespaced_pod("default")  # others still allowed
    user = 'User "system:serviceaccount:eventtrace:eventtrace"'
    assert (listing.value.status, getting.value.status) == (403, 403)
    assert orjson.loads(listing.value.body)["message"] == (
        f'deployments.apps is forbidden: {user} cannot list resource "deployments" '
        'in API group "apps" at the cluster scope'
    )
    assert orjson.loads(getting.value.body)["message"] == (
        f'deployments.apps "web" is forbidden: {user} cannot get resource "deployments" '
        'in API group "apps" in the namespace "default"'
    )


async def test_throttling_sends_retry_after_then_recovers(apiserver: ApiServer) -> None:
    apiserver.faults.throttle(resource="events", times=1, retry_after=2)
    async with raw_session(apiserver) as session:
        async with session.get("/api/v1/events") as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "2"
            body = await response.json()
        async with session.get("/api/v1/events") as response:
            assert response.status == 200
    assert (body["reason"], body["details"]) == ("TooManyRequests", {"retryAfterSeconds": 2})
    assert [r.status for r in apiserver.requests.matching(resource="events", verb="list")] == [
        429,
        200,
    ]


async def test_injected_server_errors_then_success(apiserver: ApiServer) -> None:
    apiserver.faults.fail(500, resource="pods", verbs="list", times=2)
    async with api_client(apiserver.kubeconfig) as api:
        core = client.CoreV1Api(api)
        for _ in range(2):
            with pytest.raises(ApiException) as failure:
                await core.list_namespaced_pod("default")
            assert failure.value.status == 500
        await core.list_namespaced_pod("default")
        await core.list_namespaced_event("default")  # another resource was never affected


async def test_forced_watch_expiry_and_the_request_log(apiserver: ApiServer) -> None:
    apiserver.faults.expire_watch("events")
    async with raw_session(apiserver) as session:
        async with session.get("/api/v1/events?watch=1&timeoutSeconds=5") as response:
            expired = await read_frames(response)
        async with session.get("/api/v1/events") as response:
            assert response.status == 200  # the client's re-list
        async with session.get("/api/v1/events?watch=1&timeoutSeconds=1") as response:
            normal = await read_frames(response)
    assert expired[0]["type"] == "ERROR" and expired[0]["object"]["code"] == 410
    assert normal == []
    verbs = [r.verb for r in apiserver.requests.matching(resource="events")]
    assert verbs == ["watch", "list", "watch"]


async def test_slow_responses(apiserver: ApiServer) -> None:
    apiserver.faults.delay(0.3, resource="pods", times=1)
    async with raw_session(apiserver) as session:
        started = time.monotonic()
        async with session.get("/api/v1/pods") as response:
            assert response.status == 200
        slow = time.monotonic() - started
        started = time.monotonic()
        async with session.get("/api/v1/pods") as response:
            assert response.status == 200
        fast = time.monotonic() - started
    assert slow >= 0.3 > fast


async def test_dropped_watch_streams_end_without_a_clean_eof(apiserver: ApiServer) -> None:
    pod_event(apiserver, "web-0", "Scheduled")
    async with (
        raw_session(apiserver) as session,
        session.get("/api/v1/events?watch=1&timeoutSeconds=30") as response,
    ):
        await next_frames(response, 1)
        assert apiserver.drop_watches() == 1
        with pytest.raises(aiohttp.ClientPayloadError):
            await read_frames(response)
    async with api_client(apiserver.kubeconfig) as api, watch.Watch() as stream:
        events = stream.stream(
            client.CoreV1Api(api).list_event_for_all_namespaces, timeout_seconds=30
        )
        await collect(events, 1)
        apiserver.drop_watches("events")
        with pytest.raises(aiohttp.ClientPayloadError):
            await collect(events, 1)


async def test_a_restarted_server_keeps_its_port_and_objects(apiserver: ApiServer) -> None:
    created = pod_event(apiserver, "web-0", "Scheduled")
    async with api_client(apiserver.kubeconfig) as api:
        core = client.CoreV1Api(api)
        await core.list_namespaced_event("default")
        await apiserver.stop()
        with pytest.raises(aiohttp.ClientConnectionError):
            await core.list_namespaced_event("default")
        await apiserver.start()
        events = await core.list_namespaced_event("default")
    assert [e.metadata.uid for e in events.items] == [created["metadata"]["uid"]]


# ---- standalone process --------------------------------------------------------------


async def test_standalone_server_preloads_and_streams(tmp_path: Path) -> None:
    involved = {"kind": "Pod", "name": "web-0", "namespace": "default"}
    preload = tmp_path / "preload.jsonl"
    preload.write_bytes(orjson.dumps(make_event("Scheduled", "m", involved, name="e0")) + b"\n")
    stream = tmp_path / "stream.jsonl"
    stream.write_bytes(
        b"".join(
            orjson.dumps(make_event("Pulled", "m", involved, name=f"s{i}")) + b"\n"
            for i in range(50)
        )
    )
    kubeconfig = tmp_path / "kubeconfig"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SUPPORT_DIR / "apiserver.py"),
        f"--kubeconfig={kubeconfig}",
        f"--load={preload}",
        f"--stream={stream}",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert process.stdout is not None
    try:
        url = (await asyncio.wait_for(process.stdout.readline(), 15)).decode().strip()
        assert url.startswith("https://127.0.0.1:")
        async with api_client(kubeconfig) as api, watch.Watch() as watcher:
            events = watcher.stream(
                client.CoreV1Api(api).list_event_for_all_namespaces, timeout_seconds=10
            )
            frames = await collect(events, 51, within=10)
        assert [f["object"].metadata.name for f in frames] == ["e0"] + [f"s{i}" for i in range(50)]
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
