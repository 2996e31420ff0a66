"""The market regime a follower can ask copies to respect (`regime_guard`): opens are refused
while the regime of the pair is red. The source is the serving layer's regime model; while no
source answers, a guarded follow is refused with `regime_unknown`, never copied on a guess.
"""

from __future__ import annotations

from typing import Protocol


class RegimeSource(Protocol):
    async def regime(self, pair_index: int) -> str | None:
        """`green`, `red`, or None when the model has no current answer for the pair."""
        ...


class FixedRegime:
    """Regimes set by whoever runs the engine (tests, a manual override)."""

    def __init__(self, by_pair: dict[int, str]):
        self.by_pair = dict(by_pair)

    async def regime(self, pair_index: int) -> str | None:
        return self.by_pair.get(pair_index)
