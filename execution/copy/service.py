"""What a follower or an operator does with copy trading, in one place: profiles, follows and
their settings, copies and PnL per leader, recent copies and refusals, notifications, pause,
resume, stop, the kill switch, reconciliation, and running the engine. `vanta`'s commands call
these functions now and the Telegram bot calls the same ones next (freqtrade's `rpc.py` beside
its Telegram and REST clients).

Every input is validated here, where it enters, against the same bounds the engine and the
database's CHECK constraints use; anything refused is a `CopyError` naming the field with a
message for people, and nothing is half-written. Every call says who acts (`Actor`): a Telegram
user sees and changes only their own profiles ("no such profile" otherwise, the same answer as
for a profile that does not exist); the operator (the CLI on the server) sees all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from data.events import Side, TradeEvent
from data.pairs import Pair, load_catalogue
from data.units import format_usdc, to_e10
from execution.copy import follows, journal, notices, positions, profiles
from execution.copy.inputs import (
    Actor,
    CopyError,
    FollowInput,
    ProfileInput,
    follow_config,
    needs_equity,
    needs_wallet,
    parse_address,
    parse_venue,
    profile_name,
    profile_values,
    record_id,
    telegram_id,
)
from execution.copy.model import ProfileStatus
from execution.copy.render import render
from execution.copy.views import (
    CopiesReport,
    CopyView,
    Followed,
    FollowView,
    LeaderPnl,
    NoticeView,
    PositionView,
    ProfileView,
    as_dict,
)
from execution.venues.base import VenueName
from execution.venues.factory import VenueConfigError, VenueParts, build_venue
from infra.settings import Settings

__all__ = [
    "Actor",
    "CopiesReport",
    "CopyError",
    "CopyService",
    "CopyView",
    "EngineOptions",
    "FollowInput",
    "FollowView",
    "Followed",
    "LeaderPnl",
    "NoticeView",
    "PositionView",
    "ProfileInput",
    "ProfileView",
    "as_dict",
    "parse_venue",
    "run_engine",
    "until_stopped",
    "usdc",
]


@asynccontextmanager
async def _refused_by_database() -> AsyncIterator[None]:
    """The CHECK constraints are the last line: a value that passed the checks above but not
    theirs is still a clear refusal, and its transaction wrote nothing."""
    try:
        yield
    except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError) as exc:
        what = getattr(exc, "constraint_name", None) or str(exc).splitlines()[0]
        raise CopyError(f"refused by the database ({what})") from None


# --- the service ------------------------------------------------------------------------------------


class CopyService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: aioredis.Redis | None = None,
        settings: Settings | None = None,
        catalogue: dict[int, Pair] | None = None,
    ):
        self.pool = pool
        self.redis = redis
        self.settings = settings
        if catalogue is None:
            snapshot = settings.shared_data_dir / "avantis" / "trading_snapshot.json" if settings else None
            catalogue = load_catalogue(snapshot)
        self.catalogue = catalogue

    # --- ownership ---

    async def _is_admin(self, conn: asyncpg.Connection, actor: Actor) -> bool:
        if actor.is_operator:
            return True
        user = await profiles.user_of(conn, actor.telegram_user_id or 0)
        return bool(user and user["is_admin"])

    async def _profile(self, conn: asyncpg.Connection, actor: Actor, profile_id: int | str) -> asyncpg.Record:
        pid = record_id(profile_id, "profile")
        row = await profiles.profile(conn, pid)
        if row is None or not (actor.is_operator or row["telegram_user_id"] == actor.telegram_user_id):
            raise CopyError(f"no such profile {pid}", "profile")
        return row

    async def _follow(self, conn: asyncpg.Connection, actor: Actor, follow_id: int | str) -> follows.Follow:
        fid = record_id(follow_id, "follow")
        found = await follows.follow(conn, fid)
        if found is None:
            raise CopyError(f"no live follow {fid}", "follow")
        owner = await profiles.profile(conn, found.profile.id)
        if owner is None or not (actor.is_operator or owner["telegram_user_id"] == actor.telegram_user_id):
            raise CopyError(f"no live follow {fid}", "follow")
        return found

    async def _admin(self, conn: asyncpg.Connection, actor: Actor, what: str) -> None:
        if not await self._is_admin(conn, actor):
            raise CopyError(f"only an operator may {what}")

    # --- profiles ---

    async def profiles(self, actor: Actor) -> list[ProfileView]:
        async with self.pool.acquire() as conn:
            return [ProfileView.of(r) for r in await profiles.profiles_of(conn, actor.telegram_user_id)]

    async def create_profile(self, actor: Actor, p: ProfileInput) -> ProfileView:
        if actor.is_operator:
            raise CopyError("a profile belongs to a Telegram user: say which one", "user")
        name, venue, values = profile_name(p.name), parse_venue(p.venue), profile_values(p)
        needs_wallet(venue, values.get("wallet_address"))
        async with self.pool.acquire() as conn, _refused_by_database(), conn.transaction():
            if await profiles.profile_named(conn, actor.telegram_user_id or 0, name) is not None:
                raise CopyError(f"you already have a profile named {name!r}", "profile")
            pid = await _new_profile(conn, actor, name, venue, values)
            return ProfileView.of(await profiles.profile(conn, pid))

    async def update_profile(
        self,
        actor: Actor,
        profile_id: int | str,
        *,
        name: str | None = None,
        wallet: str | None = None,
        equity: str | None = None,
        daily_loss_limit: str | None = None,
        max_drawdown_pct: str | None = None,
        max_total_exposure: str | None = None,
    ) -> ProfileView:
        """Change the settings given (None leaves one as it is); the venue cannot change."""
        values = profile_values(
            ProfileInput(
                wallet=wallet,
                equity=equity,
                daily_loss_limit=daily_loss_limit,
                max_drawdown_pct=max_drawdown_pct,
                max_total_exposure=max_total_exposure,
            )
        )
        if name is not None:
            values["name"] = profile_name(name)
        async with self.pool.acquire() as conn, _refused_by_database(), conn.transaction():
            row = await self._profile(conn, actor, profile_id)
            await profiles.update(conn, row["id"], values)
            return ProfileView.of(await profiles.profile(conn, row["id"]))

    async def delete_profile(self, actor: Actor, profile_id: int | str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._profile(conn, actor, profile_id)
            still = await positions.open_count(conn, row["id"])
            if still:
                raise CopyError(
                    f"profile {row['id']} still holds {still} open cop{'y' if still == 1 else 'ies'}: stop it and let them close first",
                    "profile",
                )
            await follows.stop_follows_of_profile(conn, row["id"])
            await profiles.delete(conn, row["id"])

    async def _set_status(
        self, actor: Actor, profile_id: int | str, status: ProfileStatus, reason: str | None
    ) -> ProfileView:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._profile(conn, actor, profile_id)
            await profiles.set_status(conn, [row["id"]], status, reason)
            return ProfileView.of(await profiles.profile(conn, row["id"]))

    async def pause(self, actor: Actor, profile_id: int | str) -> ProfileView:
        """No new copies; closes of open copies are still mirrored."""
        return await self._set_status(actor, profile_id, ProfileStatus.PAUSED, "by_user")

    async def resume(self, actor: Actor, profile_id: int | str) -> ProfileView:
        return await self._set_status(actor, profile_id, ProfileStatus.ACTIVE, None)

    async def stop(self, actor: Actor, profile_id: int | str) -> ProfileView:
        """Copying stopped until resumed; open copies still follow their leader's closes."""
        return await self._set_status(actor, profile_id, ProfileStatus.STOPPED, "by_user")

    # --- follows ---

    async def follow(
        self, actor: Actor, leader: str, settings: FollowInput, profile: ProfileInput
    ) -> Followed:
        """Follow `leader` from the user's profile `profile.name`, created with the given settings if
        new (the given ones updated if not). Everything is checked first and written in one
        transaction: a refused follow leaves nothing behind."""
        if actor.is_operator:
            raise CopyError("a follow belongs to a Telegram user: say which one", "user")
        leader_address = parse_address(leader, "leader")
        config = follow_config(settings)
        name, venue, values = (
            profile_name(profile.name),
            parse_venue(profile.venue),
            profile_values(profile),
        )
        async with self.pool.acquire() as conn, _refused_by_database(), conn.transaction():
            existing = await profiles.profile_named(conn, actor.telegram_user_id or 0, name)
            if existing is not None and existing["venue"] != venue.value:
                raise CopyError(f"profile {name!r} trades on {existing['venue']}, not {venue.value}", "venue")
            wallet = values.get("wallet_address", existing["wallet_address"] if existing else None)
            equity = values.get("equity_usdc", existing["equity_usdc"] if existing else None)
            needs_wallet(venue, wallet)
            needs_equity(config, equity)
            if existing is None:
                pid = await _new_profile(conn, actor, name, venue, values)
            else:
                pid = existing["id"]
                await profiles.update(conn, pid, values)
            fid = await follows.add_follow(conn, pid, leader_address, config)
        return Followed(pid, fid)

    async def edit_follow(self, actor: Actor, follow_id: int | str, settings: FollowInput) -> FollowView:
        config = follow_config(settings)
        async with self.pool.acquire() as conn, _refused_by_database(), conn.transaction():
            current = await self._follow(conn, actor, follow_id)
            needs_equity(config, current.profile.equity_usdc)
            await follows.replace_config(conn, current.id, current.profile.id, config)
            (row,) = [
                r for r in await follows.listing(conn, None, current.profile.id) if r["id"] == current.id
            ]
            return FollowView.of(row)

    async def unfollow(self, actor: Actor, follow_id: int | str) -> None:
        """Stop copying a leader (open copies stay open; their closes are no longer mirrored)."""
        async with self.pool.acquire() as conn, conn.transaction():
            current = await self._follow(conn, actor, follow_id)
            await follows.stop_follow(conn, current.id)

    async def follows(self, actor: Actor, profile_id: int | str | None = None) -> list[FollowView]:
        async with self.pool.acquire() as conn:
            pid = None if profile_id is None else (await self._profile(conn, actor, profile_id))["id"]
            return [FollowView.of(r) for r in await follows.listing(conn, actor.telegram_user_id, pid)]

    # --- copies and PnL ---

    def _pair(self, index: int | None) -> str:
        pair = self.catalogue.get(index) if index is not None else None
        return pair.symbol if pair else f"pair {index}"

    def _unrealized(self, r: asyncpg.Record, marks: Mapping[int, Decimal]) -> int | None:
        """What closing an open copy at the pair's latest known price would realize."""
        from research.pnl import close_outcome

        mark, pair = marks.get(r["pair_index"]), self.catalogue.get(r["pair_index"])
        if r["status"] != "open" or mark is None or pair is None or r["collateral_usdc"] <= 0:
            return None
        out = close_outcome(
            r["collateral_usdc"],
            to_e10(r["leverage"], exact=False),
            to_e10(r["entry_price"], exact=False),
            to_e10(mark, exact=False),
            Side(r["side"]),
            close_fee_ppm=pair.close_fee_ppm,
            max_gain_pct=pair.max_gain_pct,
        )
        return out.usdc_sent - r["collateral_usdc"]

    async def marks(self, events: int = 2_000) -> dict[int, Decimal]:
        """Each pair's latest price in the event stream's recent fills (what the engine prices by)."""
        if self.redis is None:
            return {}
        from infra.bus import StreamBus

        latest: dict[int, Decimal] = {}
        for msg in await StreamBus(self.redis).latest(events):
            event = TradeEvent.from_record(msg.payload)
            if event.price:
                latest[event.pair_index] = event.price
        return latest

    async def copies(
        self, actor: Actor, profile_id: int | str, marks: Mapping[int, Decimal] | None = None
    ) -> CopiesReport:
        """A profile's copied positions, and per leader: realized PnL, unrealized where a price
        is known (`marks`), fees and the slippage cost against the leader's fills."""
        marks = marks or {}
        async with self.pool.acquire() as conn:
            row = await self._profile(conn, actor, profile_id)
            held = await positions.of_profile(conn, row["id"])
            leaders = await positions.per_leader(conn, row["id"])
        views = [
            PositionView(
                r["leader_address"],
                r["pair_index"],
                self._pair(r["pair_index"]),
                r["side"],
                r["status"],
                r["collateral_usdc"],
                r["leverage"],
                r["entry_price"],
                r["leader_entry_price"],
                r["exit_price"],
                r["leader_exit_price"],
                r["open_fee_usdc"],
                r["close_fee_usdc"],
                r["realized_pnl_usdc"],
                self._unrealized(r, marks),
                r["is_manual"],
            )
            for r in held
        ]
        per_leader = []
        for r in leaders:
            mine = [
                v
                for v in views
                if v.status == "open" and ("manual" if v.is_manual else v.leader) == r["leader"]
            ]
            unknown = any(v.unrealized_pnl_usdc is None for v in mine)
            unrealized = None if unknown else sum(v.unrealized_pnl_usdc or 0 for v in mine)
            per_leader.append(
                LeaderPnl(
                    r["leader"],
                    r["positions"],
                    r["open"],
                    r["realized_pnl_usdc"] or 0,
                    unrealized,
                    r["fees_usdc"] or 0,
                    r["slippage_cost_usdc"],
                )
            )
        return CopiesReport(row["id"], views, per_leader)

    async def recent(self, actor: Actor, profile_id: int | str, limit: int = 20) -> list[CopyView]:
        """The latest copies and refusals of a profile, newest first."""
        async with self.pool.acquire() as conn:
            row = await self._profile(conn, actor, profile_id)
            rows = await journal.recent(conn, row["id"], max(1, min(int(limit), 500)))
        return [
            CopyView(
                r["created_at"],
                r["leader_address"],
                r["action"],
                r["state"],
                self._pair(r["pair_index"]),
                r["collateral_usdc"],
                r["fill_price"],
                r["pnl_usdc"],
                r["reason"],
            )
            for r in rows
        ]

    async def notifications(
        self, actor: Actor, limit: int = 20, *, telegram_user_id: int | str | None = None
    ) -> list[NoticeView]:
        """A user's latest notifications rendered (the operator names the user)."""
        who = actor.telegram_user_id if not actor.is_operator else telegram_user_id
        if who is None:
            raise CopyError("whose notifications? give a Telegram user id", "user")
        async with self.pool.acquire() as conn:
            user = await profiles.user_of(conn, telegram_id(who))
            if user is None:
                return []
            stored = await notices.recent(conn, user["id"], max(1, min(int(limit), 500)))
        return [_notice_view(n) for n in stored]

    async def pending_notifications(
        self, actor: Actor, limit: int = 100, levels: list[str] | None = None
    ) -> list[NoticeView]:
        """What is still to deliver, oldest first, rendered and addressed (the bot's outbox)."""
        from execution.copy.notices import Level

        async with self.pool.acquire() as conn:
            await self._admin(conn, actor, "read everyone's notifications")
            wanted = [Level(lv) for lv in levels] if levels else None
            return [
                _notice_view(n) for n in await notices.pending(conn, max(1, min(int(limit), 1000)), wanted)
            ]

    async def mark_notified(self, actor: Actor, ids: list[int], *, delivered: bool) -> None:
        """After sending: delivered, or one more failed attempt (given up after five)."""
        async with self.pool.acquire() as conn:
            await self._admin(conn, actor, "mark notifications")
            await notices.mark(conn, [int(i) for i in ids], delivered)

    # --- operator ---

    async def kill_switch(self, actor: Actor, on: bool) -> bool:
        """Stop (or resume) every copy across all engines at once."""
        from execution.copy.engine import KILL_SWITCH_KEY

        async with self.pool.acquire() as conn:
            await self._admin(conn, actor, "switch the kill switch")
        if self.redis is None:
            raise CopyError("the kill switch lives in Redis, which this command was not given")
        if on:
            await self.redis.set(KILL_SWITCH_KEY, "1")
        else:
            await self.redis.delete(KILL_SWITCH_KEY)
        return on

    def venue_parts(self, feed: Any = None, paper_latency_ms: int = 0) -> VenueParts:
        from execution.venues.paper import DictPriceFeed

        if self.settings is None:
            raise CopyError("building a venue needs the settings")
        return VenueParts(self.pool, self.catalogue, feed or DictPriceFeed(), self.settings, paper_latency_ms)

    def venue(self, name: str | VenueName, feed: Any = None, paper_latency_ms: int = 0) -> Any:
        """The venue named (a `CopyError` for a name that is not one, or a missing key)."""
        chosen = parse_venue(str(name))
        try:
            return build_venue(chosen, self.venue_parts(feed, paper_latency_ms))
        except VenueConfigError as exc:
            raise CopyError(str(exc), "venue") from None

    async def reconcile(self, actor: Actor, venue: str | VenueName, *, fix: bool = False) -> list[Any]:
        """Followers' open positions on the venue against the journal (see `reconcile.py`)."""
        from execution.copy.reconcile import reconcile

        async with self.pool.acquire() as conn:
            await self._admin(conn, actor, "reconcile")
        target = self.venue(venue)
        try:
            return await reconcile(self.pool, target, fix=fix)
        finally:
            await target.close()


@dataclass
class EngineOptions:
    venue: str = "paper"
    paper_latency_ms: int = 0
    from_start: bool = False
    claim_idle_ms: int = 5_000
    stream: str = "events"
    group: str | None = None
    chunk: int = 250


async def run_engine(
    service: CopyService, options: EngineOptions, stop: asyncio.Event, grace_s: float = 1.0
) -> None:
    """The copy engine on the event stream until `stop`; the step in hand gets `grace_s` to end,
    then is cancelled (safe at any point: the journal, not memory, says what is left)."""
    from execution.copy.engine import CopyEngine, EngineConfig, LastPriceFeed, freeze_startup_objects
    from execution.copy.leader_equity import ChainLeaderEquity
    from execution.copy.regime_service import service_regime

    if service.settings is None or service.redis is None:
        raise CopyError("the engine needs the settings and Redis")
    settings = service.settings
    feed = LastPriceFeed()
    target = service.venue(options.venue, feed, options.paper_latency_ms)
    config = EngineConfig(
        max_delay_ms=settings.copy_execution_max_delay_ms,
        claim_idle_ms=options.claim_idle_ms,
        stream=options.stream,
        group=options.group or f"copy-{target.name.value}",
        chunk=options.chunk,
        open_wait_s=settings.copy_open_wait_s,
    )
    # Leaders' equity (proportional sizing) from the chain; unreachable, it is a refusal.
    equity = ChainLeaderEquity.on_demand(settings.base_rpc_url, settings.usdc_address)
    # Guarded opens ask the serving layer (SERVING_URL) for the pair's regime; no answer: refused.
    regime, serving = service_regime(settings, service.catalogue)
    try:
        async with CopyEngine(
            service.pool,
            service.redis,
            target,
            feed,
            service.catalogue,
            config,
            leader_equity=equity,
            regime=regime,
        ) as engine:
            freeze_startup_objects()
            await until_stopped(engine.run(stop, start_id="0" if options.from_start else "$"), stop, grace_s)
    finally:
        await asyncio.gather(target.close(), equity.close(), serving.close(), return_exceptions=True)


async def until_stopped(work: Any, stop: asyncio.Event, grace_s: float = 1.0) -> Any:
    """Run `work` until it ends or `stop` is set; after `stop`, it has `grace_s` to finish its
    step, then it is cancelled (a retry loop or a slow venue never holds the process)."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait({task}, timeout=grace_s)
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=grace_s)
        return task.result() if task.done() and not task.cancelled() else None
    finally:
        stopping.cancel()


def _notice_view(n: notices.StoredNotice) -> NoticeView:
    return NoticeView(
        n.id,
        n.kind.value,
        n.level.value,
        render(n.kind, n.fields),
        n.fields,
        n.created_at,
        n.status,
        n.telegram_user_id,
    )


def usdc(micro: int | None, *, signed: bool = False) -> str:
    """Money for people (exact), or a dash when unknown."""
    return "—" if micro is None else format_usdc(micro, signed=signed)


async def _new_profile(
    conn: asyncpg.Connection, actor: Actor, name: str, venue: VenueName, values: dict[str, Any]
) -> int:
    """A profile of `actor` from its checked values (`profile_values`), for create and follow alike."""
    return await profiles.ensure_profile(
        conn,
        telegram_user_id=actor.telegram_user_id,
        name=name,
        venue=venue.value,
        equity_usdc=values.get("equity_usdc"),
        wallet_address=values.get("wallet_address"),
        daily_loss_limit_usdc=values.get("daily_loss_limit_usdc"),
        max_drawdown_pct=values.get("max_drawdown_pct"),
        max_total_exposure_usdc=values.get("max_total_exposure_usdc"),
    )
