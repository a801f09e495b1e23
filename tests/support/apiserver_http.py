"""The HTTP side of the test API server: request routing, auth, discovery, list, get,
watch (chunked NDJSON), writes, and the hooks for injected faults.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from support.apiserver_faults import Faults, RequestInfo, RequestLog, RequestRecord
from support.apiserver_media import (
    Target,
    check_list,
    check_single,
    negotiate,
    partial,
    partial_list,
)
from support.apiserver_resources import (
    JSON,
    SERVER_VERSION,
    WATCH_RV_TOO_OLD,
    ApiError,
    Registry,
    ResourceType,
    api_group_doc,
    api_group_list_doc,
    api_versions_doc,
    bad_request,
    expired,
    invalid_list_options,
    method_not_allowed,
    present,
    resource_list_doc,
    unauthorized,
    unknown_path,
)
from support.apiserver_selectors import combine, field_selector, label_selector
from support.apiserver_store import Store, Watcher
from support.apiserver_tables import table

PUBLIC_VERBS = {"version", "health"}
RECORD = web.RequestKey("record", RequestRecord)
_METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def error_response(error: ApiError) -> web.Response:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return json_response(error.status, error.code, headers)


def is_true(value: str | None) -> bool:
    """Kubernetes booleans in queries: only absent, "0" and "false" are false."""
    return value is not None and value.lower() not in ("0", "false")


# ---- request parsing -----------------------------------------------------------------


def parse_request(registry: Registry, request: web.Request) -> RequestInfo:
    """Work out verb, resource, namespace and name from the path, like RequestInfoFactory."""
    query = dict(request.query)
    info = RequestInfo(request.method, request.path, query, "unknown")
    info.accept = request.headers.get("Accept", "")
    parts = [part for part in request.path.split("/") if part]
    if not parts:
        info.verb = "discovery"
    elif parts[0] == "version":
        info.verb = "version"
    elif parts[0] in ("healthz", "livez", "readyz"):
        info.verb = "health"
    elif (parts[0] == "api" and len(parts) <= 2) or (parts[0] == "apis" and len(parts) <= 3):
        info.verb = "discovery"
    elif parts[0] == "api":
        _parse_resource_path(registry, info, "", parts[1], parts[2:])
    elif parts[0] == "apis":
        _parse_resource_path(registry, info, parts[1], parts[2], parts[3:])
    return info


def _parse_resource_path(
    registry: Registry, info: RequestInfo, group: str, version: str, rest: list[str]
) -> None:
    forced_watch = rest[0] == "watch"
    if forced_watch:
        rest = rest[1:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        info.namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 2:
        return  # subresources and odd paths are unknown here
    resource = registry.by_path(group, version, rest[0])
    if resource is None or (info.namespace is not None and not resource.namespaced):
        return
    info.resource = resource
    info.name = rest[1] if len(rest) == 2 else ""
    if info.method == "GET":
        if forced_watch or is_true(info.query.get("watch")):
            info.verb = "watch"
        else:
            info.verb = "get" if info.name else "list"
    else:
        info.verb = _METHOD_VERBS.get(info.method, "unknown")


def validate_list_options(query: dict[str, str], watching: bool) -> None:
    """The 422 rules of ListOptions validation (reference §1.2)."""
    errors: list[tuple[str, str]] = []
    match = query.get("resourceVersionMatch", "")
    send_initial = query.get("sendInitialEvents")
    if watching:
        if send_initial is not None and match != "NotOlderThan":
            detail = "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
            errors.append(("resourceVersionMatch", f"Forbidden: {detail}"))
        if match and send_initial is None:
            detail = (
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"
            )
            errors.append(("resourceVersionMatch", f"Forbidden: {detail}"))
        if match and match != "NotOlderThan":
            supported = 'supported values: "NotOlderThan"'
            errors.append(("resourceVersionMatch", f'Unsupported value: "{match}": {supported}'))
    else:
        if match and not query.get("resourceVersion"):
            detail = "resourceVersionMatch is forbidden unless resourceVersion is provided"
            errors.append(("resourceVersionMatch", f"Forbidden: {detail}"))
        if match and query.get("continue"):
            detail = "resourceVersionMatch is forbidden when continue is provided"
            errors.append(("resourceVersionMatch", f"Forbidden: {detail}"))
        if match and match not in ("Exact", "NotOlderThan"):
            supported = 'supported values: "Exact", "NotOlderThan", ""'
            errors.append(("resourceVersionMatch", f'Unsupported value: "{match}": {supported}'))
        if match == "Exact" and query.get("resourceVersion") == "0":
            detail = 'resourceVersionMatch "exact" is forbidden for resourceVersion "0"'
            errors.append(("resourceVersionMatch", f"Forbidden: {detail}"))
        if send_initial is not None:
            errors.append(
                ("sendInitialEvents", "Forbidden: sendInitialEvents is forbidden for list")
            )
    if errors:
        raise invalid_list_options(errors)


def _limit(query: dict[str, str]) -> int | None:
    try:
        limit = int(query.get("limit") or 0)
    except ValueError as error:
        raise bad_request(f"invalid limit: {query['limit']}") from error
    return limit if limit > 0 else None


def target_of(info: RequestInfo) -> Target:
    return negotiate(info.accept)


# ---- watch frames --------------------------------------------------------------------


class FrameEncoder:
    """Turns queued (type, stored object) pairs into newline-delimited watch frames."""

    def __init__(self, resource: ResourceType, target: Target, include_object: str) -> None:
        self.resource = resource
        self.target = target
        self.include_object = include_object
        self.columns_sent = False

    def object_for(self, event_type: str, obj: JSON) -> JSON:
        if event_type == "ERROR":
            return obj  # a Status
        if self.target.as_kind == "PartialObjectMetadata":
            return partial(obj, self.target)  # bookmarks too: their metadata is all they have
        if event_type == "BOOKMARK":
            return obj  # already a complete object
        if self.target.as_kind == "Table":
            # Like the real server, only the first Table frame carries the column definitions.
            first, self.columns_sent = not self.columns_sent, True
            return table(
                self.resource, [obj], include_object=self.include_object, with_columns=first
            )
        return present(self.resource, obj, typed=True)

    def encode(self, frames: list[tuple[str, JSON]]) -> bytes:
        newline = orjson.OPT_APPEND_NEWLINE
        return b"".join(
            orjson.dumps({"type": t, "object": self.object_for(t, obj)}, option=newline)
            for t, obj in frames
        )


def error_frame(error: ApiError) -> bytes:
    return orjson.dumps({"type": "ERROR", "object": error.status}, option=orjson.OPT_APPEND_NEWLINE)


# ---- the application -----------------------------------------------------------------


class ApiHttp:
    """Request handling. Owns nothing: the store, faults and log are the server's."""

    def __init__(
        self,
        *,
        registry: Registry,
        store: Store,
        faults: Faults,
        log: RequestLog,
        token: str,
        address: Callable[[], str],
        min_request_timeout: float = 1800.0,
    ) -> None:
        self.registry = registry
        self.store = store
        self.faults = faults
        self.log = log
        self.token = token
        self.address = address
        self.min_request_timeout = min_request_timeout

    def application(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        info = parse_request(self.registry, request)
        record = self.log.add(info)
        request[RECORD] = record
        try:
            self._authenticate(request, info)
            await self.faults.apply_delay(info)
            injected = self.faults.error_for(info)
            if injected is not None:
                raise injected
            response = await self._route(request, info)
        except ApiError as error:
            response = error_response(error)
        if self.faults.rewrites and isinstance(response, web.Response) and response.body:
            body = response.body
            assert isinstance(body, bytes)
            response.body = self.faults.rewritten(body)
        if record.status is None:
            record.status = response.status
        return response

    def _authenticate(self, request: web.Request, info: RequestInfo) -> None:
        header = request.headers.get("Authorization")
        if header is None and info.verb in PUBLIC_VERBS:
            return  # anonymous access to /version and health, as system:public-info-viewer
        if header != f"Bearer {self.token}":
            raise unauthorized()

    async def _route(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        handlers: dict[str, Callable[[web.Request, RequestInfo], Awaitable[web.StreamResponse]]]
        handlers = {
            "version": self._version,
            "health": self._health,
            "discovery": self._discovery,
            "get": self._get,
            "list": self._list,
            "watch": self._watch,
            "create": self._create,
            "update": self._update,
            "patch": self._patch,
            "delete": self._delete,
        }
        handler = handlers.get(info.verb)
        if handler is None:
            raise unknown_path()
        return await handler(request, info)

    # ---- non-resource endpoints ------------------------------------------------------

    async def _version(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        return json_response(SERVER_VERSION)

    async def _health(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        return web.Response(text="ok", content_type="text/plain")

    async def _discovery(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        # Plain (unaggregated) discovery, answered as application/json: clients asking for
        # the aggregated apidiscovery.k8s.io form fall back to it, as with older servers.
        parts = [part for part in info.path.split("/") if part]
        if not parts:
            return json_response({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/version"]})
        if parts == ["api"]:
            return json_response(api_versions_doc(self.address()))
        if parts == ["apis"]:
            return json_response(api_group_list_doc(self.registry))
        group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], "")
        versions = self.registry.group_versions().get(group)
        if not versions:
            raise unknown_path()
        if parts[0] == "apis" and len(parts) == 2:
            return json_response(
                {"kind": "APIGroup", "apiVersion": "v1", **api_group_doc(group, versions)}
            )
        version = version or parts[2]
        if version not in versions:
            raise unknown_path()
        return json_response(resource_list_doc(self.registry, group, version))

    # ---- reads -----------------------------------------------------------------------

    def _resource(self, info: RequestInfo) -> ResourceType:
        assert info.resource is not None  # guaranteed by the verb
        return info.resource

    async def _get(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        resource = self._resource(info)
        target = target_of(info)
        stored = self.store.get_stored(resource, info.namespace, info.name)  # 404 first
        check_single(target)
        if target.as_kind == "PartialObjectMetadata":
            return json_response(partial(stored, target))
        if target.as_kind == "Table":
            include = info.query.get("includeObject", "Metadata")
            rv = int(stored["metadata"]["resourceVersion"])
            return json_response(
                table(resource, [stored], include_object=include, resource_version=rv)
            )
        return json_response(present(resource, stored, typed=True))

    async def _list(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        resource, query = self._resource(info), info.query
        validate_list_options(query, watching=False)
        target = target_of(info)
        check_list(target, f"{resource.kind}List")
        if query.get("continue") and query.get("resourceVersion"):
            raise bad_request("specifying resource version is not allowed when using continue")
        page = self.store.list_objects(
            resource,
            info.namespace,
            self._predicate(resource, query),
            limit=_limit(query),
            continue_token=query.get("continue"),
            resource_version=query.get("resourceVersion"),
            resource_version_match=query.get("resourceVersionMatch"),
        )
        if target.as_kind == "PartialObjectMetadataList":
            body = partial_list(page.items, target, page.resource_version, page.continue_token)
            return json_response(body)
        if target.as_kind == "Table":
            body = table(
                resource,
                page.items,
                include_object=query.get("includeObject", "Metadata"),
                resource_version=page.resource_version,
                continue_token=page.continue_token,
            )
            return json_response(body)
        metadata: JSON = {"resourceVersion": str(page.resource_version)}
        if page.continue_token:
            metadata["continue"] = page.continue_token
        body = {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": metadata,
            "items": [present(resource, obj, typed=False) for obj in page.items],
        }
        return json_response(body)

    @staticmethod
    def _predicate(resource: ResourceType, query: dict[str, str]) -> Any:
        return combine(
            field_selector(resource, query.get("fieldSelector")),
            label_selector(query.get("labelSelector")),
        )

    # ---- watch -----------------------------------------------------------------------

    async def _watch(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        resource, query = self._resource(info), info.query
        validate_list_options(query, watching=True)
        target = target_of(info)
        check_single(target)
        predicate = self._predicate(resource, query)
        if info.name:  # a watch on one item is a watch with metadata.name=<name>
            predicate = combine(predicate, field_selector(resource, f"metadata.name={info.name}"))
        deadline = asyncio.get_running_loop().time() + self._watch_lifetime(query)
        send_initial = query.get("sendInitialEvents")
        if self.faults.take_watch_end(info):
            response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            await self._start_stream(request, response)
            await response.write_eof()
            return response
        try:
            if self.faults.take_watch_expiry(info):
                raise expired(WATCH_RV_TOO_OLD)
            watcher = self.store.watch(
                resource,
                info.namespace,
                predicate,
                resource_version=query.get("resourceVersion"),
                send_initial_events=None if send_initial is None else is_true(send_initial),
                wants_bookmarks=is_true(query.get("allowWatchBookmarks")),
            )
        except ApiError as error:
            if error.code != 410:
                raise
            return await self._stream_error(request, error)
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        encoder = FrameEncoder(resource, target, query.get("includeObject", "Metadata"))
        try:
            await self._start_stream(request, response)
            await self._pump(request, response, watcher, encoder, deadline)
        except ConnectionError:
            pass  # the client hung up: nothing left to tell it
        finally:
            self.store.unwatch(watcher)
        return response

    def _watch_lifetime(self, query: dict[str, str]) -> float:
        if query.get("timeoutSeconds"):
            return float(query["timeoutSeconds"])
        # [AS] get.go: random in [T, 2T] with T = --min-request-timeout
        return random.uniform(self.min_request_timeout, 2 * self.min_request_timeout)

    async def _start_stream(self, request: web.Request, response: web.StreamResponse) -> None:
        response.enable_chunked_encoding()
        await response.prepare(request)  # flushes the headers before any event
        request[RECORD].status = 200

    async def _stream_error(self, request: web.Request, error: ApiError) -> web.StreamResponse:
        """HTTP 200, one ERROR frame, then a clean end of the body."""
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await self._start_stream(request, response)
        await response.write(error_frame(error))
        await response.write_eof()
        return response

    async def _pump(
        self,
        request: web.Request,
        response: web.StreamResponse,
        watcher: Watcher,
        encoder: FrameEncoder,
        deadline: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if watcher.ending == "drop":
                _abort(request)
                return
            if watcher.pending:
                # Everything queued goes out as one chunk: fast for big bursts.
                frames = encoder.encode(watcher.take_pending())
                await response.write(self.faults.rewritten(frames))
            remaining = deadline - loop.time()
            if watcher.ending == "close" or remaining <= 0:
                break
            if watcher.pending:
                continue
            try:
                await asyncio.wait_for(watcher.wakeup.wait(), remaining)
            except TimeoutError:
                break
        await response.write_eof()  # timeout: the chunked body ends cleanly, no final frame

    # ---- writes ----------------------------------------------------------------------

    async def _body(self, request: web.Request) -> JSON:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as error:
            raise bad_request(f"invalid JSON body: {error}") from error
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object")
        return body

    def _check_namespace(self, info: RequestInfo, body: JSON) -> None:
        declared = (body.get("metadata") or {}).get("namespace")
        if declared and info.namespace and declared != info.namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )

    async def _create(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        if info.name:
            raise method_not_allowed()
        body = await self._body(request)
        self._check_namespace(info, body)
        created = self.store.create(body, self._resource(info), namespace=info.namespace)
        return json_response(created, 201)

    async def _update(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        if not info.name:
            raise method_not_allowed()
        body = await self._body(request)
        self._check_namespace(info, body)
        if (body.get("metadata") or {}).get("name") != info.name:
            raise bad_request("the name of the object does not match the name on the URL")
        updated = self.store.update(
            body, self._resource(info), namespace=info.namespace, check_resource_version=True
        )
        return json_response(updated)

    async def _patch(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        if not info.name:
            raise method_not_allowed()
        content_type = request.headers.get("Content-Type", "")
        if "merge-patch" not in content_type:
            raise ApiError(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": f"the body of the request was in an unknown format: {content_type}",
                    "reason": "UnsupportedMediaType",
                    "code": 415,
                }
            )
        resource = self._resource(info)
        current = present(
            resource, self.store.get_stored(resource, info.namespace, info.name), typed=True
        )
        patched = merge_patch(current, await self._body(request))
        updated = self.store.update(patched, resource, namespace=info.namespace)
        return json_response(updated)

    async def _delete(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        if not info.name:
            raise method_not_allowed()
        return json_response(self.store.delete(self._resource(info), info.namespace, info.name))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (strategic merge patches of plain fields behave the same)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _abort(request: web.Request) -> None:
    """Close the connection mid-stream, without the chunked terminator (no clean EOF)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
