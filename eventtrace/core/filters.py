"""Which events count: include/exclude by type, reason, involved kind and namespace."""

from __future__ import annotations

from dataclasses import dataclass

from eventtrace.core.model import EventState


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Empty include sets mean "all"; an exclusion wins over an inclusion."""

    include_types: frozenset[str] = frozenset()
    exclude_types: frozenset[str] = frozenset()
    include_reasons: frozenset[str] = frozenset()
    exclude_reasons: frozenset[str] = frozenset()
    include_kinds: frozenset[str] = frozenset()
    exclude_kinds: frozenset[str] = frozenset()
    include_namespaces: frozenset[str] = frozenset()
    exclude_namespaces: frozenset[str] = frozenset()

    def rejects(self, event: EventState) -> str | None:
        """The name of the filter that leaves this event out, or None to keep it."""
        checks = (
            ("type", event.type, self.include_types, self.exclude_types),
            ("reason", event.reason, self.include_reasons, self.exclude_reasons),
            ("kind", event.involved.kind, self.include_kinds, self.exclude_kinds),
            ("namespace", event.namespace, self.include_namespaces, self.exclude_namespaces),
        )
        for name, value, include, exclude in checks:
            if value in exclude:
                return f"exclude_{name}"
            if include and value not in include:
                return f"include_{name}"
        return None
