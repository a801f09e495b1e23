"""Deterministic trace and span ids: the same input gives the same ids on any replica."""

from __future__ import annotations

from hashlib import blake2b

_SEPARATOR = b"\x1f"  # unit separator: cannot occur in Kubernetes names or uids


def _digest(size: int, *parts: str | int) -> str:
    hasher = blake2b(digest_size=size, person=b"eventtrace")
    hasher.update(_SEPARATOR.join(str(part).encode() for part in parts))
    value = hasher.hexdigest()
    # All-zero ids are invalid in OpenTelemetry; the odds are 2^-64, but be exact.
    return value if value.strip("0") else "1".rjust(size * 2, "0")


def trace_id(cluster: str, root_identity: str, episode_start_ns: int) -> str:
    return _digest(16, "trace", cluster, root_identity, episode_start_ns)


def event_span_id(event_uid: str, count: int) -> str:
    return _digest(8, "event", event_uid, count)


def object_span_id(trace: str, identity: str) -> str:
    return _digest(8, "object", trace, identity)
