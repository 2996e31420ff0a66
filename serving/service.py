"""The BentoML service: the analyzer and the regime model from the model store, over HTTP.

One `@bentoml.service` class, typed requests and responses (`serving.schemas`), no training code.
Every answer is read from `ServingState`, which a background task keeps current (models hot
reloaded from the store, features from PostgreSQL cached in Redis, regimes from live prices).

Routes (POST, JSON): /score (adaptive batching), /trader, /leaderboard, /regime, /opportunities,
/health; BentoML's own /livez and /readyz (ready once the traders are loaded) and /metrics
(BentoML's request metrics followed by Vanta's registry).

The models are referenced by tag at class level, `name:latest`, and resolved at run time rather
than pinned with `bentoml.models.BentoModel` when the class loads: a version registered while the
service runs must be picked up without a restart.

Run it with `vanta serve [--port]`, which sets BENTOML_HOME (VANTA_HOME/bentoml) before BentoML is
imported; the same is done here for `bentoml serve serving.service:Vanta` run by hand.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from infra.settings import get_settings
from serving import registry

registry.configure(get_settings().vanta_home)  # before bentoml is imported: it reads BENTOML_HOME once

import bentoml  # noqa: E402
from bentoml.exceptions import NotFound, ServiceUnavailable  # noqa: E402
from pydantic import Field  # noqa: E402

from serving.schemas import (  # noqa: E402
    Health,
    LeaderboardPage,
    LeaderboardSort,
    Opportunity,
    RegimeState,
    ScoreItem,
    TraderCard,
    TraderScore,
)

if TYPE_CHECKING:
    from serving.state import ServingState

log = logging.getLogger("vanta.serving")


@bentoml.service(
    name="vanta",
    workers=1,
    traffic={"timeout": 60, "max_concurrency": 1024},
    logging={"access": {"enabled": False}},  # per-request lines cost latency; /metrics counts requests
)
class Vanta:
    # research.pipeline's ANALYZER_MODEL and REGIME_MODEL, spelled out: the server's supervisor
    # process imports this module too, and should not import scikit-learn and LightGBM to do so.
    analyzer_tag = "vanta_analyzer:latest"
    regime_tag = "vanta_regime:latest"

    def __init__(self) -> None:
        self.state: ServingState | None = None
        self._stop = asyncio.Event()
        self._refresher: asyncio.Task[None] | None = None
        self._closers: list[object] = []

    @bentoml.on_startup
    async def start(self) -> None:
        """Connect to PostgreSQL and Redis and start the refresher; readiness waits for its first round."""
        from data.pairs import load_catalogue
        from infra import bus, db, embedded
        from infra.logs import configure_logging
        from serving.state import ServingState

        settings = get_settings()
        configure_logging(settings.log_level, settings.secret_values())  # JSON lines, secrets masked
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
        pool = await db.create_pool(embedded.database_url(settings), min_size=1, max_size=8)
        redis = bus.connect(embedded.redis_url(settings))
        self._closers = [pool, redis]
        catalogue = load_catalogue(settings.shared_data_dir / "avantis" / "trading_snapshot.json")
        self.state = ServingState(pool, redis, catalogue, cache_ttl_s=settings.serving_cache_ttl_s)
        self._refresher = asyncio.create_task(self.state.run(self._stop))

    @bentoml.on_shutdown
    async def stop(self) -> None:
        self._stop.set()
        if self._refresher is not None:
            await asyncio.wait([self._refresher], timeout=10)
        pool, redis = self._closers or (None, None)
        if redis is not None:
            await redis.aclose()  # type: ignore[attr-defined]
        if pool is not None:
            await pool.close()  # type: ignore[attr-defined]

    async def __is_ready__(self) -> bool:
        return self.state is not None and self.state.ready.is_set()

    def __metrics__(self, content: str) -> str:
        from prometheus_client import generate_latest

        from infra.metrics import REGISTRY

        return content + generate_latest(REGISTRY).decode()

    def _state(self) -> ServingState:
        if self.state is None:
            raise ServiceUnavailable("starting")
        return self.state

    @staticmethod
    def _unavailable(exc: Exception) -> ServiceUnavailable:
        return ServiceUnavailable(str(exc))

    @bentoml.api(batchable=True, max_batch_size=20_000, max_latency_ms=200)
    async def score(self, items: list[ScoreItem]) -> list[TraderScore]:
        """Score, 7-day win probability, anomaly and archetype of each trader (address or feature row)."""
        from serving.state import NotReady

        state = self._state()
        try:
            if all(it.features is None for it in items):
                return state.scores(items)
            return await asyncio.to_thread(state.scores, items)
        except NotReady as exc:
            raise self._unavailable(exc) from None

    @bentoml.api
    async def trader(self, address: str) -> TraderCard:
        """One trader's card: stats, PSR/DSR/MinTRL, forecast, flags with reasons, archetype, equity curve."""
        from serving.state import NotReady

        try:
            card = await self._state().card(address)
        except NotReady as exc:
            raise self._unavailable(exc) from None
        if card is None:
            raise NotFound(f"no closed trade of {address} in the data")
        return card

    @bentoml.api
    async def leaderboard(
        self,
        page: int = Field(1, ge=1),
        page_size: int = Field(20, ge=1, le=200),
        sort: LeaderboardSort = "score",
        eligible_only: bool = True,
        min_trades: int = Field(0, ge=0),
        archetype: str | None = None,
        hide_flagged: bool = False,
    ) -> LeaderboardPage:
        """The AI leaderboard: by copyability score (or PnL, PSR), PSR/DSR/MinTRL beside each rank."""
        from serving.state import NotReady

        try:
            return self._state().leaderboard(
                page=page,
                page_size=page_size,
                sort=sort,
                eligible_only=eligible_only,
                min_trades=min_trades,
                archetype=archetype,
                hide_flagged=hide_flagged,
            )
        except NotReady as exc:
            raise self._unavailable(exc) from None

    @bentoml.api
    async def regime(self, pair: str | None = None) -> list[RegimeState]:
        """The current regime of one pair or of every pair with enough prices (empty: no answer yet)."""
        from serving.state import NotReady

        try:
            return self._state().regime(pair)
        except NotReady as exc:
            raise self._unavailable(exc) from None

    @bentoml.api
    async def opportunities(
        self, limit: int = Field(10, ge=1, le=200), min_p_win: float = Field(0.55, ge=0, le=1)
    ) -> list[Opportunity]:
        """Eligible, unflagged leaders with a good 7-day forecast, in their pairs whose regime is not red."""
        from serving.state import NotReady

        try:
            return self._state().opportunities(limit=limit, min_p_win=min_p_win)
        except NotReady as exc:
            raise self._unavailable(exc) from None

    @bentoml.api
    async def health(self) -> Health:
        """Models loaded (versions), age of the data, problems in words."""
        if self.state is None:
            return Health(
                ready=False,
                models={},
                data_as_of=None,
                data_age_s=None,
                features_computed_at=None,
                regime_as_of=None,
                traders=0,
                problems=["starting"],
            )
        return self.state.health()


# BentoML 1.4 finds the media type of an API returning a list by rebuilding that list's JSON schema
# on every response (3 ms of CPU a call, most of a regime answer); these answer JSON, said once.
for _name in ("score", "regime", "opportunities"):
    Vanta.apis[_name].output_spec.media_type = "application/json"
