"""The real BentoML service over HTTP, through the typed client, on a simulated snapshot: every
endpoint, a trader card equal to the research functions on the same data, a model registered
while requests flow (none fails), and the copy engine's regime guard across a service crash."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from decimal import Decimal

import asyncpg
import httpx
import polars as pl
import pytest

from data.events import EventKind
from data.pairs import builtin_catalogue
from data.store import load_events
from execution.copy.engine import CopyEngine, EngineConfig
from execution.copy.model import FollowConfig, SizingMode
from execution.copy.regime_service import ServiceRegime
from execution.venues.paper import DictPriceFeed, PaperVenue
from infra import db
from research import anomaly, regime
from research.analyzer import score_frame
from research.ledger import PositionLedger
from research.pipeline import ANALYZER_MODEL, REGIME_MODEL, Tables
from research.stats import closes_frame, trader_stats
from serving.client import ServingClient, Unknown
from serving.jobs import refresh, retrain, retrain_alert
from serving.population import Model
from serving.process import ServiceProcess, register_models, vanta_command
from serving.regimes import LOOKBACK_SECONDS, bars_15m
from serving.scheduler import Job, Scheduler
from serving.state import ServingState
from serving.training import load_event_frame
from tests.execution.copy_fixtures import add_followers, leader_event
from tests.serving.conftest import ELIGIBILITY, Snapshot, Store, fit_models
from tests.waiting import until

pytestmark = pytest.mark.integration

CATALOGUE = builtin_catalogue()


async def _research(snapshot: Snapshot, store: Store) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(features, analyzer rows, 30-day stats) computed by the research functions from what
    PostgreSQL holds: the numbers the service must reproduce."""
    conn = await asyncpg.connect(snapshot.db_url)
    try:
        events = await load_event_frame(conn, None)
        ledger_events = await load_events(conn)
    finally:
        await conn.close()
    features = Tables.from_events(events).features_at(snapshot.as_of)
    rows = score_frame(features, store.analyzer)
    closes = PositionLedger().apply_all(ledger_events)
    stats = trader_stats(
        closes_frame(closes), as_of=snapshot.stats_as_of, window_days=30, eligibility=ELIGIBILITY
    )
    return features, rows, stats


async def test_every_endpoint_answers_what_the_research_functions_compute(
    service: ServiceProcess, snapshot: Snapshot, store: Store
) -> None:
    features, rows, stats = await _research(snapshot, store)
    eligible = set(stats.filter("eligible")["trader"].to_list())
    async with ServingClient(service.url, timeout_s=30) as client:
        health = await client.health()
        assert not isinstance(health, Unknown) and health.ready
        assert health.models == {
            "vanta_analyzer": store.tags["vanta_analyzer"],
            "vanta_regime": store.tags["vanta_regime"],
        }
        assert health.traders == features.height and health.data_as_of == snapshot.as_of - 1

        # The card of the best eligible trader, field by field.
        top = rows.filter(pl.col("trader").is_in(list(eligible))).row(0, named=True)
        card = await client.trader(top["trader"].upper().replace("0X", "0x"))  # addresses in any case
        assert card is not None and not isinstance(card, Unknown)
        feat = features.filter(trader=top["trader"]).row(0, named=True)
        stat = stats.filter(trader=top["trader"]).row(0, named=True)
        assert (card.rank, card.archetype, card.anomaly) == (top["rank"], top["archetype"], top["anomaly"])
        assert card.score == pytest.approx(top["score"], rel=1e-12)
        assert card.forecast.p_win_7d == pytest.approx(top["p_win_7d"], rel=1e-12)
        assert card.forecast.expected_pnl_7d_usdc == pytest.approx(top["expected_pnl_7d_usdc"], rel=1e-12)
        assert card.anomaly_score == pytest.approx(top["anomaly_score"], rel=1e-12)
        for name in ("psr", "dsr", "min_trl_days", "bootstrap_p"):
            assert getattr(card.skill, name) == pytest.approx(feat[name], rel=1e-12), name
        assert [(f.code, f.reason) for f in card.flags] == [(f, anomaly.REASONS[f]) for f in top["flags"]]
        assert card.stats is not None and card.stats.window_days == 30 and card.stats.eligible
        assert (card.stats.trades, card.stats.net_pnl_usdc, card.stats.volume_usdc) == (
            stat["trades"],
            stat["net_pnl_usdc"],
            stat["volume_usdc"],
        )
        assert card.stats.max_drawdown_usdc == stat["max_drawdown_usdc"]
        assert card.stats.sharpe == pytest.approx(stat["sharpe"], rel=1e-9)
        own = [c for c in PositionLedger().apply_all(await _events_of(snapshot, top["trader"]))]
        assert card.equity_curve[-1].equity_usdc == sum(c.realized_pnl_usdc for c in own)  # exact
        assert len(card.equity_curve) == min(len(own), 500)
        assert await client.trader("0x" + "00" * 20) is None

        # Leaderboard: eligible leaders in the analyzer's order; sorts, filters, pages.
        first = await client.leaderboard(page_size=10)
        assert not isinstance(first, Unknown)
        expected_order = rows.filter(pl.col("trader").is_in(list(eligible)))["trader"].to_list()
        assert first.total == len(expected_order)
        assert [r.trader for r in first.rows] == expected_order[:10]
        second = await client.leaderboard(page=2, page_size=10)
        assert not isinstance(second, Unknown)
        assert [r.trader for r in second.rows] == expected_order[10:20] and second.rows[0].rank == 11
        by_pnl = await client.leaderboard(sort="pnl", eligible_only=False, page_size=200)
        assert not isinstance(by_pnl, Unknown)
        pnls = [r.net_pnl_usdc for r in by_pnl.rows]
        assert pnls == sorted(pnls, reverse=True) and by_pnl.total == features.height
        by_psr = await client.leaderboard(sort="psr", page_size=50)
        assert not isinstance(by_psr, Unknown)
        psrs = [r.psr for r in by_psr.rows if r.psr is not None]
        assert psrs == sorted(psrs, reverse=True)
        clean = await client.leaderboard(eligible_only=False, hide_flagged=True, min_trades=50, page_size=200)
        assert not isinstance(clean, Unknown)
        assert clean.rows and all(not r.flagged and r.trades >= 50 for r in clean.rows)
        assert clean.total < features.height
        arche = top["archetype"]
        same = await client.leaderboard(eligible_only=False, archetype=arche, page_size=200)
        assert not isinstance(same, Unknown) and {r.archetype for r in same.rows} == {arche}

        # Scores in the order asked, by address or by feature row; an unknown trader is said to be.
        second_best = expected_order[1]
        scores = await client.score([top["trader"], "0x" + "11" * 20, second_best])
        assert not isinstance(scores, Unknown)
        assert [s.known for s in scores] == [True, False, True]
        assert scores[0].score == pytest.approx(top["score"], rel=1e-12) and scores[1].score is None
        from serving.schemas import ScoreItem

        row = {k: v for k, v in feat.items() if k != "trader"}
        [by_row] = await client.score([ScoreItem(trader="mine", features=row)])  # type: ignore[misc]
        assert by_row.p_win_7d == pytest.approx(top["p_win_7d"], rel=1e-9) and by_row.flags == top["flags"]

        # Regime per pair: the research regime on the fills' 15-minute closes.
        regimes = await client.regime()
        assert not isinstance(regimes, Unknown)
        assert {r.pair for r in regimes} == {"BTC/USD", "ETH/USD"}
        for state in regimes:
            expected = _research_regime(snapshot.events, state.pair, store)
            assert (state.color, state.trend, state.as_of) == (
                expected["color"],
                expected["trend"],
                expected["ts"],
            )
            assert state.confidence == pytest.approx(expected["confidence"], rel=1e-9)
            assert state.model == store.tags["vanta_regime"]
        [btc] = await client.regime("BTC/USD")  # type: ignore[misc]
        assert btc.pair == "BTC/USD"
        assert await client.regime("DOGE/USD") == []

        # Opportunities: eligible, unflagged, good forecast, in a pair that is not red.
        opportunities = await client.opportunities(limit=50, min_p_win=0.0)
        assert not isinstance(opportunities, Unknown) and opportunities
        colors = {r.pair: r.color for r in regimes}
        flagged = set(rows.filter(pl.col("anomaly") | (pl.col("flags").list.len() > 0))["trader"].to_list())
        for o in opportunities:
            assert o.trader in eligible and o.trader not in flagged
            assert colors[o.pair] == o.regime != "red"

    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{service.url}/metrics")).text
        assert "vanta_serving_model_loaded" in metrics and "bentoml_service_request_total" in metrics
        assert (await http.get(f"{service.url}/livez")).status_code == 200


async def _events_of(snapshot: Snapshot, trader: str) -> list:
    conn = await asyncpg.connect(snapshot.db_url)
    try:
        return await load_events(conn, trader=trader)
    finally:
        await conn.close()


def _research_regime(events: pl.DataFrame, pair: str, store: Store) -> dict:
    """The research regime of the pair's last hour, on the window of prices the service reads."""
    index = {p.symbol: i for i, p in CATALOGUE.items()}[pair]
    since = int(events["ts"].max()) - LOOKBACK_SECONDS
    fills = (
        events.filter(
            (pl.col("pair_index") == index) & pl.col("price_e10").is_not_null() & (pl.col("ts") > since)
        )
        .with_columns(bucket=pl.col("ts") // 900, late=pl.col("kind") != "open")
        .sort(["ts", "late", "event_id"])
        .group_by("bucket", maintain_order=True)
        .agg(ts=pl.col("ts").last(), price=pl.col("price_e10").last() / 1e10)
        .select(pair=pl.lit(pair), ts="ts", price="price", source=pl.lit("fill"))
    )
    return store.regime.classify(regime.hourly_observations(bars_15m(fills, pair))).row(-1, named=True)


async def test_a_model_registered_while_requests_flow_is_picked_up_and_no_request_fails(
    service: ServiceProcess, snapshot: Snapshot, store: Store
) -> None:
    failures: list[str] = []
    answered = 0
    stop = asyncio.Event()
    async with ServingClient(service.url, timeout_s=30, attempts=1) as client:
        top = await client.leaderboard(eligible_only=False, page_size=20)
        assert not isinstance(top, Unknown)
        traders = [r.trader for r in top.rows]

        async def hammer(k: int) -> None:
            nonlocal answered
            while not stop.is_set():
                calls = (
                    client.trader(traders[k % len(traders)]),
                    client.leaderboard(page_size=20),
                    client.score(traders),
                    client.regime(),
                )
                for answer in await asyncio.gather(*calls, return_exceptions=True):
                    if isinstance(answer, (Unknown, BaseException)):
                        failures.append(repr(answer))
                    answered += 1

        workers = [asyncio.create_task(hammer(k)) for k in range(8)]
        await until(lambda: answered >= 20, what="requests flowing before the new model")
        # A new analyzer version: refitted with another seed (other scores), registered from outside.
        refit, _ = fit_models(snapshot.events, snapshot.as_of, seed=1)
        new_tag = register_models(store.home, {ANALYZER_MODEL: (refit, {"kind": "analyzer", "seed": 1})})[
            ANALYZER_MODEL
        ]

        async def serving_new() -> bool:
            health = await client.health()
            return not isinstance(health, Unknown) and health.models.get(ANALYZER_MODEL) == new_tag

        await until(serving_new, what=f"the service to serve {new_tag}", timeout_s=120)
        before = answered
        await until(lambda: answered >= before + 40, what="requests answered after the reload")
        stop.set()
        await asyncio.gather(*workers)
        assert failures == [], failures[:5]
        _, rows, _ = await _research(snapshot, Store(store.home, refit, store.regime, store.tags))
        after = await client.score([rows["trader"][0]])
        assert not isinstance(after, Unknown)
        assert after[0].score == pytest.approx(rows["score"][0], rel=1e-12)  # the new model's scores
    store.analyzer = refit
    store.tags[ANALYZER_MODEL] = new_tag


async def test_the_refresh_writes_regimes_and_analytics_and_the_rankings_use_the_ai_score(
    service: ServiceProcess, snapshot: Snapshot, store: Store
) -> None:
    """`vanta scheduler`'s refresh (in process, on the models just served) fills market_regime_data
    and trader_analytics; top_traders_view and `vanta stats` then rank by the AI score."""
    _, rows, stats = await _research(snapshot, store)
    pool = await db.create_pool(snapshot.db_url, max_size=4)
    try:
        models = {
            ANALYZER_MODEL: Model(ANALYZER_MODEL, store.tags[ANALYZER_MODEL], store.analyzer),
            REGIME_MODEL: Model(REGIME_MODEL, store.tags[REGIME_MODEL], store.regime),
        }
        state = ServingState(
            pool, None, CATALOGUE, load_model=models.get, poll_tag=lambda name: models[name].tag
        )
        summary = await refresh(state, pool)
        again = await refresh(state, pool)  # the same hour and as-of: rewritten, not duplicated
        assert summary["traders"] == again["traders"] == rows.height and again["regime_rows"] == 0
        written = await pool.fetch(
            "SELECT trader, model_name, skill_score, archetype, (features->>'rank')::int AS rank FROM trader_analytics"
        )
        assert len(written) == rows.height
        by_trader = {r["trader"]: r for r in written}
        for r in rows.head(20).iter_rows(named=True):
            w = by_trader[r["trader"]]
            assert (w["model_name"], w["rank"], w["archetype"]) == (ANALYZER_MODEL, r["rank"], r["archetype"])
            assert w["skill_score"] == pytest.approx(r["score"], rel=1e-12)
        async with ServingClient(service.url, timeout_s=30) as client:
            served = await client.regime()
        assert not isinstance(served, Unknown)
        regimes = await pool.fetch(
            "SELECT pair, ts, regime, model_version, probabilities FROM market_regime_data"
        )
        assert {(r["pair"], int(r["ts"].timestamp()), r["regime"]) for r in regimes} == {
            (s.pair, s.as_of, s.color) for s in served
        }
        assert {r["model_version"] for r in regimes} == {store.tags[REGIME_MODEL].split(":")[1]}

        # The view: eligible leaders by AI score, flagged ones last, PSR/DSR beside.
        view = await pool.fetch("SELECT trader, ai_score, flagged, psr, dsr FROM top_traders_view")
        eligible = stats.filter("eligible")
        assert len(view) == eligible.height
        flagged = {r["trader"] for r in rows.filter(pl.col("flags").list.len() > 0).iter_rows(named=True)}
        keys = [(r["flagged"], -r["ai_score"]) for r in view]
        assert keys == sorted(keys) and {r["trader"] for r in view if r["flagged"]} == flagged & set(
            eligible["trader"]
        )
    finally:
        await pool.close()

    # `vanta stats` ranks its candidates the same way (recomputed at the snapshot's time).
    done = subprocess.run(
        [*vanta_command("stats", "--json", "--all", "--limit", "15", "--as-of", str(snapshot.stats_as_of))],
        env={**os.environ, "DATABASE_URL": snapshot.db_url},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-500:]
    candidates = json.loads(done.stdout)["candidates"]
    expected = rows.sort([pl.col("flags").list.len() > 0, "score"], descending=[False, True])[
        "trader"
    ].to_list()
    assert [c["trader"] for c in candidates] == expected[:15]
    assert all(c["ai_score"] is not None and c["dsr"] is not None for c in candidates)


async def test_a_failed_retraining_alerts_the_admins_and_the_service_keeps_its_models(
    service: ServiceProcess, snapshot: Snapshot, store: Store
) -> None:
    """The scheduler's retrain job running the real `vanta train`, which fails on a bad as-of."""
    pool = await db.create_pool(snapshot.db_url, max_size=2)
    try:
        await pool.execute("INSERT INTO users (telegram_user_id, is_admin) VALUES (424242, true)")
        env = {**os.environ, "DATABASE_URL": snapshot.db_url, "BENTOML_HOME": str(store.home)}

        async def retraining() -> dict[str, object]:
            return dict(await retrain(timeout_s=300, steps=(("train", "--as-of", "yesterday-ish"),), env=env))

        job = Job("retrain", 86_400, retraining, alert=retrain_alert(lambda: sorted(store.tags.values())))
        assert not await Scheduler(pool, []).run_job(job)
        [note] = await pool.fetch("SELECT kind, text FROM notifications")
    finally:
        await pool.close()
    assert note["kind"] == "admin_alert"
    assert (
        "vanta train: exit 2: vanta: --as-of: 'yesterday-ish' is neither ISO 8601 nor unix seconds"
        in note["text"]
    )
    assert all(tag in note["text"] for tag in store.tags.values())
    async with ServingClient(service.url, timeout_s=30) as client:
        health = await client.health()
    assert not isinstance(health, Unknown) and health.models == store.tags


async def test_the_engine_refuses_guarded_opens_while_the_service_is_down_and_copies_once_it_is_back(
    service: ServiceProcess, snapshot: Snapshot
) -> None:
    pool = await db.create_pool(snapshot.db_url, max_size=4)
    try:
        guarded = FollowConfig(SizingMode.FIXED, fixed_collateral_usdc=100_000_000, regime_guard=True)
        (follower,) = await add_followers(pool, 1, guarded)
        async with ServingClient(service.url, timeout_s=2, attempts=2, backoff_s=0.02) as client:
            states = await client.regime()
            assert not isinstance(states, Unknown)
            calm = [s for s in states if s.color != "red"]
            assert calm, "the snapshot's seed is chosen so that a pair's last hour is not red"
            pair = next(i for i, p in CATALOGUE.items() if p.symbol == calm[0].pair)
            feed = DictPriceFeed({pair: Decimal(3_000)})
            venue = PaperVenue(pool, CATALOGUE, feed, spread_bps=0)
            source = ServiceRegime(client, CATALOGUE)  # the snapshot is in the past: no age limit here
            config = EngineConfig(max_delay_ms=600_000)
            async with CopyEngine(pool, None, venue, feed, CATALOGUE, config, regime=source) as engine:

                def open_event(n: int):
                    return leader_event(EventKind.OPEN, n=n, trade_index=n, pair=pair, price="3000")

                assert await engine.handle(open_event(1)) == {"refused": 0, "filled": 1}
                service.kill()  # a crash: SIGKILL to the whole group
                assert await engine.handle(open_event(2)) == {"refused": 1}
                service.start()
                await service.wait_ready()
                assert await engine.handle(open_event(3)) == {"refused": 0, "filled": 1}
        reasons = await pool.fetch(
            "SELECT leader_event_id, state, refusal_reason FROM copy_intents WHERE profile_id = $1 ORDER BY created_at",
            follower,
        )
        assert [(r["state"], r["refusal_reason"]) for r in reasons] == [
            ("filled", None),
            ("refused", "regime_unknown"),
            ("filled", None),
        ]
    finally:
        await pool.close()
