"""Which events count: include/exclude by type, reason, involved kind and namespace."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter

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
    # Only the dimensions something is set for: unfiltered (the default), an event is
    # kept without a look at it.
    _in_use: tuple[_Check, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checks: tuple[_Check, ...] = (
            ("type", attrgetter("type"), self.include_types, self.exclude_types),
            ("reason", attrgetter("reason"), self.include_reasons, self.exclude_reasons),
            ("kind", attrgetter("involved.kind"), self.include_kinds, self.exclude_kinds),
            (
                "namespace",
                attrgetter("namespace"),
                self.include_namespaces,
                self.exclude_namespaces,
            ),
        )
        in_use = tuple(check for check in checks if check[2] or check[3])
        object.__setattr__(self, "_in_use", in_use)  # frozen

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
        for name, value_of, include, exclude in self._in_use:
            value = value_of(event)
            if value in exclude:
                return f"exclude_{name}"
            if include and value not in include:
                return f"include_{name}"
        return None


# (filter name, the event's value for it, include, exclude)
_Check = tuple[str, Callable[[EventState], str], frozenset[str], frozenset[str]]
