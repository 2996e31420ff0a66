"""Booking what the venue answered: the journal's outcome, the follower's books (positions,
attribution, realized PnL into equity), the pauses a limit calls for, and the notifications, all
in the caller's one transaction. Set-based: a fan-out to 1,000 followers is a handful of
statements, not thousands of round trips."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

import asyncpg

from data.events import Side
from data.pairs import Pair
from execution.copy import journal, notices, positions, profiles
from execution.copy.journal import Intent, Outcome
from execution.copy.model import CopyAction, IntentState, ProfileStatus, Refusal
from execution.copy.notices import Notice, NoticeKind
from execution.copy.risk import limits_hit
from execution.venues.base import VenueResult


def final_state(result: VenueResult, looked_up: bool) -> IntentState:
    """An outcome learnt by asking the venue after a crash is `resolved`; one it answered is
    `filled` or `rejected`."""
    if looked_up:
        return IntentState.RESOLVED
    return IntentState.FILLED if result.filled else IntentState.REJECTED


class Booker:
    def __init__(self, catalogue: dict[int, Pair]):
        self.catalogue = catalogue

    def _symbol(self, pair_index: int | None) -> str:
        pair = self.catalogue.get(pair_index) if pair_index is not None else None
        return pair.symbol if pair else f"pair {pair_index}"

    async def book(
        self, conn: asyncpg.Connection, results: list[tuple[Intent, VenueResult, bool]]
    ) -> list[str]:
        """The venue's answers into the journal, the follower's books, the profiles and the outbox
        (the caller holds the transaction). Returns the follow-ups waiting on what was booked (a
        close on its open or on a partial close): the caller works them once this commits."""
        day = positions.trading_day()
        waking = [
            (i.profile_id, i.leader_position_key)
            for i, _, _ in results
            if i.action is not CopyAction.CLOSE and i.leader_position_key
        ]
        waiting = await journal.settle(
            conn,
            [
                Outcome(
                    i.intent_id,
                    final_state(res, looked_up),
                    res.price,
                    res.fee_usdc,
                    res.pnl_usdc,
                    res.position_ref,
                    res.reason,
                )
                for i, res, looked_up in results
            ],
            waking,
        )
        notes: list[Notice] = []
        attribution: list[positions.Attribution] = []
        opened: list[positions.OpenedCopy] = []
        closes: list[tuple[Intent, VenueResult]] = []
        for i, res, _ in results:
            if not res.filled:
                notes.append(
                    notices.for_intent(
                        i.profile_id,
                        i.intent_id,
                        NoticeKind.REJECTED,
                        leader=i.leader,
                        venue=i.venue,
                        action=i.action.value,
                        reason=res.reason,
                    )
                )
            elif i.action is CopyAction.OPEN:
                opened.append(self._opened(i, res))
                attribution.append(
                    positions.Attribution(
                        i.profile_id,
                        i.leader,
                        day,
                        fees_usdc=res.fee_usdc,
                        slippage_cost_usdc=self._slippage(i, res),
                    )
                )
                notes.append(
                    notices.for_intent(
                        i.profile_id,
                        i.intent_id,
                        NoticeKind.FILL,
                        action=i.action.value,
                        leader=i.leader,
                        pair=self._symbol(i.pair_index),
                        side=i.side,
                        collateral_usdc=res.collateral_usdc,
                        leverage=i.leverage,
                        price=res.price,
                    )
                )
            elif i.action is CopyAction.UPDATE_TP_SL:
                notes.append(
                    notices.for_intent(
                        i.profile_id,
                        i.intent_id,
                        NoticeKind.FILL,
                        action=i.action.value,
                        leader=i.leader,
                        pair=self._symbol(i.pair_index),
                    )
                )
            else:
                closes.append((i, res))
        await positions.record_opens(conn, opened)
        if closes:
            notes += await self._closes(conn, closes, attribution, day)
        await positions.attribute(conn, attribution)
        await notices.write(conn, notes)
        return waiting

    def _opened(self, i: Intent, res: VenueResult) -> positions.OpenedCopy:
        return positions.OpenedCopy(
            profile_id=i.profile_id,
            follow_id=i.follow_id,
            leader=i.leader,
            leader_position_key=i.leader_position_key,
            position_ref=res.position_ref,
            pair_index=i.pair_index,
            side=i.side,
            collateral_usdc=res.collateral_usdc,
            leverage=i.leverage,
            entry_price=res.price,
            leader_entry_price=i.requested_price,
            open_fee_usdc=res.fee_usdc,
        )

    @staticmethod
    def _slippage(i: Intent, res: VenueResult) -> int:
        """What the follower's fill cost against the leader's, on the copy's notional."""
        leader_price: Decimal | None = i.requested_price
        if not leader_price or res.price is None or i.leverage is None:
            return 0
        notional = int(res.collateral_usdc * i.leverage)
        sign = 1 if i.side == Side.LONG.value else -1
        return int((res.price - leader_price) * sign * notional / leader_price)

    async def _closes(
        self,
        conn: asyncpg.Connection,
        closes: list[tuple[Intent, VenueResult]],
        attribution: list[positions.Attribution],
        day: Any,
    ) -> list[Notice]:
        whole = await positions.record_closes(
            conn,
            [
                positions.ClosedCopy(
                    profile_id=i.profile_id,
                    position_ref=i.position_ref,
                    collateral_usdc=res.collateral_usdc,
                    fee_usdc=res.fee_usdc,
                    pnl_usdc=res.pnl_usdc or 0,
                    exit_price=res.price,
                    leader_exit_price=i.requested_price,
                    whole=i.action is CopyAction.CLOSE,
                )
                for i, res in closes
            ],
        )
        notes = []
        pnl_by_profile: dict[int, int] = defaultdict(int)
        cause: dict[int, str] = {}
        for (i, res), closed in zip(closes, whole, strict=True):
            pnl = res.pnl_usdc or 0
            pnl_by_profile[i.profile_id] += pnl
            cause.setdefault(i.profile_id, i.intent_id)
            attribution.append(
                positions.Attribution(
                    i.profile_id, i.leader, day, int(closed), realized_pnl_usdc=pnl, fees_usdc=res.fee_usdc
                )
            )
            notes.append(
                notices.for_intent(
                    i.profile_id,
                    i.intent_id,
                    NoticeKind.FILL,
                    action=i.action.value,
                    leader=i.leader,
                    pair=self._symbol(i.pair_index),
                    pnl_usdc=pnl,
                    closed_all=closed,
                )
            )
        limits = await profiles.apply_realized(conn, dict(pnl_by_profile))
        return notes + await self._pause_if_limits_hit(conn, limits, cause)

    async def _pause_if_limits_hit(
        self, conn: asyncpg.Connection, limits: list[asyncpg.Record], cause: dict[int, str]
    ) -> list[Notice]:
        active = [r for r in limits if r["status"] == ProfileStatus.ACTIVE.value]
        counted = [r["id"] for r in active if r["daily_loss_limit_usdc"] is not None]
        today = (
            await positions.realized_since(conn, counted, positions.trading_day_start()) if counted else {}
        )
        paused: dict[Refusal, list[int]] = defaultdict(list)
        for r in active:
            reason = limits_hit(
                realized_today_usdc=today.get(r["id"], 0),
                daily_loss_limit_usdc=r["daily_loss_limit_usdc"],
                equity_usdc=r["equity_usdc"],
                peak_equity_usdc=r["peak_equity_usdc"],
                max_drawdown_pct=r["max_drawdown_pct"],
            )
            if reason is not None:
                paused[reason].append(r["id"])
        notes = []
        for reason, ids in paused.items():
            await profiles.set_status(conn, ids, ProfileStatus.PAUSED, reason.value)
            notes += [
                notices.for_intent(pid, cause[pid], NoticeKind.PAUSED, reason=reason.value) for pid in ids
            ]
        return notes
