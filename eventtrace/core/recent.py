"""A map that forgets what has not been touched for a while, by arrival, in O(1) a turn."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Recent(Generic[K, V]):
    """Two generations: what was touched this turn, and the turn before. `turn()` drops
    what neither touched. Called every T, it keeps a key at least T and less than 2T
    after it was last touched: a bound on what is remembered, whatever the keys' own
    times say, without a timestamp a key."""

    __slots__ = ("_before", "_now")

    def __init__(self) -> None:
        self._now: dict[K, V] = {}
        self._before: dict[K, V] = {}

    def __len__(self) -> int:
        return len(self._now) + len(self._before)

    def get(self, key: K) -> V | None:
        """The value, touched (kept for this turn and the next)."""
        value = self._now.get(key)
        if value is None:
            value = self._before.pop(key, None)
            if value is not None:
                self._now[key] = value
        return value

    def __setitem__(self, key: K, value: V) -> None:
        self._before.pop(key, None)
        self._now[key] = value

    def items(self) -> Iterator[tuple[K, V]]:
        yield from self._before.items()
        yield from self._now.items()

    def turn(self) -> list[K]:
        """Forget what was not touched since the last turn; the keys forgotten."""
        forgotten = list(self._before)
        self._before, self._now = self._now, {}
        return forgotten
