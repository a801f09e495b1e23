"""Deterministic trace and span ids: the same input gives the same ids on any replica."""

from __future__ import annotations

from hashlib import blake2b

_SEP = "\x1f"  # unit separator: cannot occur in Kubernetes names or uids


# Keyed hashers, copied for each id (cheaper than setting one up each time).
_HASHERS = {size: blake2b(digest_size=size, person=b"eventtrace") for size in (8, 16)}


def _hex(size: int, text: str) -> str:
    """The id of the parts joined by the separator (one string, encoded once)."""
    hasher = _HASHERS[size].copy()
    hasher.update(text.encode())
    value = hasher.hexdigest()
    # All-zero ids are invalid in OpenTelemetry; the odds are 2^-64, but be exact.
    return value if value.strip("0") else "1".rjust(size * 2, "0")


def trace_id(cluster: str, root_identity: str, episode_start_ns: int) -> str:
    return _hex(16, f"trace{_SEP}{cluster}{_SEP}{root_identity}{_SEP}{episode_start_ns}")


def event_span_id(event_uid: str, count: int) -> str:
    return _hex(8, f"event{_SEP}{event_uid}{_SEP}{count}")


def object_span_id(trace: str, identity: str) -> str:
    return _hex(8, f"object{_SEP}{trace}{_SEP}{identity}")
