"""Plain data inside the pipeline: what events and objects are, and what spans come out.

Times are integer nanoseconds since the Unix epoch throughout, as OpenTelemetry uses them.
Everything here is a slotted dataclass, never changed once made. The three made for every
event or span (EventState, Occurrence, Span) are not `frozen` only because a frozen
dataclass sets each field through object.__setattr__, several times slower to make.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

AttributeValue = str | int | bool | float


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """Who an event is about, or who owns an object: what kubectl needs to name it."""

    kind: str
    name: str
    namespace: str = ""
    uid: str = ""
    api_version: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity when the uid cannot be trusted (kubelet Node events carry the name)."""
        return (self.kind, self.namespace, self.name)

    @property
    def display_name(self) -> str:
        """`deployment/redis`, as kubectl prints objects."""
        return f"{self.kind.lower()}/{self.name}"


@dataclass(frozen=True, slots=True)
class OwnerRef:
    ref: ObjectRef
    controller: bool = False


@dataclass(frozen=True, slots=True)
class KubeObject:
    """The slice of a Kubernetes object the pipeline needs: identity, owners, who changed it."""

    ref: ObjectRef
    owners: tuple[OwnerRef, ...] = ()
    # Field manager of the newest managedFields entry that touches `f:spec`.
    spec_manager: str = ""
    resource_version: str = ""
    # A mirror pod's `kubernetes.io/config.hash`: the uid kubelet gives its static pod.
    config_hash: str = ""

    @property
    def controller(self) -> ObjectRef | None:
        """The owner that controls this object, else the first owner."""
        for owner in self.owners:
            if owner.controller:
                return owner.ref
        return self.owners[0].ref if self.owners else None


@dataclass(slots=True)
class EventState:
    """One Kubernetes Event as seen at one moment (an ADDED or MODIFIED, or a list item)."""

    uid: str
    name: str
    namespace: str
    reason: str
    message: str
    type: str
    involved: ObjectRef
    count: int
    first_ns: int
    last_ns: int
    field_path: str = ""
    component: str = ""
    instance: str = ""
    host: str = ""
    action: str = ""
    resource_version: str = ""

    @property
    def is_warning(self) -> bool:
        return self.type == "Warning"

    @property
    def sort_key(self) -> tuple[int, int, str, str, str]:
        """A total order on states, so any arrival order can be made the same order."""
        return (self.last_ns, self.count, self.uid, self.resource_version, self.message)


@dataclass(slots=True)
class Occurrence:
    """What one span stands for: one or more new occurrences of one event."""

    event: EventState
    previous_count: int
    start_ns: int
    end_ns: int

    @property
    def occurrences(self) -> int:
        return self.event.count - self.previous_count


class SpanStatus(Enum):
    UNSET = "UNSET"
    ERROR = "ERROR"


class SpanKind(Enum):
    EVENT = "event"
    OBJECT = "object"


@dataclass(slots=True)
class Span:
    """One finished span. Ids are lowercase hex: 32 digits for traces, 16 for spans."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: SpanKind
    start_ns: int
    end_ns: int
    status: SpanStatus
    status_message: str
    # Resource: service.name, service.instance.id, k8s.cluster.name.
    resource: tuple[tuple[str, AttributeValue], ...]
    # In the order spans.py writes them, one order for every span of a kind. A dict: one
    # object a span for the garbage collector to walk, not one a pair.
    attributes: dict[str, AttributeValue]

    @property
    def service_name(self) -> str:
        return str(dict(self.resource).get("service.name", ""))

    def attribute(self, key: str) -> AttributeValue | None:
        return self.attributes.get(key)


@dataclass(frozen=True, slots=True)
class Rejected:
    """An input that could not be used, and why: logged and counted, never silently lost."""

    where: str
    reason: str
    # A short fixed label for the metric: schema, no_time, not_an_object, no_name, file.
    category: str = "schema"

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"
