"""What the service answers from, kept current in the background and swapped whole.

- Models: the store's latest `vanta_analyzer` and `vanta_regime` are polled every `model_poll_s`;
  a new version is loaded in a thread and replaces the old one in one assignment, so requests in
  flight finish on the model they started with and none is dropped (hot reload).
- Traders: when the data changes (events stored, stats rewritten) or the analyzer changes, the
  population is rebuilt in a thread from PostgreSQL. Features are cached in Redis for
  `cache_ttl_s`, keyed by the data version, so a restarted or second service reuses them.
- Regimes: recomputed when a newer price arrives or the regime model changes.

A refresh that fails keeps the last good state and says why in `problems`; readiness needs one
population built (the models may be missing: scores then come from the skill statistics alone,
and regimes are unknown — both stated in `health`).
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg
import polars as pl
import redis.asyncio as aioredis

from data.pairs import Pair
from data.prices import price_history, price_version
from data.store import load_events
from infra.bus import Cache
from infra.logs import log_fields
from infra.metrics import counter, gauge, histogram
from research.pipeline import ANALYZER_MODEL, REGIME_MODEL
from serving import population as P
from serving.population import (
    Model,
    Population,
    build_population,
    data_version,
    equity_curve,
    event_frame_from_csv,
    load_event_csv,
    load_stats,
    population_from_features,
    stats_row,
    trader_card,
)
from serving.regimes import BAR_SECONDS, LOOKBACK_SECONDS, current_regimes
from serving.schemas import (
    Health,
    LeaderboardPage,
    LeaderboardSort,
    Opportunity,
    RegimeState,
    ScoreItem,
    TraderCard,
    TraderScore,
)

log = logging.getLogger("vanta.serving")


MODEL_LOADED = gauge(
    "vanta_serving_model_loaded", "1 for the model version being served", ("name", "version")
)
MODEL_RELOADS = counter("vanta_serving_model_reloads_total", "New model versions picked up", ("name",))
DATA_AGE = gauge("vanta_serving_data_age_seconds", "Seconds since the latest event the features saw")
REFRESH_FAILURES = counter("vanta_serving_refresh_failures_total", "Failed refreshes (state kept)", ("part",))
REFRESH_SECONDS = histogram(
    "vanta_serving_refresh_seconds",
    "Time to rebuild a part of the state",
    ("part",),
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
CACHE = counter("vanta_serving_cache_total", "Redis cache lookups", ("kind", "outcome"))

Loader = Callable[[str], Model | None]
CARDS_IN_MEMORY = 4096


def load_latest_model(name: str) -> Model | None:
    """The store's newest version of `name` (serving.registry), or None when none is registered."""
    from serving import registry

    found = registry.load_latest(name)
    return Model(found.name, found.tag, found.obj) if found else None


def latest_tag(name: str) -> str | None:
    """The tag the store's `latest` points at, without loading the model (a cheap poll)."""
    import bentoml

    try:
        return str(bentoml.models.get(f"{name}:latest").tag)
    except bentoml.exceptions.NotFound:
        return None


def _frame_to_text(frame: pl.DataFrame) -> str:
    buffer = io.BytesIO()
    frame.write_ipc(buffer, compression="zstd")
    return base64.b64encode(buffer.getvalue()).decode()


def _frame_from_text(text: str) -> pl.DataFrame:
    return pl.read_ipc(io.BytesIO(base64.b64decode(text)))


class NotReady(RuntimeError):
    """The state cannot answer this yet (traders loading, no regime model): the service says 503."""


class ServingState:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: aioredis.Redis | None,
        catalogue: Mapping[int, Pair],
        *,
        cache_ttl_s: float = 30.0,
        model_poll_s: float = 2.0,
        stats_window_days: int = 30,
        load_model: Loader = load_latest_model,
        poll_tag: Callable[[str], str | None] = latest_tag,
    ):
        self.pool = pool
        self.cache = Cache(redis, "serving") if redis is not None else None
        self.catalogue = catalogue
        self.cache_ttl_s = cache_ttl_s
        self.model_poll_s = model_poll_s
        self.stats_window_days = stats_window_days
        self._load_model = load_model
        self._poll_tag = poll_tag
        self.models: dict[str, Model] = {}
        self.population: Population | None = None
        self.regimes: dict[str, RegimeState] = {}
        self.problems: dict[str, str] = {}
        self._price_version: tuple[str, str | None] | None = None
        self._data_checked = 0.0
        self._cards: OrderedDict[str, TraderCard] = OrderedDict()
        self.ready = asyncio.Event()

    # --- reading ---------------------------------------------------------------------------------

    @property
    def analyzer(self) -> Model | None:
        return self.models.get(ANALYZER_MODEL)

    def model_versions(self) -> dict[str, str]:
        return {name: m.tag for name, m in sorted(self.models.items())}

    def health(self) -> Health:
        pop = self.population
        problems = list(self.problems.values())
        if ANALYZER_MODEL not in self.models:
            problems.append(
                "no analyzer registered: scores come from the skill statistics alone (run vanta train)"
            )
        if REGIME_MODEL not in self.models:
            problems.append("no regime model registered: regimes are unknown (run vanta train)")
        latest = pop.latest_event if pop else None
        return Health(
            ready=self.ready.is_set(),
            models=self.model_versions(),
            data_as_of=latest,
            data_age_s=round(time.time() - latest, 3) if latest is not None else None,
            features_computed_at=int(pop.computed_at) if pop else None,
            regime_as_of=max((r.as_of for r in self.regimes.values()), default=None),
            traders=pop.features.height if pop else 0,
            problems=problems,
        )

    def _population(self) -> Population:
        if self.population is None:
            raise NotReady("the traders are still loading")
        return self.population

    def scores(self, items: list[ScoreItem]) -> list[TraderScore]:
        return P.score_items(self._population(), items, self.analyzer)

    def leaderboard(
        self,
        *,
        page: int,
        page_size: int,
        sort: LeaderboardSort,
        eligible_only: bool,
        min_trades: int,
        archetype: str | None,
        hide_flagged: bool,
    ) -> LeaderboardPage:
        return P.leaderboard_page(
            self._population(),
            page=page,
            page_size=page_size,
            sort=sort,
            eligible_only=eligible_only,
            min_trades=min_trades,
            archetype=archetype,
            hide_flagged=hide_flagged,
        )

    def regime(self, pair: str | None) -> list[RegimeState]:
        """The pair's regime (empty when it has none yet), or every pair's."""
        self._population()
        if REGIME_MODEL not in self.models:
            raise NotReady("no regime model registered")
        if pair is not None:
            return [self.regimes[pair]] if pair in self.regimes else []
        return list(self.regimes.values())

    def opportunities(self, *, limit: int, min_p_win: float) -> list[Opportunity]:
        return P.opportunities(self._population(), self.regimes, limit=limit, min_p_win=min_p_win)

    async def card(self, trader: str) -> TraderCard | None:
        pop = self._population()
        trader = trader.lower()
        if trader not in pop.index:
            return None
        key = f"card:{pop.data_version}:{pop.analyzer_tag}:{trader}"
        if (card := self._cards.get(key)) is not None:
            self._cards.move_to_end(key)
            return card
        if self.cache is not None:
            cached = await self.cache.get(key)
            CACHE.labels("card", "hit" if cached is not None else "miss").inc()
            if cached is not None:
                return self._remember(key, TraderCard.model_validate(cached))
        async with self.pool.acquire() as conn:
            row = await stats_row(conn, trader, pop.stats_window_days) if pop.stats_window_days else None
            events = await load_events(conn, trader=trader)
        card = trader_card(pop, trader, row, equity_curve(events), self.model_versions())
        if card is not None and self.cache is not None:
            await self.cache.set(key, card.model_dump(mode="json"), self.cache_ttl_s)
        return self._remember(key, card) if card is not None else None

    def _remember(self, key: str, card: TraderCard) -> TraderCard:
        """In-process copy of recent cards (the key names the data and model versions, so a stale
        card is never served): a hot card costs neither a Redis round trip nor parsing."""
        self._cards[key] = card
        while len(self._cards) > CARDS_IN_MEMORY:
            self._cards.popitem(last=False)
        return card

    # --- refreshing ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.refresh()
            try:
                await asyncio.wait_for(stop.wait(), self.model_poll_s)
            except TimeoutError:
                pass

    async def refresh(self, *, force: bool = False) -> None:
        """One round: models, then traders and regimes if anything they depend on changed."""
        changed = await self._guarded("models", self.refresh_models)
        due = force or changed or time.monotonic() - self._data_checked >= self.cache_ttl_s
        if due or self.population is None:
            self._data_checked = time.monotonic()
            await self._guarded("population", lambda: self.refresh_population(force=bool(changed)))
            await self._guarded("regimes", lambda: self.refresh_regimes(force=bool(changed)))
        if self.population is not None:
            self.ready.set()
            if self.population.latest_event is not None:
                DATA_AGE.set(time.time() - self.population.latest_event)

    async def _guarded(self, part: str, work: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            result = await work()
        except Exception as exc:
            REFRESH_FAILURES.labels(part).inc()
            self.problems[part] = (
                f"{part} refresh failed, serving the last good state: {type(exc).__name__}: {exc}"
            )
            log.exception("serving refresh failed", extra=log_fields(part=part))
            return None
        self.problems.pop(part, None)
        REFRESH_SECONDS.labels(part).observe(time.monotonic() - started)
        return result

    async def refresh_models(self) -> bool:
        """Load any model whose `latest` moved; True when one did."""
        changed = False
        for name in (ANALYZER_MODEL, REGIME_MODEL):
            tag = await asyncio.to_thread(self._poll_tag, name)
            current = self.models.get(name)
            if tag is None or (current is not None and current.tag == tag):
                continue
            model = await asyncio.to_thread(self._load_model, name)
            if model is None:
                continue
            self.models = {**self.models, name: model}  # one assignment: readers see old or new
            if current is not None:
                MODEL_LOADED.labels(name, current.tag).set(0)
                MODEL_RELOADS.labels(name).inc()
            MODEL_LOADED.labels(name, model.tag).set(1)
            log.info(
                "serving model loaded",
                extra=log_fields(model=model.tag, replaced=current.tag if current else None),
            )
            changed = True
        return changed

    async def refresh_population(self, *, force: bool = False) -> None:
        async with self.pool.acquire() as conn:
            version = await data_version(conn)
            pop = self.population
            analyzer = self.analyzer
            same_model = pop is not None and pop.analyzer_tag == (analyzer.tag if analyzer else None)
            if pop is not None and pop.data_version == version and same_model and not force:
                return
            stats = await load_stats(conn, self.stats_window_days)
            if pop is not None and pop.data_version == version:
                # Only the model changed: the features stand, the scores are redone.
                new = await asyncio.to_thread(
                    population_from_features,
                    pop.features,
                    pop.rows.select("trader", "pairs"),
                    stats,
                    analyzer,
                    as_of=pop.as_of,
                    data_version=version,
                )
            else:
                new = await self._build(conn, version, stats, analyzer)
        self.population = new
        log.info(
            "serving population ready",
            extra=log_fields(traders=new.features.height, as_of=new.as_of, analyzer=new.analyzer_tag),
        )

    async def _build(
        self, conn: asyncpg.Connection, version: str, stats: pl.DataFrame, analyzer: Model | None
    ) -> Population:
        key = f"features:{version}"
        cached = await self.cache.get(key) if self.cache is not None else None
        if self.cache is not None:
            CACHE.labels("features", "hit" if cached is not None else "miss").inc()
        if cached is not None:
            features, pairs = _frame_from_text(cached["features"]), _frame_from_text(cached["pairs"])
            return await asyncio.to_thread(
                population_from_features,
                features,
                pairs,
                stats,
                analyzer,
                as_of=int(cached["as_of"]),
                data_version=version,
            )
        csv = await load_event_csv(conn)

        def compute() -> Population:
            events = event_frame_from_csv(csv)
            return build_population(events, stats, analyzer, self.catalogue, data_version=version)

        new = await asyncio.to_thread(compute)
        if self.cache is not None:
            pairs = new.rows.select("trader", "pairs")
            await self.cache.set(
                key,
                {
                    "as_of": new.as_of,
                    "features": _frame_to_text(new.features),
                    "pairs": _frame_to_text(pairs),
                },
                self.cache_ttl_s,
            )
        return new

    async def refresh_regimes(self, *, force: bool = False) -> None:
        model = self.models.get(REGIME_MODEL)
        if model is None:
            self.regimes = {}
            return
        async with self.pool.acquire() as conn:
            prices = await price_version(conn)
            stamp = (prices, model.tag)
            if stamp == self._price_version and not force:
                return
            latest = await conn.fetchval(
                "SELECT extract(epoch FROM greatest((SELECT max(ts) FROM trade_events), "
                "(SELECT max(ts) FROM market_prices)))::bigint"
            )
            if latest is None:
                self.regimes, self._price_version = {}, stamp
                return
            history = await price_history(
                conn, self.catalogue, since=latest - LOOKBACK_SECONDS, until=latest, bucket_s=BAR_SECONDS
            )
        self.regimes = await asyncio.to_thread(current_regimes, model, history)
        self._price_version = stamp
