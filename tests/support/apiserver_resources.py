"""Resource types, discovery documents, Status bodies and Event shapes for the test API server.

Everything here is plain data: no I/O, no asyncio. Shapes follow the real API server
(the Kubernetes API concepts: watch, resourceVersion, bookmarks).
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

# The server's version; kubectl warns when its own minor version is far from this.
SERVER_VERSION: JSON = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0",
    "gitCommit": "70d3cc986aa8221cd1dfb1121852688902d3bf53",
    "gitTreeState": "clean",
    "buildDate": "2024-12-11T17:59:15Z",
    "goVersion": "go1.23.3",
    "compiler": "gc",
    "platform": "linux/amd64",
}

EVENTS_BUCKET = "events"  # core/v1 and events.k8s.io/v1 Events share one store


@dataclass(frozen=True)
class ResourceType:
    """One resource of one group/version, as discovery describes it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    bucket: str = ""  # storage identity; empty means "own bucket"

    @functools.cached_property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @functools.cached_property
    def singular(self) -> str:
        return self.kind.lower()

    @functools.cached_property
    def group_resource(self) -> str:
        """`deployments.apps`, or just `pods` for the core group (as in error messages)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @functools.cached_property
    def storage(self) -> str:
        return self.bucket or self.group_resource

    @functools.cached_property
    def is_event(self) -> bool:
        return self.storage == EVENTS_BUCKET

    @functools.cached_property
    def is_events_v1(self) -> bool:
        """True for events.k8s.io/v1, whose objects are converted from the stored core shape."""
        return self.is_event and self.group == "events.k8s.io"

    def discovery_entry(self) -> JSON:
        entry: JSON = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(ALL_VERBS),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        return entry


def _core(
    plural: str, kind: str, namespaced: bool, *short: str, all_: bool = False
) -> ResourceType:
    return ResourceType("", "v1", plural, kind, namespaced, short, ("all",) if all_ else ())


def _grouped(
    group: str, plural: str, kind: str, *short: str, version: str = "v1", all_: bool = True
) -> ResourceType:
    return ResourceType(group, version, plural, kind, True, short, ("all",) if all_ else ())


BUILTIN_RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "events", "Event", True, ("ev",), (), EVENTS_BUCKET),
    _core("pods", "Pod", True, "po", all_=True),
    _core("nodes", "Node", False, "no"),
    _core("namespaces", "Namespace", False, "ns"),
    _core("services", "Service", True, "svc", all_=True),
    _core("configmaps", "ConfigMap", True, "cm"),
    _core("persistentvolumeclaims", "PersistentVolumeClaim", True, "pvc"),
    _core("persistentvolumes", "PersistentVolume", False, "pv"),
    ResourceType("events.k8s.io", "v1", "events", "Event", True, ("ev",), (), EVENTS_BUCKET),
    _grouped("apps", "deployments", "Deployment", "deploy"),
    _grouped("apps", "replicasets", "ReplicaSet", "rs"),
    _grouped("apps", "statefulsets", "StatefulSet", "sts"),
    _grouped("apps", "daemonsets", "DaemonSet", "ds"),
    _grouped("batch", "jobs", "Job"),
    _grouped("batch", "cronjobs", "CronJob", "cj"),
    _grouped(
        "autoscaling", "horizontalpodautoscalers", "HorizontalPodAutoscaler", "hpa", version="v2"
    ),
    _grouped("coordination.k8s.io", "leases", "Lease", all_=False),
)


class Registry:
    """The resource types the server knows: built-ins plus custom resources added by tests."""

    def __init__(self, resources: Iterable[ResourceType] = BUILTIN_RESOURCES) -> None:
        self._resources: list[ResourceType] = []
        self._by_kind: dict[tuple[str, str], ResourceType] = {}
        for resource in resources:
            self.add(resource)

    def add(self, resource: ResourceType) -> None:
        if self.by_path(resource.group, resource.version, resource.plural):
            raise ValueError(
                f"resource {resource.plural} already registered in {resource.api_version}"
            )
        self._resources.append(resource)
        self._by_kind[(resource.api_version, resource.kind)] = resource

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(self._resources)

    def by_path(self, group: str, version: str, plural: str) -> ResourceType | None:
        for resource in self._resources:
            if (resource.group, resource.version, resource.plural) == (group, version, plural):
                return resource
        return None

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        return self._by_kind.get((api_version, kind))

    def by_name(self, name: str) -> list[ResourceType]:
        """All types answering to a plural, singular or short name (`events` gives two)."""
        name = name.lower()
        return [
            r
            for r in self._resources
            if name in (r.plural, r.singular, r.kind.lower(), *r.short_names)
        ]

    def group_versions(self) -> dict[str, list[str]]:
        """Group name -> versions, in registration order; the core group is ''."""
        groups: dict[str, list[str]] = {}
        for resource in self._resources:
            versions = groups.setdefault(resource.group, [])
            if resource.version not in versions:
                versions.append(resource.version)
        return groups

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [r for r in self._resources if (r.group, r.version) == (group, version)]


# ---- discovery documents -------------------------------------------------------------


def api_versions_doc(server_address: str) -> JSON:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def api_group_doc(group: str, versions: list[str]) -> JSON:
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def api_group_list_doc(registry: Registry) -> JSON:
    groups = [
        api_group_doc(group, versions)
        for group, versions in registry.group_versions().items()
        if group
    ]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def resource_list_doc(registry: Registry, group: str, version: str) -> JSON:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": [r.discovery_entry() for r in registry.in_group_version(group, version)],
    }


# ---- Status bodies -------------------------------------------------------------------


class ApiError(Exception):
    """An API failure carrying the Status body the server answers with."""

    def __init__(self, status: JSON, retry_after: int | None = None) -> None:
        super().__init__(status.get("message", ""))
        self.status = status
        self.retry_after = retry_after

    @property
    def code(self) -> int:
        return int(self.status["code"])


def status_body(code: int, reason: str, message: str, details: JSON | None = None) -> JSON:
    body: JSON = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def _details(resource: ResourceType, name: str = "") -> JSON:
    details: JSON = {}
    if name:
        details["name"] = name
    if resource.group:
        details["group"] = resource.group
    details["kind"] = resource.plural
    return details


def not_found(resource: ResourceType, name: str) -> ApiError:
    message = f'{resource.group_resource} "{name}" not found'
    return ApiError(status_body(404, "NotFound", message, _details(resource, name)))


def unknown_path() -> ApiError:
    message = "the server could not find the requested resource"
    return ApiError(status_body(404, "NotFound", message, {}))


def already_exists(resource: ResourceType, name: str) -> ApiError:
    message = f'{resource.group_resource} "{name}" already exists'
    return ApiError(status_body(409, "AlreadyExists", message, _details(resource, name)))


def conflict(resource: ResourceType, name: str) -> ApiError:
    message = (
        f'Operation cannot be fulfilled on {resource.group_resource} "{name}": the object has '
        "been modified; please apply your changes to the latest version and try again"
    )
    return ApiError(status_body(409, "Conflict", message, _details(resource, name)))


def forbidden(
    resource: ResourceType, verb: str, user: str, namespace: str | None, name: str = ""
) -> ApiError:
    subject = f'{resource.group_resource} "{name}"' if name else resource.group_resource
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    message = (
        f'{subject} is forbidden: User "{user}" cannot {verb} resource "{resource.plural}" '
        f'in API group "{resource.group}" {scope}'
    )
    return ApiError(status_body(403, "Forbidden", message, _details(resource, name)))


def unauthorized() -> ApiError:
    return ApiError(status_body(401, "Unauthorized", "Unauthorized"))


def bad_request(message: str) -> ApiError:
    return ApiError(status_body(400, "BadRequest", message))


def method_not_allowed() -> ApiError:
    message = "the server does not allow this method on the requested resource"
    return ApiError(status_body(405, "MethodNotAllowed", message, {}))


def expired(message: str) -> ApiError:
    return ApiError(status_body(410, "Expired", message))


LIST_RV_TOO_OLD = "The resourceVersion for the provided list is too old."
WATCH_RV_TOO_OLD = "The resourceVersion for the provided watch is too old."
CONTINUE_TOO_OLD = (
    "The provided continue parameter is too old to display a consistent list result. "
    "You can start a new list without the continue parameter."
)


def too_large_resource_version(requested: int, current: int) -> ApiError:
    message = f"Too large resource version: {requested}, current: {current}"
    details = {
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
        "retryAfterSeconds": 1,
    }
    return ApiError(status_body(504, "Timeout", message, details), retry_after=1)


def invalid_list_options(errors: list[tuple[str, str]]) -> ApiError:
    """422 for bad ListOptions; `errors` are (field, "Forbidden: ...") pairs."""
    rendered = [f"{field}: {text}" for field, text in errors]
    joined = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    causes = [
        {"reason": _cause_reason(text), "message": text, "field": field} for field, text in errors
    ]
    message = f'ListOptions.meta.k8s.io "" is invalid: {joined}'
    details = {"group": "meta.k8s.io", "kind": "ListOptions", "causes": causes}
    return ApiError(status_body(422, "Invalid", message, details))


def _cause_reason(text: str) -> str:
    return (
        "FieldValueNotSupported" if text.startswith("Unsupported value") else "FieldValueForbidden"
    )


def error_for_status(
    code: int, message: str | None = None, retry_after: int | None = None
) -> ApiError:
    """A generic injected failure, shaped like the real server's for that code."""
    reason, default_message = _GENERIC_ERRORS.get(code, ("InternalError", "an error on the server"))
    text = message or default_message
    details: JSON | None = None
    if code == 500:
        details = {"causes": [{"message": text}]}
        text = f"Internal error occurred: {text}"
    if retry_after is not None:
        details = {**(details or {}), "retryAfterSeconds": retry_after}
    return ApiError(status_body(code, reason, text, details), retry_after=retry_after)


_GENERIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "bad request"),
    401: ("Unauthorized", "Unauthorized"),
    403: ("Forbidden", "forbidden"),
    404: ("NotFound", "the server could not find the requested resource"),
    409: ("Conflict", "conflict"),
    410: ("Expired", LIST_RV_TOO_OLD),
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", "injected failure"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "the server was unable to return a response in the time allotted"),
}


# ---- time ----------------------------------------------------------------------------


def rfc3339_now() -> str:
    """metav1.Time: whole seconds, UTC."""
    return _format_second(int(time.time()))


@functools.lru_cache(maxsize=4)
def _format_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))


def micro_time_now() -> str:
    """metav1.MicroTime: six fractional digits, UTC."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


# ---- Event shapes --------------------------------------------------------------------

# core/v1 field -> events.k8s.io/v1 field; everything else keeps its name.
CORE_TO_EVENTS_V1 = {
    "involvedObject": "regarding",
    "message": "note",
    "source": "deprecatedSource",
    "firstTimestamp": "deprecatedFirstTimestamp",
    "lastTimestamp": "deprecatedLastTimestamp",
    "count": "deprecatedCount",
    "reportingComponent": "reportingController",
}
EVENTS_V1_TO_CORE = {v: k for k, v in CORE_TO_EVENTS_V1.items()}


def normalize_core_event(event: JSON) -> None:
    """Give a stored core/v1 Event the fields the real server always serializes."""
    event.setdefault("involvedObject", {})
    event.setdefault("source", {})
    event.setdefault("firstTimestamp", None)
    event.setdefault("lastTimestamp", None)
    event.setdefault("eventTime", None)
    event.setdefault("reportingComponent", "")
    event.setdefault("reportingInstance", "")


def core_event_to_events_v1(event: JSON) -> JSON:
    """The events.k8s.io/v1 view of a stored core/v1 Event (no kind/apiVersion)."""
    converted: JSON = {}
    for key, value in event.items():
        new_key = CORE_TO_EVENTS_V1.get(key, key)
        # reportingController/reportingInstance are omitempty in events.k8s.io/v1
        if new_key in ("reportingController", "reportingInstance") and not value:
            continue
        converted[new_key] = value
    converted.setdefault("eventTime", None)
    return converted


def events_v1_to_core_event(event: JSON) -> JSON:
    converted = {EVENTS_V1_TO_CORE.get(key, key): value for key, value in event.items()}
    normalize_core_event(converted)
    return converted


def empty_object_for_bookmark(resource: ResourceType, resource_version: int) -> JSON:
    """What the server sends as a BOOKMARK object: an empty typed struct plus the RV."""
    obj: JSON = {
        "kind": resource.kind,
        "apiVersion": resource.api_version,
        "metadata": {"resourceVersion": str(resource_version)},
    }
    if resource.is_events_v1:
        obj.update(regarding={}, eventTime=None, deprecatedSource={})
        obj.update(deprecatedFirstTimestamp=None, deprecatedLastTimestamp=None)
    elif resource.is_event:
        obj.update(involvedObject={}, source={}, firstTimestamp=None, lastTimestamp=None)
        obj.update(eventTime=None, reportingComponent="", reportingInstance="")
    return obj


def present(resource: ResourceType, stored: JSON, *, typed: bool) -> JSON:
    """A stored object as `resource` serves it; `typed` adds kind/apiVersion (not in lists)."""
    body = core_event_to_events_v1(stored) if resource.is_events_v1 else stored
    if typed:
        return {"kind": resource.kind, "apiVersion": resource.api_version, **body}
    return body
