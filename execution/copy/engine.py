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
import gc
import logging
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import asyncpg
import redis.asyncio as aioredis

from data.events import Side, TradeEvent
from data.pairs import Pair
from execution.copy import journal, notices, positions
from execution.copy.booking import Booker, final_state
from execution.copy.errors import SessionLost, transient
from execution.copy.journal import Intent, intent_id
from execution.copy.leader_equity import LeaderEquity
from execution.copy.model import (
    OPEN_STATES,
    CopyAction,
    IntentState,
    Refusal,
)
from execution.copy.notices import Notice, NoticeKind
from execution.copy.planner import Planner
from execution.copy.regime import RegimeSource
from execution.copy.sizing import partial_close_amount
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

# Within one batch, what must reach the venue before a close of the same position.
_SEND_ORDER = {
    CopyAction.UPDATE_TP_SL: 0,
    CopyAction.PARTIAL_CLOSE: 1,
    CopyAction.CLOSE: 2,
    CopyAction.OPEN: 3,
}


def freeze_startup_objects() -> None:
    """Leave what the process built at start (imported modules, the venue's clients, the pool)
    out of Python's full garbage-collection passes. Those passes walk every tracked object: with
    web3 and friends imported, one took up to 40 ms, and it landed inside a fan-out."""
    gc.collect()
    gc.freeze()


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
    lanes: int = 2  # sessions working a large fan-out side by side
    lane_min: int = 200  # intents per lane at least (smaller fan-outs take one session)
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
        self.planner = Planner(
            venue.name,
            feed,
            catalogue,
            max_delay_ms=self.config.max_delay_ms,
            kill_switch=self._kill_switch,
            leader_equity=leader_equity,
            regime=regime,
        )
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

    async def plan(self, conn: asyncpg.Connection, event: TradeEvent) -> list[Intent]:
        return await self.planner.plan(conn, event)

    # --- execution ----------------------------------------------------------------------------

    async def handle(self, event: TradeEvent) -> dict[str, int]:
        """Copy one leader event for every follower; safe to call again for the same event."""
        started = time.perf_counter()
        conn = await self._session()
        intents = await self.plan(conn, event)
        if not intents:
            return {}
        # The first chunk is locked before it is written, and written as `sent`: it is sent next,
        # so it needs neither a second write nor a re-read. A large one is split in lanes, each
        # locked and worked by a session of its own, side by side: while one lane waits on
        # PostgreSQL or the venue, another computes.
        first = [i for i in intents if i.state is IntentState.PLANNED and not i.waits_for_open][
            : self.config.chunk
        ]
        parts = self._lanes(first)
        sessions = [conn] + [await self.pool.acquire() for _ in parts[1:]]
        held: list[set[str]] = []
        try:
            for session, part in zip(sessions, parts, strict=True):
                held.append(set(await journal.claim(session, _ids(part))))
            owned = set().union(*held)
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
            lanes: list[list[Intent]] = []
            for part, mine in zip(parts, held, strict=True):
                fresh = [i for i in part if i.intent_id in mine and i.intent_id in new]
                for i in fresh:
                    i.fresh = True
                lanes.append(fresh)
            # Redelivered: the stored intent (planned or sent before) counts, not today's plan.
            lanes[0] += await journal.workable(conn, [i for i in held[0] if i not in new])
            done = await asyncio.gather(
                *(self._process(session, lane) for session, lane in zip(sessions, lanes, strict=True)),
                return_exceptions=True,
            )
            failures = [d for d in done if isinstance(d, BaseException)]
            for d in done:
                if isinstance(d, dict):
                    _add(outcome, d)
            if failures:
                raise failures[0]
        finally:
            for session, mine in zip(sessions, held, strict=False):
                await self._release(session, mine)
            for session in sessions[1:]:
                await self.pool.release(session)
        worked = {i for lane in lanes for i in _ids(lane)}
        rest = [
            i.intent_id
            for i in intents
            if i.intent_id not in worked and not (i.refusal and i.intent_id in new)
        ]
        for start in range(0, len(rest), self.config.chunk):
            _add(outcome, await self.work(rest[start : start + self.config.chunk]))
        LATENCY.observe(time.perf_counter() - started)
        return outcome

    def _lanes(self, first: list[Intent]) -> list[list[Intent]]:
        """The first chunk in `lanes` parts of at least `lane_min` intents (one part if small)."""
        n = max(1, min(self.config.lanes, len(first) // max(1, self.config.lane_min)))
        size = -(-len(first) // n) if first else 0
        return [first[k * size : (k + 1) * size] for k in range(n)] if first else [[]]

    async def work(self, ids: list[str], conn: asyncpg.Connection | None = None) -> dict[str, int]:
        """Take the intents this session (the engine's, or `conn`) can lock, and bring each to a
        final state (or, for a close whose open has not settled, one step closer)."""
        conn = conn or await self._session()
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
                # Not waited onto disk: the intents are durably `sent` already, so a booking lost
                # to a PostgreSQL crash is found by the sweep and booked again from the venue's
                # answer (a lookup), like any crash after the send. It saves a flush per batch.
                await conn.execute("SET LOCAL synchronous_commit TO off")
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
            await self._wake(conn, waiting)
        return counts

    async def _wake(self, conn: asyncpg.Connection, waiting: list[str]) -> None:
        """Follow-ups that waited for what was just booked go out now, not at the next sweep
        (which still finds them if this fails), on the session that booked it."""
        try:
            await self.work(waiting, conn)
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
