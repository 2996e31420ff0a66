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
from collections import defaultdict
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions as redis_errors

from data.events import EventKind, Side, TradeEvent
from data.pairs import Pair
from execution.copy import journal, notices, positions, profiles
from execution.copy.follows import follows_of
from execution.copy.journal import Intent, Outcome, intent_id
from execution.copy.leader_equity import LeaderEquity
from execution.copy.model import (
    OPEN_STATES,
    CopyAction,
    Follow,
    IntentState,
    ProfileStatus,
    Refusal,
    SizedOpen,
    SizingMode,
    follow_problem,
)
from execution.copy.notices import Notice, NoticeKind
from execution.copy.regime import RegimeSource
from execution.copy.risk import Facts, check_close, check_open, limits_hit
from execution.copy.sizing import close_amount, partial_close_amount
from execution.venues.base import PriceFeed, Venue, VenueOrder, VenuePending, VenueResult
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


class SessionLost(ConnectionError):
    """The engine's database session, and the advisory locks it held, are gone: nothing more is
    sent under them. The work in hand is left to the journal and picked up again."""


_TRANSIENT = (
    VenuePending,
    OSError,  # ConnectionError, refused or reset connections
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # a released or closed connection
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up
    asyncpg.exceptions.InsufficientResourcesError,
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
)


def transient(exc: BaseException) -> bool:
    """Whether a failure is the world being away (retry later, everything) rather than something
    about the orders themselves (isolate, bound the attempts)."""
    return isinstance(exc, _TRANSIENT)


def _alive(conn: asyncpg.Connection | None) -> bool:
    if conn is None:
        return False
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # a pool proxy detached when its connection was lost
        return False


def _final_state(result: VenueResult, looked_up: bool) -> IntentState:
    """An outcome learnt by asking the venue after a crash is `resolved`; one it answered is
    `filled` or `rejected`."""
    if looked_up:
        return IntentState.RESOLVED
    return IntentState.FILLED if result.filled else IntentState.REJECTED


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


class Backoff:
    """Waits that double up to a ceiling, cut short by `stop`."""

    def __init__(self, stop: asyncio.Event, first_s: float = 0.2, most_s: float = 5.0):
        self.stop, self.first_s, self.most_s = stop, first_s, most_s
        self.delay = first_s

    def reset(self) -> None:
        self.delay = self.first_s

    async def wait(self) -> float:
        waited = self.delay
        try:
            await asyncio.wait_for(self.stop.wait(), waited)
        except TimeoutError:
            pass
        self.delay = min(self.delay * 2, self.most_s)
        return waited


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
        # Opens first, copies second: an open settling in between is then seen as a copy, never
        # as nothing at all.
        opens = await journal.position_opens(conn, ids, [key])
        copies = await positions.open_copies(conn, ids, [key])
        return [
            self._plan_follow_up(
                f,
                event,
                action,
                facts[f.profile.id],
                opens.get((f.profile.id, key)),
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
        open_state: IntentState | None,
        copy: positions.CopiedPosition | None,
    ) -> Intent:
        """A close, partial close or TP/SL update: bound to the follower's copy now, waiting for
        the copy of the open, or refused."""
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
        results += await self._submit(conn, to_send)
        return await self._record(conn, results)

    async def _bind_waiting(self, conn: asyncpg.Connection, waiting: list[Intent]) -> list[Intent]:
        """Closes that wait for their open: bound to the copy once the open has settled (sized
        now, from the leader's stored numbers), refused if the open was not copied, refused
        `open_not_seen` past the wait bound, else left waiting for the next look."""
        pids = [i.profile_id for i in waiting]
        keys = [i.leader_position_key or "" for i in waiting]
        opens = await journal.position_opens(conn, pids, keys)  # before the copies, as in `plan`
        copies = await positions.open_copies(conn, pids, keys)
        now = datetime.now(UTC)
        bound, nothing, expired, still = [], [], [], []
        for i in waiting:
            key = (i.profile_id, i.leader_position_key or "")
            copy, state = copies.get(key), opens.get(key)
            if copy is not None:
                amount = copy.collateral_usdc
                if i.action is CopyAction.PARTIAL_CLOSE:
                    amount = partial_close_amount(
                        amount, i.leader_collateral_usdc or 0, i.leader_closed_usdc or 0
                    )
                i.position_ref, i.collateral_usdc, i.side = copy.position_ref, amount, copy.side
                bound.append(i)
            elif state in OPEN_STATES:
                still.append(i)
            elif state is not None:
                nothing.append(i)
            elif i.created_at is not None and (now - i.created_at).total_seconds() > self.config.open_wait_s:
                expired.append(i)
            else:
                still.append(i)
        await journal.bind(conn, bound)
        await journal.refuse(conn, _ids(nothing), Refusal.NO_COPIED_POSITION)
        for i in expired:
            tombstone = intent_id(i.profile_id, f"unseen-open-of:{i.leader_event_id}", CopyAction.OPEN)
            async with conn.transaction():
                if not await journal.stop_waiting(conn, i, tombstone):
                    still.append(i)  # an open got there first: it is this close's to wait for
                    continue
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
        await journal.touch(conn, _ids(still))
        return bound

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
                await self._book(conn, results)
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
            state = _final_state(res, looked_up).value
            counts[state] = counts.get(state, 0) + 1
            INTENTS.labels(outcome=state).inc()
        opened = [i for i, res, _ in results if res.filled and i.action is CopyAction.OPEN]
        if opened:
            await self._wake_waiting(conn, opened)
        return counts

    async def _wake_waiting(self, conn: asyncpg.Connection, opened: list[Intent]) -> None:
        """Closes that waited for these opens go out now, not at the next sweep (which still
        finds them if this fails)."""
        try:
            ids = await journal.waiting_for(
                conn, [i.profile_id for i in opened], [i.leader_position_key or "" for i in opened]
            )
            if ids:
                await self.work(ids)
        except Exception as exc:
            log.warning(
                "waiting closes left to the sweep",
                extra=log_fields(error=f"{type(exc).__name__}: {exc}"[:200]),
            )

    async def _book(self, conn: asyncpg.Connection, results: list[tuple[Intent, VenueResult, bool]]) -> None:
        day = positions.trading_day()
        await journal.settle(
            conn,
            [
                Outcome(
                    i.intent_id,
                    _final_state(res, looked_up),
                    res.price,
                    res.fee_usdc,
                    res.pnl_usdc,
                    res.position_ref,
                    res.reason,
                )
                for i, res, looked_up in results
            ],
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
            notes += await self._book_closes(conn, closes, attribution, day)
        await positions.attribute(conn, attribution)
        await notices.write(conn, notes)

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

    async def _book_closes(
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

    async def _sweep(self) -> None:
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
        """Consume the stream until `stop`. Redis or PostgreSQL going away is waited out with
        backoff; nothing is lost meanwhile: unacked messages stay pending, and the journal holds
        every intent already written."""
        if self.redis is None:
            raise RuntimeError("the engine needs Redis for the event stream")
        bus = StreamBus(self.redis, self.config.stream)
        backoff = Backoff(stop)
        joined_once = joined = False
        next_sweep = 0.0
        while not stop.is_set():
            try:
                if not joined:
                    await self._join(bus, start_id, first=not joined_once)
                    joined = joined_once = True
                    start_id = "0"  # a group lost with Redis's data is made again from the start
                if time.monotonic() >= next_sweep:
                    await self._sweep()
                    next_sweep = time.monotonic() + self.config.claim_idle_ms / 1000
                msgs = await bus.claim_stale(
                    self.config.group, self.config.consumer, min_idle_ms=self.config.claim_idle_ms
                )
                msgs += await bus.read(self.config.group, self.config.consumer, count=20, block_ms=200)
                if await self._consume(bus, msgs, stop):
                    backoff.reset()
                else:
                    await backoff.wait()
            except redis_errors.RedisError as exc:
                if "NOGROUP" in str(exc):
                    joined = False
                log.warning(
                    "event stream unavailable; retrying",
                    extra=log_fields(error=f"{type(exc).__name__}: {exc}"[:200], retry_in_s=backoff.delay),
                )
                await backoff.wait()
            except Exception:
                log.exception("copy engine step failed; retrying")
                await backoff.wait()

    async def _join(self, bus: StreamBus, start_id: str, *, first: bool) -> None:
        await bus.ensure_group(self.config.group, start_id)
        observe = getattr(self.feed, "observe", None)
        if observe is not None and first:
            # A restarted engine prices the intents it recovers from the stream's recent fills,
            # not from nothing.
            for msg in await bus.latest(self.config.price_seed_events):
                observe(TradeEvent.from_record(msg.payload))
        log.info(
            "copy engine consuming" if first else "copy engine rejoined the stream",
            extra=log_fields(consumer=self.config.consumer, venue=self.venue.name),
        )

    async def _consume(self, bus: StreamBus, msgs: list[Any], stop: asyncio.Event) -> bool:
        """Handle and ack messages in order; False when the database is away (the rest wait)."""
        observe = getattr(self.feed, "observe", None)
        for msg in msgs:
            if stop.is_set():
                return True  # unacked: another engine (or the next start) takes them
            try:
                event = TradeEvent.from_record(msg.payload)
            except Exception as exc:
                log.error("unreadable event skipped", extra=log_fields(message=msg.id, error=str(exc)[:200]))
                await bus.ack(self.config.group, msg.id)
                continue
            if observe is not None:
                observe(event)
            try:
                await self.handle(event)
            except Exception as exc:
                if transient(exc):
                    log.warning(
                        "copy of an event postponed; it stays pending",
                        extra=log_fields(event=event.event_id, error=f"{type(exc).__name__}: {exc}"[:200]),
                    )
                    return False
                log.exception(
                    "copy of an event failed; it stays pending", extra=log_fields(event=event.event_id)
                )
                continue
            await bus.ack(self.config.group, msg.id)
        return True
