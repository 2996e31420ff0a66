"""Planning: what each follower's copy of one leader event should be, by the rules. Reads the
follows, the follower's books and the journal, asks the risk engine (`risk.py`), and returns
intents — sized opens, follow-ups bound to the copy or waiting for it, or refusals with their
named reason. Writes nothing: the engine journals and works what this decides.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from data.events import EventKind, TradeEvent
from data.pairs import Pair
from execution.copy import journal, positions
from execution.copy.follows import follows_of
from execution.copy.journal import Intent, intent_id
from execution.copy.leader_equity import LeaderEquity
from execution.copy.model import (
    OPEN_STATES,
    CopyAction,
    Follow,
    Refusal,
    SizedOpen,
    SizingMode,
    follow_problem,
)
from execution.copy.regime import RegimeSource
from execution.copy.risk import Facts, check_close, check_open
from execution.copy.sizing import close_amount
from execution.venues.base import PriceFeed
from infra.logs import log_fields

log = logging.getLogger("vanta.copy")
T = TypeVar("T")

ACTIONS = {
    EventKind.OPEN: CopyAction.OPEN,
    EventKind.CLOSE: CopyAction.CLOSE,
    EventKind.TP: CopyAction.CLOSE,
    EventKind.SL: CopyAction.CLOSE,
    EventKind.LIQUIDATION: CopyAction.CLOSE,  # the leader was liquidated: the follower closes
    EventKind.PARTIAL_CLOSE: CopyAction.PARTIAL_CLOSE,
    EventKind.TP_SL_UPDATE: CopyAction.UPDATE_TP_SL,
}


async def _answer(what: str, pending: Awaitable[T], **fields: object) -> T | None:
    """An optional source's answer, or None (and a warning) when it fails: the risk checks then
    refuse with their `..._unknown` reason rather than guess."""
    try:
        return await pending
    except Exception as exc:
        log.warning(f"{what} unavailable", extra=log_fields(error=str(exc)[:200], **fields))
        return None


class Planner:
    def __init__(
        self,
        venue: str,
        feed: PriceFeed,
        catalogue: dict[int, Pair],
        *,
        max_delay_ms: int,
        kill_switch: Callable[[], Awaitable[bool]],
        leader_equity: LeaderEquity | None = None,
        regime: RegimeSource | None = None,
    ):
        self.venue = venue
        self.feed = feed
        self.catalogue = catalogue
        self.max_delay_ms = max_delay_ms
        self.kill_switch = kill_switch
        self.leader_equity = leader_equity
        self.regime = regime

    async def _facts(
        self, conn: asyncpg.Connection, follows: list[Follow], event: TradeEvent
    ) -> dict[int, Facts]:
        ids = list({f.profile.id for f in follows})
        kill = await self.kill_switch()
        now_ms = int(time.time() * 1000)
        opening = event.kind is EventKind.OPEN
        books = await positions.books(conn, ids, positions.trading_day_start()) if opening else {}
        leader_equity = regime = None
        proportional = any(f.config.sizing_mode is SizingMode.PROPORTIONAL for f in follows)
        if opening and proportional and self.leader_equity is not None:
            leader_equity = await _answer(
                "leader equity", self.leader_equity.equity_usdc(conn, event), leader=event.trader
            )
        if opening and any(f.config.regime_guard for f in follows) and self.regime is not None:
            regime = await _answer("regime", self.regime.regime(event.pair_index), pair=event.pair_index)
        price = self.feed.price(event.pair_index)
        empty = positions.Books(0, 0)
        return {
            pid: Facts(
                now_ms=now_ms,
                max_delay_ms=self.max_delay_ms,
                kill_switch=kill,
                price=price,
                exposure_usdc=books.get(pid, empty).exposure_usdc,
                realized_today_usdc=books.get(pid, empty).realized_today_usdc,
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
            venue=self.venue,
            pair_index=event.pair_index,
            requested_price=event.price,
            leader_position_key=event.position_key,
            account=follow.profile.wallet_address or str(follow.profile.id),  # paper books by profile
            slippage_bps=follow.config.slippage_bps,
            **kw,
        )

    async def plan(self, conn: asyncpg.Connection, event: TradeEvent) -> list[Intent]:
        action = ACTIONS.get(event.kind)
        if action is None:
            return []
        follows = await follows_of(conn, event.trader, self.venue)
        if not follows:
            return []
        facts = await self._facts(conn, follows, event)
        if action is CopyAction.OPEN:
            return [self._plan_open(f, event, facts[f.profile.id]) for f in follows]
        ids, key = [f.profile.id for f in follows], event.position_key
        # The journal first, copies second: an open settling in between is then seen as a copy,
        # never as nothing at all.
        known = await journal.position_intents(conn, ids, [key])
        copies = await positions.open_copies(conn, ids, [key])
        nothing = journal.PositionIntents()
        return [
            self._plan_follow_up(
                f,
                event,
                action,
                facts[f.profile.id],
                known.get((f.profile.id, key), nothing),
                copies.get((f.profile.id, key)),
            )
            for f in follows
        ]

    def _plan_open(self, follow: Follow, event: TradeEvent, facts: Facts) -> Intent:
        problem = None
        try:
            sized = check_open(follow, event, self.catalogue.get(event.pair_index), facts)
            if sized is Refusal.INVALID_FOLLOW_SETTINGS:
                problem = follow_problem(follow)
        except (ArithmeticError, ValueError, TypeError) as exc:  # a value the bounds did not foresee
            problem = f"{type(exc).__name__}: {exc}"
        if problem is not None:
            log.warning(
                "a follow's settings cannot be applied", extra=log_fields(follow=follow.id, problem=problem)
            )
            return self._intent(
                follow, event, CopyAction.OPEN, refusal=Refusal.INVALID_FOLLOW_SETTINGS, error=problem[:500]
            )
        if isinstance(sized, Refusal):
            return self._intent(follow, event, CopyAction.OPEN, refusal=sized)
        return self._open_intent(follow, event, sized)

    def _plan_follow_up(
        self,
        follow: Follow,
        event: TradeEvent,
        action: CopyAction,
        facts: Facts,
        known: journal.PositionIntents,
        copy: positions.CopiedPosition | None,
    ) -> Intent:
        """A close, partial close or TP/SL update: bound to the follower's copy now, waiting for
        the copy of the open (and a close for the partial closes and TP/SL moves planned before
        it), or refused."""
        open_state = known.open_state
        refusal = check_close(follow, facts)
        # A reversed copy holds the other side: the leader's levels would be on the wrong side.
        copies_levels = follow.config.copy_tp_sl and not follow.config.reverse
        if refusal is None and action is CopyAction.UPDATE_TP_SL and not copies_levels:
            refusal = Refusal.TP_SL_NOT_COPIED
        if refusal is None and action is not CopyAction.CLOSE and known.closing:
            # The leader's close was planned first (its message overtook this one, or an engine
            # was killed holding this one): it takes the whole copy, so this has nothing to act on.
            # Sent anyway it would race the close and be rejected by the venue.
            refusal = Refusal.NO_COPIED_POSITION
        if refusal is None and copy is None and open_state not in OPEN_STATES:
            opened_before = not follow.config.copy_existing and event.open_ts < follow.followed_at
            if open_state is not None or opened_before:
                # The open was refused, rejected or already closed, or it will be refused: the
                # leader closed something this follower does not hold.
                refusal = Refusal.NO_COPIED_POSITION
        if refusal is not None:
            return self._intent(follow, event, action, refusal=refusal)
        leader_sizes = {
            "leader_collateral_usdc": event.collateral_usdc,
            "leader_closed_usdc": event.size_closed_usdc,
        }
        # Wait (unbound) for the open if it is in flight or not planned yet; a close also for the
        # partial closes and TP/SL moves planned before it, even when the copy is there: bound now
        # it could reach the venue ahead of one a killed engine left in flight, which the venue
        # would then reject (the position gone). It is bound, sized, once they are done.
        if copy is None or (action is CopyAction.CLOSE and known.busy):
            return self._intent(follow, event, action, tp=event.tp, sl=event.sl, **leader_sizes)
        return self._intent(
            follow,
            event,
            action,
            side=copy.side,
            collateral_usdc=close_amount(copy.collateral_usdc, event),
            position_ref=copy.position_ref,
            tp=event.tp,
            sl=event.sl,
            **leader_sizes,
        )

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
