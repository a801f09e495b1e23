"""Which events count: include/exclude by type, reason, involved kind and namespace."""

from __future__ import annotations

from dataclasses import dataclass

from eventtrace.model import EventState
from eventtrace.settings import Settings


@dataclass(frozen=True, slots=True)
class EventFilter:
    include_types: frozenset[str] = frozenset()
    exclude_types: frozenset[str] = frozenset()
    include_reasons: frozenset[str] = frozenset()
    exclude_reasons: frozenset[str] = frozenset()
    include_kinds: frozenset[str] = frozenset()
    exclude_kinds: frozenset[str] = frozenset()
    include_namespaces: frozenset[str] = frozenset()
    exclude_namespaces: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> EventFilter:
        return cls(
            include_types=frozenset(settings.include_types),
            exclude_types=frozenset(settings.exclude_types),
            include_reasons=frozenset(settings.include_reasons),
            exclude_reasons=frozenset(settings.exclude_reasons),
            include_kinds=frozenset(settings.include_kinds),
            exclude_kinds=frozenset(settings.exclude_kinds),
            include_namespaces=frozenset(settings.namespaces),
            exclude_namespaces=frozenset(settings.exclude_namespaces),
        )

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
