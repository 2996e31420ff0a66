"""The regime guard's service source: red is red, yellow lets opens through, no answer (or an old
one) is unknown."""

from __future__ import annotations

from data.pairs import builtin_catalogue
from execution.copy.regime_service import ServiceRegime
from serving.client import Unknown
from serving.schemas import RegimeState

NOW = 1_763_000_000


class _Client:
    def __init__(self, answers: dict[str, object]):
        self.answers = answers
        self.asked: list[str | None] = []

    async def regime(self, pair: str | None = None) -> object:
        self.asked.append(pair)
        return self.answers.get(pair, [])


def _state(pair: str, color: str, age_s: int = 600) -> list[RegimeState]:
    return [
        RegimeState(
            pair=pair, color=color, volatility_1h=0.4, trend="neutral", confidence=0.8,
            as_of=NOW - age_s, model="vanta_regime:x",
        )
    ]  # fmt: skip


async def test_colors_map_onto_the_guard_and_no_answer_is_unknown() -> None:
    client = _Client(
        {
            "BTC/USD": _state("BTC/USD", "red"),
            "ETH/USD": _state("ETH/USD", "yellow"),
            "SOL/USD": Unknown("ConnectError"),
        }
    )
    source = ServiceRegime(client, builtin_catalogue(), max_age_s=3 * 3600, clock=lambda: NOW)  # type: ignore[arg-type]
    assert await source.regime(1) == "red"  # BTC/USD
    assert await source.regime(0) == "green"  # ETH/USD is yellow: not red
    assert await source.regime(2) is None  # the service could not answer
    assert await source.regime(99) is None  # a pair the catalogue does not know: not even asked
    assert client.asked == ["BTC/USD", "ETH/USD", "SOL/USD"]
    client.answers["BTC/USD"] = _state("BTC/USD", "green", age_s=4 * 3600)
    assert await source.regime(1) is None  # prices stopped arriving: too old to act on
    client.answers["BTC/USD"] = []
    assert await source.regime(1) is None  # no regime for the pair yet
