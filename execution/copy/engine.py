"""The copy engine: leader events from the stream → intents → risk → venue → journal, exactly once.

Per leader event: every active follow of the leader gets an intent (planned, or refused with its
reason), all written in one statement before anything is sent; then the planned ones are worked
in chunks under their advisory locks (see `journal`): marked `sent`, submitted in one batch,
recorded with positions, attribution and notifications in one transaction. The stream message is
acked only after that, so a crash anywhere leaves it pending; whichever engine claims it replays
the same intents (their ids are deterministic) and resolves those already sent by asking the
venue. Several engine processes can share the consumer group.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import asyncpg
import redis.asyncio as aioredis

from data.events import EventKind, Side, TradeEvent
from data.pairs import Pair
from execution.copy import journal
from execution.copy.follows import follows_of
from execution.copy.journal import Intent, intent_id
from execution.copy.leader_equity import LeaderEquity
from execution.copy.model import CopyAction, Follow, Refusal, SizedOpen, SizingMode
from execution.copy.regime import RegimeSource
from execution.copy.risk import Facts, check_close, check_open, limits_hit
from execution.copy.sizing import close_amount, partial_close_amount
from execution.venues.base import PriceFeed, Venue, VenueOrder, VenueResult
from execution.venues.paper import DictPriceFeed
from infra.bus import EVENTS_STREAM, StreamBus
from infra.logs import log_fields
from infra.metrics import counter, histogram

log = logging.getLogger("vanta.copy")
T = TypeVar("T")

KILL_SWITCH_KEY = "copy:kill_switch"
INTENTS = counter("vanta_copy_intents_total", "Copy intents by outcome", ("outcome",))
LATENCY = histogram(
    "vanta_copy_event_seconds",
    "Leader event in to all orders submitted",
    buckets=(0.005, 0.02, 0.1, 0.5, 2, 10),
)

ACTIONS = {
    EventKind.OPEN: CopyAction.OPEN,
    EventKind.CLOSE: CopyAction.CLOSE,
    EventKind.TP: CopyAction.CLOSE,
    EventKind.SL: CopyAction.CLOSE,
    EventKind.LIQUIDATION: CopyAction.CLOSE,  # the leader was liquidated: the follower closes
    EventKind.PARTIAL_CLOSE: CopyAction.PARTIAL_CLOSE,
    EventKind.TP_SL_UPDATE: CopyAction.UPDATE_TP_SL,
}


_ATTRIBUTE = """
INSERT INTO copy_performance_attribution (profile_id, leader_address, period_start, period_end,
    copied_trades, realized_pnl_usdc, fees_usdc, slippage_cost_usdc)
VALUES ($1, $2, $3, $3, $4, $5, $6, $7)
ON CONFLICT (profile_id, leader_address, period_start) DO UPDATE SET
    copied_trades = copy_performance_attribution.copied_trades + EXCLUDED.copied_trades,
    realized_pnl_usdc = copy_performance_attribution.realized_pnl_usdc + EXCLUDED.realized_pnl_usdc,
    fees_usdc = copy_performance_attribution.fees_usdc + EXCLUDED.fees_usdc,
    slippage_cost_usdc = copy_performance_attribution.slippage_cost_usdc + EXCLUDED.slippage_cost_usdc
"""
_NOTIFY = """
INSERT INTO notifications (user_id, kind, dedupe_key, text, payload)
SELECT user_id, $2, $3, $4, $5::jsonb FROM copytrader_profiles WHERE id = $1
ON CONFLICT (dedupe_key) DO NOTHING
"""


def _payload(intent: str) -> str:
    return json.dumps({"intent_id": intent})


def _final_state(result: VenueResult, looked_up: bool) -> str:
    """An outcome learnt by asking the venue after a crash is `resolved`; one it answered is
    `filled` or `rejected`."""
    if looked_up:
        return "resolved"
    return "filled" if result.filled else "rejected"


async def _answer(what: str, pending: Awaitable[T], **fields: object) -> T | None:
    """An optional source's answer, or None (and a warning) when it fails: the risk checks then
    refuse with their `..._unknown` reason rather than guess."""
    try:
        return await pending
    except Exception as exc:
        log.warning(f"{what} unavailable", extra=log_fields(error=str(exc)[:200], **fields))
        return None


def _waits_for_open(r: asyncpg.Record) -> bool:
    return r["action"] != CopyAction.OPEN.value and r["position_ref"] is None


def _leader_sizes(event: TradeEvent) -> dict[str, int | None]:
    return {"leader_collateral_usdc": event.collateral_usdc, "leader_closed_usdc": event.size_closed_usdc}


def _usdc(micro: int) -> str:
    return f"{Decimal(micro) / 1_000_000:.6f}"


@dataclass
class EngineConfig:
    max_delay_ms: int = 500
    chunk: int = 250
    group: str = "copy-engine"
    stream: str = EVENTS_STREAM
    consumer: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    claim_idle_ms: int = 5_000
    price_seed_events: int = 2_000


class LastPriceFeed(DictPriceFeed):
    """The last traded price of each pair as seen on the event stream (leaders' fills)."""

    def observe(self, event: TradeEvent) -> None:
        if event.price is not None and event.price > 0:
            self.prices[event.pair_index] = event.price


class CopyEngine:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: aioredis.Redis | None,
        venue: Venue,
        feed: PriceFeed,
        catalogue: dict[int, Pair],
        config: EngineConfig | None = None,
        leader_equity: LeaderEquity | None = None,
        regime: RegimeSource | None = None,
    ):
        self.pool = pool
        self.redis = redis
        self.venue = venue
        self.feed = feed
        self.catalogue = catalogue
        self.config = config or EngineConfig()
        self.leader_equity = leader_equity
        self.regime = regime
        self._lock_conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> CopyEngine:
        self._lock_conn = await self.pool.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._lock_conn is not None:
            await self._lock_conn.execute("SELECT pg_advisory_unlock_all()")
            await self.pool.release(self._lock_conn)
            self._lock_conn = None

    # --- planning -----------------------------------------------------------------------------

    async def _kill_switch(self) -> bool:
        return bool(self.redis is not None and await self.redis.get(KILL_SWITCH_KEY) == "1")

    async def _facts(
        self, conn: asyncpg.Connection, follows: list[Follow], event: TradeEvent
    ) -> dict[int, Facts]:
        ids = list({f.profile.id for f in follows})
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        rows = await conn.fetch(
            """
            SELECT profile_id,
                   coalesce(sum(collateral_usdc * leverage) FILTER (WHERE status = 'open'), 0)::bigint AS exposure,
                   coalesce(sum(realized_pnl_usdc) FILTER (WHERE closed_at >= $2), 0)::bigint AS today
            FROM copy_positions WHERE profile_id = ANY($1::bigint[]) GROUP BY profile_id
            """,
            ids,
            today,
        )
        by_profile = {r["profile_id"]: (r["exposure"], r["today"]) for r in rows}
        kill = await self._kill_switch()
        now_ms = int(time.time() * 1000)
        price = self.feed.price(event.pair_index)
        opening = event.kind is EventKind.OPEN
        leader_equity = regime = None
        proportional = any(f.config.sizing_mode is SizingMode.PROPORTIONAL for f in follows)
        if opening and proportional and self.leader_equity is not None:
            leader_equity = await _answer(
                "leader equity", self.leader_equity.equity_usdc(conn, event), leader=event.trader
            )
        if opening and any(f.config.regime_guard for f in follows) and self.regime is not None:
            regime = await _answer("regime", self.regime.regime(event.pair_index), pair=event.pair_index)
        return {
            pid: Facts(
                now_ms=now_ms,
                max_delay_ms=self.config.max_delay_ms,
                kill_switch=kill,
                price=price,
                exposure_usdc=by_profile.get(pid, (0, 0))[0],
                realized_today_usdc=by_profile.get(pid, (0, 0))[1],
                leader_equity_usdc=leader_equity,
                regime=regime,
            )
            for pid in ids
        }

    def _intent(self, follow: Follow, event: TradeEvent, action: CopyAction, **kw: Any) -> Intent:
        return Intent(
            intent_id=intent_id(follow.profile.id, event.event_id, action),
            profile_id=follow.profile.id,
            follow_id=follow.id,
            leader=event.trader,
            leader_event_id=event.event_id,
            action=action,
            venue=self.venue.name,
            pair_index=event.pair_index,
            requested_price=event.price,
            leader_position_key=event.position_key,
            **kw,
        )

    async def plan(self, conn: asyncpg.Connection, event: TradeEvent) -> list[Intent]:
        action = ACTIONS.get(event.kind)
        if action is None:
            return []
        follows = await follows_of(conn, event.trader, self.venue.name)
        if not follows:
            return []
        facts = await self._facts(conn, follows, event)
        copied: dict[int, asyncpg.Record] = {}
        in_flight: set[tuple[int, str]] = set()
        if action is not CopyAction.OPEN:
            ids = [f.profile.id for f in follows]
            # Opens in flight first, positions second: an open settling in between is then seen
            # as a position, never as nothing at all.
            in_flight = await journal.opens_in_flight(conn, ids, [event.position_key])
            rows = await conn.fetch(
                "SELECT profile_id, venue_position_ref, collateral_usdc, side FROM copy_positions "
                "WHERE leader_position_key = $1 AND status = 'open' AND profile_id = ANY($2::bigint[])",
                event.position_key,
                ids,
            )
            copied = {r["profile_id"]: r for r in rows}
        intents = []
        for follow in follows:
            f = facts[follow.profile.id]
            if action is CopyAction.OPEN:
                pair = self.catalogue.get(event.pair_index)
                sized = check_open(follow, event, pair, f)
                if isinstance(sized, Refusal):
                    intents.append(self._intent(follow, event, action, refusal=sized))
                    continue
                intents.append(self._open_intent(follow, event, sized))
                continue
            position = copied.get(follow.profile.id)
            refusal = check_close(follow, f)
            if refusal is None and position is None and (follow.profile.id, event.position_key) in in_flight:
                # The copy of the open has not settled (a slow fill, a crash): this waits for it.
                intents.append(
                    self._intent(follow, event, action, tp=event.tp, sl=event.sl, **_leader_sizes(event))
                )
                continue
            if refusal is None and position is None:
                refusal = Refusal.NO_COPIED_POSITION
            # A reversed copy holds the other side: the leader's levels would be on the wrong side.
            copies_levels = follow.config.copy_tp_sl and not follow.config.reverse
            if refusal is None and action is CopyAction.UPDATE_TP_SL and not copies_levels:
                refusal = Refusal.TP_SL_NOT_COPIED
            if refusal is not None:
                intents.append(self._intent(follow, event, action, refusal=refusal))
                continue
            assert position is not None
            amount = close_amount(position["collateral_usdc"], event)
            intents.append(
                self._intent(
                    follow,
                    event,
                    action,
                    side=position["side"],
                    collateral_usdc=amount,
                    position_ref=position["venue_position_ref"],
                    tp=event.tp,
                    sl=event.sl,
                    **_leader_sizes(event),
                )
            )
        return intents

    def _open_intent(self, follow: Follow, event: TradeEvent, sized: SizedOpen) -> Intent:
        tp = sl = None
        if follow.config.copy_tp_sl and not follow.config.reverse:
            tp, sl = event.tp or None, event.sl or None
        return self._intent(
            follow,
            event,
            CopyAction.OPEN,
            side=sized.side.value,
            collateral_usdc=sized.collateral_usdc,
            leverage=sized.leverage,
            tp=tp,
            sl=sl,
        )

    # --- execution ----------------------------------------------------------------------------

    async def handle(self, event: TradeEvent) -> dict[str, int]:
        """Copy one leader event for every follower; safe to call again for the same event."""
        started = time.perf_counter()
        async with self.pool.acquire() as conn:
            intents = await self.plan(conn, event)
            if not intents:
                return {}
            async with conn.transaction():
                new = set(await journal.plan(conn, intents))
                refused = [i for i in intents if i.refusal and i.intent_id in new]
                await self._notify_refusals(conn, refused)
        for i in intents:
            if i.intent_id in new:
                INTENTS.labels(outcome=i.state).inc()
        # Every id, not only those planned now: after a crash the stored intent (planned or sent
        # before) is what counts, whatever a re-plan would decide today.
        to_work = [i.intent_id for i in intents]
        outcome: dict[str, int] = {"refused": sum(1 for i in intents if i.refusal and i.intent_id in new)}
        for start in range(0, len(to_work), self.config.chunk):
            for state, n in (await self.work(to_work[start : start + self.config.chunk])).items():
                outcome[state] = outcome.get(state, 0) + n
        LATENCY.observe(time.perf_counter() - started)
        return outcome

    async def work(self, ids: list[str]) -> dict[str, int]:
        """Take the intents this process can lock, and bring each to a final state."""
        assert self._lock_conn is not None, "use the engine as an async context manager"
        owned = await journal.claim(self._lock_conn, ids)
        try:
            async with self.pool.acquire() as conn:
                rows = await journal.workable(conn, owned)
                waiting = [r for r in rows if r["state"] == "planned" and _waits_for_open(r)]
                if waiting:
                    bound = await self._bind_waiting(conn, waiting)
                    rows = [r for r in rows if not _waits_for_open(r)] + bound
                planned = [r for r in rows if r["state"] == "planned"]
                earlier = [r for r in rows if r["state"] != "planned"]
                if planned and await self._kill_switch():  # nothing new goes out once it is on
                    await conn.execute(
                        "UPDATE copy_intents SET state = 'refused', refusal_reason = $2, updated_at = now() "
                        "WHERE intent_id = ANY($1::text[]) AND state = 'planned'",
                        [r["intent_id"] for r in planned],
                        Refusal.KILL_SWITCH.value,
                    )
                    planned = []
                known = await self.venue.lookup([r["intent_id"] for r in earlier]) if earlier else {}
                to_send = planned + [r for r in earlier if r["intent_id"] not in known]
                await journal.mark(conn, [r["intent_id"] for r in planned], "sent")
            results: list[tuple[asyncpg.Record, VenueResult, bool]] = [
                (r, known[r["intent_id"]], True) for r in earlier if r["intent_id"] in known
            ]
            if to_send:
                try:
                    sent = await self.venue.submit_many([self._order(r) for r in to_send])
                except Exception as exc:
                    async with self.pool.acquire() as conn:
                        await journal.mark(
                            conn, [r["intent_id"] for r in to_send], "unknown", error=str(exc)[:500]
                        )
                    log.error(
                        "venue call failed; outcome unknown, will be looked up",
                        extra=log_fields(venue=self.venue.name, intents=len(to_send), error=str(exc)[:200]),
                    )
                    raise
                results += [(r, res, False) for r, res in zip(to_send, sent, strict=True)]
            await self._record(results)
            counts: dict[str, int] = {}
            for _r, res, looked_up in results:
                state = _final_state(res, looked_up)
                counts[state] = counts.get(state, 0) + 1
                INTENTS.labels(outcome=state).inc()
            return counts
        finally:
            await journal.release(self._lock_conn, owned)

    async def _bind_waiting(
        self, conn: asyncpg.Connection, waiting: list[asyncpg.Record]
    ) -> list[asyncpg.Record]:
        """Closes that waited for their open: once the open has settled, bind them to the copied
        position (sized now, from the leader's stored numbers) or refuse them if nothing was
        copied; while it is still in flight, leave them planned for the next sweep."""
        ids = [r["profile_id"] for r in waiting]
        keys = [r["leader_position_key"] for r in waiting]
        flying = await journal.opens_in_flight(conn, ids, keys)  # before positions, as in `plan`
        positions = {
            (p["profile_id"], p["leader_position_key"]): p
            for p in await conn.fetch(
                "SELECT profile_id, leader_position_key, venue_position_ref, collateral_usdc, side FROM copy_positions "
                "WHERE status = 'open' AND profile_id = ANY($1::bigint[]) AND leader_position_key = ANY($2::text[])",
                ids,
                keys,
            )
        }
        ready, nothing = [], []
        for r in waiting:
            p = positions.get((r["profile_id"], r["leader_position_key"]))
            if p is None:
                if (r["profile_id"], r["leader_position_key"]) not in flying:
                    nothing.append(r["intent_id"])
                continue
            amount = p["collateral_usdc"]
            if r["action"] == CopyAction.PARTIAL_CLOSE.value:
                amount = partial_close_amount(
                    amount, r["leader_collateral_usdc"] or 0, r["leader_closed_usdc"] or 0
                )
            ready.append((r["intent_id"], p["venue_position_ref"], amount, p["side"]))
        await conn.executemany(
            "UPDATE copy_intents SET position_ref = $2, collateral_usdc = $3, side = $4, updated_at = now() "
            "WHERE intent_id = $1",
            ready,
        )
        if nothing:
            await conn.execute(
                "UPDATE copy_intents SET state = 'refused', refusal_reason = $2, updated_at = now() "
                "WHERE intent_id = ANY($1::text[])",
                nothing,
                Refusal.NO_COPIED_POSITION.value,
            )
        return await journal.workable(conn, [i for i, *_ in ready]) if ready else []

    def _order(self, r: asyncpg.Record) -> VenueOrder:
        return VenueOrder(
            client_ref=r["intent_id"],
            account=r["wallet_address"] or str(r["profile_id"]),  # the paper venue books by profile
            action=r["action"],
            pair_index=r["pair_index"],
            side=Side(r["side"]) if r["side"] else None,
            collateral_usdc=r["collateral_usdc"] or 0,
            leverage=r["leverage"],
            position_ref=r["position_ref"],
            reference_price=r["requested_price"],
            max_slippage_bps=r["slippage_bps"],
            tp=r["tp"],
            sl=r["sl"],
        )

    async def _record(self, results: list[tuple[asyncpg.Record, VenueResult, bool]]) -> None:
        if not results:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "UPDATE copy_intents SET state = $2, fill_price = $3, fee_usdc = $4, pnl_usdc = $5, "
                "venue_order_ref = $6, error = $7, updated_at = now() WHERE intent_id = $1",
                [
                    (
                        r["intent_id"],
                        _final_state(res, looked_up),
                        res.price,
                        res.fee_usdc,
                        res.pnl_usdc,
                        res.position_ref,
                        res.reason,
                    )
                    for r, res, looked_up in results
                ],
            )
            opens = [(r, res) for r, res, _ in results if res.filled and r["action"] == "open"]
            await self._apply_opens(conn, opens)
            for r, res, _ in results:
                if res.filled and r["action"] != "open":
                    await self._apply_fill(conn, r, res)
                elif not res.filled:
                    await self._notify(
                        conn,
                        r,
                        "rejected",
                        f"Copy of {r['leader_address'][:10]} rejected by {r['venue']}: {res.reason}",
                    )

    def _symbol(self, pair_index: int) -> str:
        pair = self.catalogue.get(pair_index)
        return pair.symbol if pair else f"pair {pair_index}"

    async def _apply_opens(
        self, conn: asyncpg.Connection, fills: list[tuple[asyncpg.Record, VenueResult]]
    ) -> None:
        """Positions, attribution and notices of filled opens as three pipelined batches: a fan-out
        to 1,000 followers is one round of statements, not 3,000 round trips."""
        if not fills:
            return
        day = datetime.now(UTC).date()
        positions, attribution, notices = [], [], []
        for r, res in fills:
            assert res.price is not None
            leader_price: Decimal | None = r["requested_price"]
            notional = int(res.collateral_usdc * r["leverage"])
            slip = 0
            if leader_price:
                sign = 1 if r["side"] == "long" else -1
                slip = int((res.price - leader_price) * sign * notional / leader_price)
            symbol = self._symbol(r["pair_index"])
            positions.append(
                (
                    r["profile_id"],
                    r["follow_id"],
                    r["leader_address"],
                    r["leader_position_key"],
                    res.position_ref,
                    r["pair_index"],
                    r["side"],
                    res.collateral_usdc,
                    r["leverage"],
                    res.price,
                    leader_price,
                    res.fee_usdc,
                )
            )
            attribution.append((r["profile_id"], r["leader_address"], day, 0, 0, res.fee_usdc, slip))
            text = (
                f"Copied {r['leader_address'][:10]}: {r['side'].upper()} {symbol} {_usdc(res.collateral_usdc)} USDC "
                f"x{r['leverage'].normalize()} at {res.price.normalize()}"
            )
            notices.append(
                (r["profile_id"], "fill", f"{r['intent_id']}:fill", text, _payload(r["intent_id"]))
            )
        await conn.executemany(
            """
            INSERT INTO copy_positions (profile_id, follow_id, leader_address, leader_position_key,
                venue_position_ref, pair_index, side, collateral_usdc, leverage, entry_price,
                leader_entry_price, open_fee_usdc)
            VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)
            ON CONFLICT (profile_id, leader_position_key) DO NOTHING
            """,
            positions,
        )
        await conn.executemany(_ATTRIBUTE, attribution)
        await conn.executemany(_NOTIFY, notices)

    async def _apply_fill(self, conn: asyncpg.Connection, r: asyncpg.Record, res: VenueResult) -> None:
        day = datetime.now(UTC).date()
        leader_price: Decimal | None = r["requested_price"]
        symbol = self._symbol(r["pair_index"])
        if r["action"] == "update_tp_sl":
            await self._notify(
                conn, r, "fill", f"TP/SL of your {symbol} copy updated like {r['leader_address'][:10]}"
            )
            return
        pnl = res.pnl_usdc or 0
        row = await conn.fetchrow(
            """
            UPDATE copy_positions SET collateral_usdc = collateral_usdc - $3,
                close_fee_usdc = close_fee_usdc + $4, realized_pnl_usdc = realized_pnl_usdc + $5,
                exit_price = $6, leader_exit_price = $7,
                status = CASE WHEN $8 OR collateral_usdc - $3 <= 0 THEN 'closed' ELSE 'open' END,
                closed_at = CASE WHEN $8 OR collateral_usdc - $3 <= 0 THEN now() ELSE closed_at END,
                closed_by = CASE WHEN $8 OR collateral_usdc - $3 <= 0 THEN 'leader' ELSE closed_by END
            WHERE profile_id = $1 AND venue_position_ref = $2 AND status = 'open'
            RETURNING status
            """,
            r["profile_id"],
            r["position_ref"],
            res.collateral_usdc,
            res.fee_usdc,
            pnl,
            res.price,
            leader_price,
            r["action"] == "close",
        )
        closed = row is not None and row["status"] == "closed"
        profile = await conn.fetchrow(
            "UPDATE copytrader_profiles SET equity_usdc = equity_usdc + $2, "
            "peak_equity_usdc = greatest(peak_equity_usdc, equity_usdc + $2) WHERE id = $1 "
            "RETURNING user_id, equity_usdc, peak_equity_usdc, daily_loss_limit_usdc, max_drawdown_pct, status",
            r["profile_id"],
            pnl,
        )
        await self._attribute(conn, r, day, copied=1 if closed else 0, pnl=pnl, fees=res.fee_usdc, slippage=0)
        sign = "+" if pnl >= 0 else "-"
        await self._notify(
            conn,
            r,
            "fill",
            f"Closed {'all' if closed else 'part'} of your {symbol} copy of {r['leader_address'][:10]}: "
            f"{sign}{_usdc(abs(pnl))} USDC",
        )
        await self._pause_if_limits_hit(conn, r, profile, day)

    async def _pause_if_limits_hit(
        self, conn: asyncpg.Connection, r: asyncpg.Record, profile: asyncpg.Record | None, day: Any
    ) -> None:
        if profile is None or profile["status"] != "active":
            return
        today = 0
        if profile["daily_loss_limit_usdc"] is not None:
            today = await conn.fetchval(
                "SELECT coalesce(sum(realized_pnl_usdc), 0) FROM copy_positions "
                "WHERE profile_id = $1 AND closed_at >= $2::date",
                r["profile_id"],
                day,
            )
        reason = limits_hit(
            realized_today_usdc=today,
            daily_loss_limit_usdc=profile["daily_loss_limit_usdc"],
            equity_usdc=profile["equity_usdc"],
            peak_equity_usdc=profile["peak_equity_usdc"],
            max_drawdown_pct=profile["max_drawdown_pct"],
        )
        if reason is None:
            return
        await conn.execute(
            "UPDATE copytrader_profiles SET status = 'paused', pause_reason = $2 WHERE id = $1",
            r["profile_id"],
            reason.value,
        )
        await self._notify(conn, r, "paused", f"Copying paused: {reason.value.replace('_', ' ')} reached")

    async def _attribute(
        self,
        conn: asyncpg.Connection,
        r: asyncpg.Record,
        day: Any,
        *,
        copied: int,
        pnl: int,
        fees: int,
        slippage: int,
    ) -> None:
        await conn.execute(_ATTRIBUTE, r["profile_id"], r["leader_address"], day, copied, pnl, fees, slippage)

    async def _notify(
        self, conn: asyncpg.Connection, r: asyncpg.Record | Intent, kind: str, text: str
    ) -> None:
        profile_id = r.profile_id if isinstance(r, Intent) else r["profile_id"]
        key = r.intent_id if isinstance(r, Intent) else r["intent_id"]
        await conn.execute(_NOTIFY, profile_id, kind, f"{key}:{kind}", text, _payload(key))

    async def _notify_refusals(self, conn: asyncpg.Connection, refused: list[Intent]) -> None:
        for i in refused:
            assert i.refusal is not None
            if i.refusal is Refusal.NO_COPIED_POSITION:
                continue  # the leader closed something this follower never copied: nothing to say
            await self._notify(
                conn, i, "refused", f"Copy of {i.leader[:10]} not placed: {i.refusal.value.replace('_', ' ')}"
            )

    async def recover(self) -> dict[str, int]:
        """Finish intents nobody is working on. A message is acked by whoever handled it last; an
        engine that claimed a slow fan-out from a live one acks it while the first still works its
        chunk, and if that first engine then dies, its chunk is left `sent` with no message to
        replay it. Intents untouched for `claim_idle_ms` are taken here (a live worker's are
        skipped: their locks are held) and resolved the usual way, by asking the venue first."""
        rows = await self.pool.fetch(
            "SELECT intent_id FROM copy_intents WHERE state = ANY($1::text[]) AND venue = $2 "
            "AND updated_at < now() - make_interval(secs => $3) ORDER BY updated_at LIMIT $4",
            list(journal.OPEN_STATES),
            self.venue.name,
            self.config.claim_idle_ms / 1000,
            self.config.chunk,
        )
        return await self.work([r["intent_id"] for r in rows]) if rows else {}

    # --- the stream ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, start_id: str = "$") -> None:
        if self.redis is None:
            raise RuntimeError("the engine needs Redis for the event stream")
        bus = StreamBus(self.redis, self.config.stream)
        await bus.ensure_group(self.config.group, start_id)
        observe = getattr(self.feed, "observe", None)
        if observe is not None:
            # A restarted engine prices the intents it recovers from the stream's recent fills,
            # not from nothing.
            for msg in await bus.latest(self.config.price_seed_events):
                observe(TradeEvent.from_record(msg.payload))
        log.info(
            "copy engine consuming", extra=log_fields(consumer=self.config.consumer, venue=self.venue.name)
        )
        next_sweep = 0.0
        while not stop.is_set():
            if time.monotonic() >= next_sweep:
                try:
                    await self.recover()
                except Exception:
                    log.exception("recovering unfinished intents failed; retried next sweep")
                next_sweep = time.monotonic() + self.config.claim_idle_ms / 1000
            msgs = await bus.claim_stale(
                self.config.group, self.config.consumer, min_idle_ms=self.config.claim_idle_ms
            )
            msgs += await bus.read(self.config.group, self.config.consumer, count=20, block_ms=200)
            for msg in msgs:
                event = TradeEvent.from_record(msg.payload)
                if observe is not None:
                    observe(event)
                try:
                    await self.handle(event)
                except Exception:
                    log.exception(
                        "copy of an event failed; it stays pending", extra=log_fields(event=event.event_id)
                    )
                    continue
                await bus.ack(self.config.group, msg.id)
