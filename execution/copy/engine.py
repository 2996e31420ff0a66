"""The copy engine: leader events from the stream → intents → risk → venue → journal, exactly once.

Per leader event: every active follow of the leader gets an intent (planned, or refused with its
reason), all written in one statement before anything is sent; then the planned ones are worked
in chunks under their advisory locks (see `journal`): marked `sent`, submitted in one batch,
recorded with positions, attribution and notifications in one transaction. The stream message is
acked only after that, so a crash anywhere leaves it pending; whichever engine claims it replays
the same intents (their ids are deterministic) and resolves those already sent by asking the
venue. Several engine processes can share the consumer group.

Ordering per leader position: a close, partial close or TP/SL update planned before the
follower's copy of the open exists (another engine still planning it, a restart, a source that
published newest first) waits for it, up to `open_wait_s`; then it is refused `open_not_seen`,
the follower is told, and the position's open can no longer be copied (`journal.stop_waiting`).

Isolation: a follow whose settings cannot be applied is refused alone (`invalid_follow_settings`);
an order that breaks the venue or the books is found by splitting its batch, fails alone after
`MAX_ATTEMPTS` (`failed`, with the error, and a critical notification), and never holds up others.

The engine's database session holds its advisory locks; if the session is lost (PostgreSQL
restarted), nothing more is sent under them: the work in hand fails, a new session is taken, and
the journal (not memory) says what is left. Redis going away is waited out with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import redis.asyncio as aioredis

from data.events import EventKind, Side, TradeEvent
from data.pairs import Pair
from execution.copy import journal, notices, positions
from execution.copy.booking import Booker, final_state
from execution.copy.errors import SessionLost, transient
from execution.copy.follows import follows_of
from execution.copy.journal import Intent, intent_id
from execution.copy.leader_equity import LeaderEquity
from execution.copy.model import (
    OPEN_STATES,
    CopyAction,
    Follow,
    IntentState,
    Refusal,
    SizedOpen,
    SizingMode,
    follow_problem,
)
from execution.copy.notices import Notice, NoticeKind
from execution.copy.regime import RegimeSource
from execution.copy.risk import Facts, check_close, check_open
from execution.copy.sizing import close_amount, partial_close_amount
from execution.venues.base import PriceFeed, Venue, VenueOrder, VenueResult
from execution.venues.paper import DictPriceFeed
from infra.bus import EVENTS_STREAM, StreamBus
from infra.logs import log_fields
from infra.metrics import counter, histogram

log = logging.getLogger("vanta.copy")
T = TypeVar("T")

KILL_SWITCH_KEY = "copy:kill_switch"
MAX_ATTEMPTS = 3  # sends of one order that failed for a reason of its own, before it is `failed`
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
# Within one batch, what must reach the venue before a close of the same position.
_SEND_ORDER = {
    CopyAction.UPDATE_TP_SL: 0,
    CopyAction.PARTIAL_CLOSE: 1,
    CopyAction.CLOSE: 2,
    CopyAction.OPEN: 3,
}


def _alive(conn: asyncpg.Connection | None) -> bool:
    if conn is None:
        return False
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # a pool proxy detached when its connection was lost
        return False


def _add(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    for state, n in more.items():
        total[state] = total.get(state, 0) + n
    return total


def _ids(intents: Iterable[Intent]) -> list[str]:
    return [i.intent_id for i in intents]


async def _answer(what: str, pending: Awaitable[T], **fields: object) -> T | None:
    """An optional source's answer, or None (and a warning) when it fails: the risk checks then
    refuse with their `..._unknown` reason rather than guess."""
    try:
        return await pending
    except Exception as exc:
        log.warning(f"{what} unavailable", extra=log_fields(error=str(exc)[:200], **fields))
        return None


@dataclass
class EngineConfig:
    max_delay_ms: int = 500
    chunk: int = 250
    group: str = "copy-engine"
    stream: str = EVENTS_STREAM
    consumer: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    claim_idle_ms: int = 5_000
    price_seed_events: int = 2_000
    open_wait_s: float = 120.0  # how long a close waits for its open before it is refused
    sweep_budget_s: float = 2.0  # recovery time per sweep before the stream is read again


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
        self.booker = Booker(catalogue)
        self.bus: StreamBus | None = None  # set once the engine joins its stream
        self._db: asyncpg.Connection | None = None

    async def __aenter__(self) -> CopyEngine:
        await self._session()
        return self

    async def __aexit__(self, *exc: object) -> None:
        db, self._db = self._db, None
        if db is not None:
            try:  # releasing resets the session, which drops its advisory locks
                await asyncio.wait_for(self.pool.release(db), 5)
            except Exception as err:
                log.warning("engine session not released cleanly", extra=log_fields(error=str(err)[:200]))

    async def _session(self) -> asyncpg.Connection:
        """The engine's own connection: its queries and its advisory locks. A lost one is replaced
        (its locks died with it; what they guarded is back in the journal's hands)."""
        if _alive(self._db):
            assert self._db is not None
            return self._db
        if self._db is not None:
            old, self._db = self._db, None
            log.warning("database session lost; taking a new one")
            try:
                await asyncio.wait_for(self.pool.release(old), 1)
            except Exception:
                pass  # already gone with its connection
        self._db = await self.pool.acquire()
        return self._db

    async def _release(self, conn: asyncpg.Connection, ids: Iterable[str]) -> None:
        ids = list(ids)
        if not ids or not _alive(conn):
            return  # a lost session took its locks with it
        try:
            await journal.release(conn, ids)
        except Exception:
            if _alive(conn):
                raise

    # --- planning -----------------------------------------------------------------------------

    async def _kill_switch(self) -> bool:
        return bool(self.redis is not None and await self.redis.get(KILL_SWITCH_KEY) == "1")

    async def _facts(
        self, conn: asyncpg.Connection, follows: list[Follow], event: TradeEvent
    ) -> dict[int, Facts]:
        ids = list({f.profile.id for f in follows})
        kill = await self._kill_switch()
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
                max_delay_ms=self.config.max_delay_ms,
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
            venue=self.venue.name,
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
        follows = await follows_of(conn, event.trader, self.venue.name)
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
        if copy is None:  # its open is in flight or not planned yet: wait for it
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

    # --- execution ----------------------------------------------------------------------------

    async def handle(self, event: TradeEvent) -> dict[str, int]:
        """Copy one leader event for every follower; safe to call again for the same event."""
        started = time.perf_counter()
        conn = await self._session()
        intents = await self.plan(conn, event)
        if not intents:
            return {}
        # The first chunk is locked before it is written, and written as `sent`: this session
        # sends it next, so it needs neither a second write nor a re-read.
        first = [i for i in intents if i.state is IntentState.PLANNED and not i.waits_for_open][
            : self.config.chunk
        ]
        owned = set(await journal.claim(conn, _ids(first)))
        try:
            for i in first:
                if i.intent_id in owned:
                    i.state, i.attempts = IntentState.SENT, 1
            refused = [i for i in intents if i.refusal is not None]
            if any(i.refusal is not Refusal.NO_COPIED_POSITION for i in refused):
                async with conn.transaction():
                    new = await journal.plan(conn, intents)
                    await notices.write(
                        conn, [self._refusal_notice(i) for i in refused if i.intent_id in new]
                    )
            else:
                new = await journal.plan(conn, intents)
            for i in intents:
                if i.intent_id in new:
                    INTENTS.labels(outcome="refused" if i.refusal else "planned").inc()
            outcome = {"refused": sum(1 for i in refused if i.intent_id in new)}
            fresh = [i for i in first if i.intent_id in owned and i.intent_id in new]
            for i in fresh:
                i.fresh = True
            # Redelivered: the stored intent (planned or sent before) counts, not today's plan.
            stored = await journal.workable(conn, [i for i in owned if i not in new])
            _add(outcome, await self._process(conn, fresh + stored))
        finally:
            await self._release(conn, owned)
        rest = [
            i.intent_id
            for i in intents
            if i.intent_id not in owned and not (i.refusal and i.intent_id in new)
        ]
        for start in range(0, len(rest), self.config.chunk):
            _add(outcome, await self.work(rest[start : start + self.config.chunk]))
        LATENCY.observe(time.perf_counter() - started)
        return outcome

    async def work(self, ids: list[str]) -> dict[str, int]:
        """Take the intents this session can lock, and bring each to a final state (or, for a
        close whose open has not settled, one step closer)."""
        conn = await self._session()
        owned = await journal.claim(conn, ids)
        try:
            return await self._process(conn, await journal.workable(conn, owned))
        finally:
            await self._release(conn, owned)

    async def _process(self, conn: asyncpg.Connection, items: list[Intent]) -> dict[str, int]:
        """Intents whose locks this session holds, in their stored state (or just written)."""
        waiting = [i for i in items if i.waits_for_open]
        if waiting:
            items = [i for i in items if not i.waits_for_open] + await self._bind_waiting(conn, waiting)
        planned = [i for i in items if i.state is IntentState.PLANNED]
        fresh = [i for i in items if i.fresh]
        earlier = [i for i in items if i.state in (IntentState.SENT, IntentState.UNKNOWN) and not i.fresh]
        if planned and await self._kill_switch():  # nothing new goes out once it is on
            await journal.refuse(conn, _ids(planned), Refusal.KILL_SWITCH)
            planned = []
        known = await self.venue.lookup(_ids(earlier)) if earlier else {}
        resend = [i for i in earlier if i.intent_id not in known]
        await journal.mark_sent(conn, _ids(planned + resend))
        for i in planned + resend:
            i.attempts += 1
        results = [(i, known[i.intent_id], True) for i in earlier if i.intent_id in known]
        to_send = sorted(planned + fresh + resend, key=lambda i: _SEND_ORDER[i.action])
        if any(self.feed.price(i.pair_index or 0) is None for i in to_send):
            await self.seed_prices()  # recovering another engine's fan-out: its events never passed here
        results += await self._submit(conn, to_send)
        return await self._record(conn, results)

    async def _bind_waiting(self, conn: asyncpg.Connection, waiting: list[Intent]) -> list[Intent]:
        """Follow-ups that wait: bound to the copy once the open has settled (sized now, from the
        leader's stored numbers; a close also once the partial closes and TP/SL moves planned
        before it are done or go out with it), refused if the open was not copied, refused
        `open_not_seen` past the wait bound, else left waiting for the next look."""
        pids = [i.profile_id for i in waiting]
        keys = [i.leader_position_key or "" for i in waiting]
        known = await journal.position_intents(conn, pids, keys)  # before the copies, as in `plan`
        copies = await positions.open_copies(conn, pids, keys)
        now = datetime.now(UTC)
        nothing_known = journal.PositionIntents()
        bound, nothing, expired, still = [], [], [], []
        for i in sorted(waiting, key=lambda i: _SEND_ORDER[i.action]):  # closes last
            key = (i.profile_id, i.leader_position_key or "")
            copy, info = copies.get(key), known.get(key, nothing_known)
            going = {b.intent_id for b in bound if (b.profile_id, b.leader_position_key) == key}
            if copy is not None and i.action is CopyAction.CLOSE and info.busy - going - {i.intent_id}:
                still.append(i)  # an earlier partial close or TP/SL move is still on its way
            elif copy is not None:
                amount = copy.collateral_usdc
                if i.action is CopyAction.PARTIAL_CLOSE:
                    amount = partial_close_amount(
                        amount, i.leader_collateral_usdc or 0, i.leader_closed_usdc or 0
                    )
                i.position_ref, i.collateral_usdc, i.side = copy.position_ref, amount, copy.side
                bound.append(i)
            elif info.open_state in OPEN_STATES:
                still.append(i)
            elif info.open_state is not None:
                nothing.append(i)
            elif i.created_at is not None and (now - i.created_at).total_seconds() > self.config.open_wait_s:
                expired.append(i)
            else:
                still.append(i)
        await journal.bind(conn, bound)
        await journal.refuse(conn, _ids(nothing), Refusal.NO_COPIED_POSITION)
        for i in expired:
            if not await self._stop_waiting(conn, i):
                still.append(i)  # an open got there first: it is this one's to wait for
        await journal.touch(conn, _ids(still))
        return bound

    async def _stop_waiting(self, conn: asyncpg.Connection, i: Intent) -> bool:
        tombstone = intent_id(i.profile_id, f"unseen-open-of:{i.leader_event_id}", CopyAction.OPEN)
        async with conn.transaction():
            if not await journal.stop_waiting(conn, i, tombstone):
                return False
            await notices.write(
                conn,
                [
                    notices.for_intent(
                        i.profile_id,
                        i.intent_id,
                        NoticeKind.UNMATCHED_CLOSE,
                        leader=i.leader,
                        action=i.action.value,
                        pair=self._symbol(i.pair_index),
                        waited_s=int(self.config.open_wait_s),
                    )
                ],
            )
        log.warning(
            "a close waited in vain for its open",
            extra=log_fields(intent=i.intent_id, leader_position=i.leader_position_key),
        )
        return True

    def _order(self, i: Intent) -> VenueOrder:
        return VenueOrder(
            client_ref=i.intent_id,
            account=i.account,
            action=i.action,
            pair_index=i.pair_index or 0,
            side=Side(i.side) if i.side else None,
            collateral_usdc=i.collateral_usdc or 0,
            leverage=i.leverage,
            position_ref=i.position_ref,
            reference_price=i.requested_price,
            max_slippage_bps=i.slippage_bps,
            tp=i.tp,
            sl=i.sl,
        )

    async def _submit(
        self, conn: asyncpg.Connection, intents: list[Intent]
    ) -> list[tuple[Intent, VenueResult, bool]]:
        """Send, in one batch. A failure of the venue itself leaves the batch unknown (looked up
        later); a failure caused by some order is found by asking the venue what it did and
        splitting the rest, so the order at fault fails alone."""
        if not intents:
            return []
        if not _alive(conn):
            raise SessionLost("the engine's database session closed before sending")
        try:
            sent = await self.venue.submit_many([self._order(i) for i in intents])
        except Exception as exc:
            if transient(exc):
                await journal.mark(conn, _ids(intents), IntentState.UNKNOWN, error=str(exc)[:500])
                log.error(
                    "venue call failed; outcome unknown, will be looked up",
                    extra=log_fields(venue=self.venue.name, intents=len(intents), error=str(exc)[:200]),
                )
                raise
            return await self._isolate(conn, intents, exc)
        return [(i, res, False) for i, res in zip(intents, sent, strict=True)]

    async def _isolate(
        self, conn: asyncpg.Connection, intents: list[Intent], exc: Exception
    ) -> list[tuple[Intent, VenueResult, bool]]:
        known = await self.venue.lookup(_ids(intents))
        out = [(i, known[i.intent_id], True) for i in intents if i.intent_id in known]
        left = [i for i in intents if i.intent_id not in known]
        if len(left) > 1:
            half = len(left) // 2
            return out + await self._submit(conn, left[:half]) + await self._submit(conn, left[half:])
        error = f"{type(exc).__name__}: {exc}"[:500]
        for i in left:  # the one order at fault
            if i.attempts >= MAX_ATTEMPTS:
                await self._fail(conn, [i], error)
            else:
                await journal.mark(conn, [i.intent_id], IntentState.UNKNOWN, error=error)
                log.warning(
                    "an order failed at the venue; retried later",
                    extra=log_fields(intent=i.intent_id, attempt=i.attempts, error=error[:200]),
                )
        return out

    async def _fail(self, conn: asyncpg.Connection, intents: list[Intent], error: str) -> None:
        async with conn.transaction():
            await journal.mark(conn, _ids(intents), IntentState.FAILED, error=error)
            await notices.write(
                conn,
                [
                    notices.for_intent(
                        i.profile_id,
                        i.intent_id,
                        NoticeKind.FAILED,
                        leader=i.leader,
                        action=i.action.value,
                        error=error,
                    )
                    for i in intents
                ],
            )
        for i in intents:
            INTENTS.labels(outcome="failed").inc()
            log.error("copy failed for good", extra=log_fields(intent=i.intent_id, error=error[:200]))

    # --- recording ----------------------------------------------------------------------------

    async def _record(
        self, conn: asyncpg.Connection, results: list[tuple[Intent, VenueResult, bool]]
    ) -> dict[str, int]:
        """Book the venue's answers in one transaction; if the books refuse the batch for a reason
        of its own, book them one by one and fail only those that cannot be booked."""
        if not results:
            return {}
        try:
            async with conn.transaction():
                waiting = await self.booker.book(conn, results)
        except Exception as exc:
            if transient(exc):
                raise  # still `sent`: the venue is asked again later
            if len(results) > 1:  # something in the batch: book them one by one
                counts: dict[str, int] = {}
                for one in results:
                    _add(counts, await self._record(conn, [one]))
                return counts
            ((i, res, _),) = results
            error = f"the venue {res.status.value} it, but booking failed: {type(exc).__name__}: {exc}"
            await self._fail(conn, [i], error[:500])
            return {"failed": 1}
        counts = {}
        for _i, res, looked_up in results:
            state = final_state(res, looked_up).value
            counts[state] = counts.get(state, 0) + 1
            INTENTS.labels(outcome=state).inc()
        if waiting:
            await self._wake(waiting)
        return counts

    async def _wake(self, waiting: list[str]) -> None:
        """Follow-ups that waited for what was just booked go out now, not at the next sweep
        (which still finds them if this fails)."""
        try:
            await self.work(waiting)
        except Exception as exc:
            log.warning(
                "waiting closes left to the sweep",
                extra=log_fields(error=f"{type(exc).__name__}: {exc}"[:200]),
            )

    def _symbol(self, pair_index: int | None) -> str:
        pair = self.catalogue.get(pair_index) if pair_index is not None else None
        return pair.symbol if pair else f"pair {pair_index}"

    def _refusal_notice(self, i: Intent) -> Notice:
        assert i.refusal is not None
        return notices.for_intent(
            i.profile_id,
            i.intent_id,
            NoticeKind.REFUSED,
            leader=i.leader,
            action=i.action.value,
            pair=self._symbol(i.pair_index),
            reason=i.refusal.value,
        )

    async def seed_prices(self) -> None:
        """Learn the pairs' last prices from the stream's recent fills (a feed that observes
        events only knows those this engine read; another engine may have read the rest)."""
        observe = getattr(self.feed, "observe", None)
        if observe is None or self.bus is None:
            return
        for msg in await self.bus.latest(self.config.price_seed_events):
            observe(TradeEvent.from_record(msg.payload))

    async def recover(self) -> dict[str, int]:
        """Finish intents nobody is working on. A message is acked by whoever handled it last; an
        engine that claimed a slow fan-out from a live one acks it while the first still works its
        chunk, and if that first engine then dies, its chunk is left `sent` with no message to
        replay it. Closes waiting for their open are looked at again here too. Intents untouched
        for `claim_idle_ms` are taken (a live worker's are skipped: their locks are held) and
        resolved the usual way, by asking the venue first."""
        conn = await self._session()
        ids = await journal.stale(conn, self.venue.name, self.config.claim_idle_ms / 1000, self.config.chunk)
        return await self.work(ids) if ids else {}

    async def sweep(self) -> None:
        """Recovery rounds until nothing is left or the budget is spent (the stream waits)."""
        deadline = time.monotonic() + self.config.sweep_budget_s
        while True:
            try:
                done = await self.recover()
            except Exception as exc:
                log.warning(
                    "recovering unfinished intents failed; retried next sweep",
                    extra=log_fields(error=str(exc)[:300]),
                )
                return
            if sum(done.values()) < self.config.chunk or time.monotonic() > deadline:
                return

    # --- the stream ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, start_id: str = "$") -> None:
        """Consume the stream until `stop` (see `consumer.py`)."""
        from execution.copy.consumer import consume

        await consume(self, stop, start_id=start_id)
