"""Server-side printing: `meta.k8s.io/v1` Tables, which kubectl asks for (`Accept: ...;as=Table`)
to print its default columns. Events get the real event columns (LAST SEEN, TYPE, REASON,
OBJECT, MESSAGE, ...); every other kind gets NAME and AGE.
"""

from __future__ import annotations

import datetime as dt

from support.apiserver_resources import JSON, ResourceType, parse_time, present


def _column(name: str, kind: str = "string", priority: int = 0, fmt: str = "") -> JSON:
    return {"name": name, "type": kind, "format": fmt, "description": name, "priority": priority}


EVENT_COLUMNS = [
    _column("Last Seen"),
    _column("Type"),
    _column("Reason"),
    _column("Object"),
    _column("Subobject", priority=1),
    _column("Source", priority=1),
    _column("Message"),
    _column("First Seen", priority=1),
    _column("Count", "integer", priority=1),
    _column("Name", priority=1, fmt="name"),
]
DEFAULT_COLUMNS = [_column("Name", fmt="name"), _column("Age")]


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery duration.HumanDuration: `45s`, `3m12s`, `5h`, `2d3h`..."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes, hours = whole // 60, whole // 3600
    if minutes < 10:
        return f"{minutes}m" if whole % 60 == 0 else f"{minutes}m{whole % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    return f"{hours // (24 * 365)}y"


def _since(timestamp: str | None) -> str:
    moment = parse_time(timestamp)
    if moment is None:
        return "<unknown>"
    return human_duration((dt.datetime.now(dt.UTC) - moment).total_seconds())


def _event_cells(event: JSON) -> list[object]:
    """The cells of printEvent (pkg/printers/internalversion), wide variant."""
    first_seen = _since(event.get("firstTimestamp") or event.get("eventTime"))
    last_seen = _since(event["lastTimestamp"]) if event.get("lastTimestamp") else first_seen
    count = event.get("count") or 1  # singleton new-API events have no count
    series = event.get("series")
    if series:
        last_seen, count = _since(series.get("lastObservedTime")), series.get("count", count)
    involved = event.get("involvedObject") or {}
    kind = (involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent") or ""
    instance = source.get("host") or event.get("reportingInstance") or ""
    return [
        last_seen,
        event.get("type", ""),
        event.get("reason", ""),
        target,
        involved.get("fieldPath", ""),
        f"{component}, {instance}" if instance else component,
        (event.get("message") or "").strip(),
        first_seen,
        count,
        event["metadata"]["name"],
    ]


def _row(resource: ResourceType, stored: JSON, include_object: str) -> JSON:
    if resource.is_event:
        cells = _event_cells(stored)
    else:
        cells = [stored["metadata"]["name"], _since(stored["metadata"].get("creationTimestamp"))]
    row: JSON = {"cells": cells, "object": None}
    if include_object == "Object":
        row["object"] = present(resource, stored, typed=True)
    elif include_object != "None":
        row["object"] = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": stored["metadata"],
        }
    return row


def table(
    resource: ResourceType,
    stored_objects: list[JSON],
    *,
    include_object: str = "Metadata",
    resource_version: int | None = None,
    continue_token: str | None = None,
    with_columns: bool = True,
) -> JSON:
    metadata: JSON = {}
    if resource_version is not None:
        metadata["resourceVersion"] = str(resource_version)
    if continue_token:
        metadata["continue"] = continue_token
    columns = EVENT_COLUMNS if resource.is_event else DEFAULT_COLUMNS
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns if with_columns else None,
        "rows": [_row(resource, obj, include_object) for obj in stored_objects],
    }
