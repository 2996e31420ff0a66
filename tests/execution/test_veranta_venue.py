"""The Veranta venue through veranta-sdk in delegate mode, against a local fake of Veranta's
services that builds the intents with the SDK's own schemas and verifies the EIP-712 signature
the SDK sends: our delegate key signs for followers who registered it, and for no one else."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import pytest
from eth_account import Account

from data.events import EventKind, Side
from execution.copy.engine import CopyEngine, EngineConfig
from execution.venues.base import VenueOrder, VenuePending
from execution.venues.paper import DictPriceFeed
from execution.venues.veranta import VerantaVenue
from research.pnl import open_fee
from tests.conftest import shared_data_or_skip
from tests.execution.copy_fixtures import BTC, CATALOGUE, add_followers, leader_event
from tests.fakes.veranta_backend import FEE_PPM, VerantaBackend, running_backend

pytestmark = pytest.mark.integration
DELEGATE_KEY = "0x" + hashlib.sha256(b"vanta-veranta-delegate").hexdigest()
DELEGATE = Account.from_key(DELEGATE_KEY).address.lower()
USDC = 10**6


def wallet(n: int) -> str:
    return Account.from_key("0x" + hashlib.sha256(f"follower-{n}".encode()).hexdigest()).address


@pytest.fixture
async def backend() -> AsyncIterator[VerantaBackend]:
    fake = VerantaBackend(
        shared_data_or_skip("avantis", "trading_snapshot.json"), prices={BTC: Decimal(60_000)}
    )
    async with running_backend(fake) as running:
        yield running


def open_order(ref: str, account: str, **kw: object) -> VenueOrder:
    args: dict[str, object] = {
        "client_ref": ref,
        "account": account,
        "action": "open",
        "pair_index": BTC,
        "side": Side.LONG,
        "collateral_usdc": 250 * USDC,
        "leverage": Decimal(4),
        "reference_price": Decimal(60_000),
        "max_slippage_bps": 50,
        **kw,
    }
    return VenueOrder(**args)  # type: ignore[arg-type]


async def test_delegate_opens_and_closes_for_a_follower_exactly_once(
    backend: VerantaBackend, migrated_pool: asyncpg.Pool
) -> None:
    follower, stranger = wallet(1), wallet(2)
    backend.delegates[follower.lower()] = {DELEGATE}
    venue = VerantaVenue(migrated_pool, DELEGATE_KEY, backend.sdk_config())
    try:
        opened, refused = await venue.submit_many([open_order("o-1", follower), open_order("o-2", stranger)])
        fee = open_fee(250 * USDC, 4 * 10**10, FEE_PPM)
        assert (opened.status, opened.collateral_usdc, opened.fee_usdc, opened.price) == (
            "filled",
            250 * USDC - fee,
            fee,
            Decimal(60_000),
        )
        assert refused.status == "rejected" and "INVALID_SIGNER" in (refused.reason or "")
        assert backend.refusals == ["INVALID_SIGNER"]
        # Asked again (a restarted engine): the stored outcome, no second order.
        again = await venue.submit_many([open_order("o-1", follower)])
        assert again == [opened] and len(backend.executions) == 1
        positions = await venue.open_positions(follower)
        assert [(p.position_ref, p.collateral_usdc, p.leverage) for p in positions] == [
            ("1:0", 250 * USDC - fee, Decimal(4))
        ]

        tpsl = VenueOrder("u-1", follower, "update_tp_sl", BTC, position_ref="1:0", sl=Decimal("58500"))
        (moved,) = await venue.submit_many([tpsl])
        assert moved.filled and (await venue.open_positions(follower))[0].position_ref == "1:0"
        assert backend.positions[follower.lower()][(BTC, 0)]["sl"] == str(58_500 * 10**10)

        backend.prices[BTC] = Decimal(61_200)
        part = VenueOrder(
            "c-1", follower, "partial_close", BTC, collateral_usdc=100 * USDC, position_ref="1:0"
        )
        (closed_part,) = await venue.submit_many([part])
        assert closed_part.filled and closed_part.collateral_usdc == 100 * USDC
        assert closed_part.pnl_usdc == closed_part.usdc_sent - 100 * USDC > 0  # type: ignore[operator]
        rest = VenueOrder("c-2", follower, "close", BTC, collateral_usdc=150 * USDC - fee, position_ref="1:0")
        (closed,) = await venue.submit_many([rest])
        assert closed.filled and await venue.open_positions(follower) == []
        # The relayer saw three signed intents, each once, each signed by our delegate for the follower.
        kinds = [e["intent"] for e in backend.executions]
        assert kinds == ["OpenTradeReq", "UpdateTpSlReq", "CloseTradeReq", "CloseTradeReq"]
        assert len({e["_nonce"] for e in backend.executions}) == 4
        # Nor can our key move the levels of someone who revoked it.
        backend.delegates[stranger.lower()] = {DELEGATE}
        (own,) = await venue.submit_many([open_order("o-3", stranger, reference_price=Decimal(61_200))])
        assert own.filled
        backend.delegates[stranger.lower()] = set()
        tpsl = VenueOrder("u-s", stranger, "update_tp_sl", BTC, position_ref="1:0", tp=Decimal("70000"))
        (denied,) = await venue.submit_many([tpsl])
        assert denied.status == "rejected" and "INVALID_SIGNER" in (denied.reason or "")
        assert backend.positions[stranger.lower()][(BTC, 0)]["tp"] == "0"
    finally:
        await venue.close()


async def test_orders_lost_mid_request_are_resolved_not_resent(
    backend: VerantaBackend, migrated_pool: asyncpg.Pool
) -> None:
    """The crash windows: after the relayer announced a trackingId (the lifecycle is replayed),
    and before it did (decided by the follower's positions once the intent's deadline passed)."""
    pool, follower = migrated_pool, wallet(3)
    backend.delegates[follower.lower()] = {DELEGATE}
    venue = VerantaVenue(pool, DELEGATE_KEY, backend.sdk_config())
    try:
        (first,) = await venue.submit_many([open_order("o-1", follower)])
        # As if the engine died right after MarketOrderAccepted: the outcome was never stored.
        await pool.execute("UPDATE veranta_orders SET outcome = NULL WHERE client_ref = 'o-1'")
        assert await venue.lookup(["o-1"]) == {"o-1": first}
        # Died before any event: no trackingId. Within the deadline it stays unknown...
        await pool.execute(
            "INSERT INTO veranta_orders (client_ref, account, action, pair_index, side, requested) "
            "VALUES ('o-lost', $1, 'open', $2, 'short', 100000000)",
            follower.lower(),
            BTC,
        )
        with pytest.raises(VenuePending):
            await venue.lookup(["o-lost"])
        with pytest.raises(VenuePending):
            await venue.submit_many([open_order("o-lost", follower, side=Side.SHORT)])
        # ...and after it, with no short on the venue, it never executed.
        await pool.execute("UPDATE veranta_orders SET created_at = now() - interval '10 minutes'")
        lost = (await venue.lookup(["o-lost"]))["o-lost"]
        assert lost.status == "rejected" and "never reached" in (lost.reason or "")
        assert len(backend.executions) == 1
    finally:
        await venue.close()


async def test_engine_copies_through_the_veranta_venue(
    backend: VerantaBackend, migrated_pool: asyncpg.Pool
) -> None:
    pool = migrated_pool
    wallets = [wallet(10), wallet(11)]
    for w in wallets:
        backend.delegates[w.lower()] = {DELEGATE}
    profiles = await add_followers(pool, 2, wallets=wallets, venue="veranta")
    venue = VerantaVenue(pool, DELEGATE_KEY, backend.sdk_config())
    feed = DictPriceFeed({BTC: Decimal(60_000)})
    try:
        async with CopyEngine(
            pool, None, venue, feed, CATALOGUE, EngineConfig(max_delay_ms=60_000)
        ) as engine:
            opened = leader_event(EventKind.OPEN)
            assert await engine.handle(opened) == {"refused": 0, "filled": 2}
            close = leader_event(EventKind.CLOSE, n=1, open_ts=opened.open_ts, closed=opened.collateral_usdc)
            assert await engine.handle(close) == {"refused": 0, "filled": 2}
        rows = await pool.fetch(
            "SELECT profile_id, status, realized_pnl_usdc FROM copy_positions ORDER BY profile_id"
        )
        assert [(r["profile_id"], r["status"]) for r in rows] == [(p, "closed") for p in profiles]
        assert len(backend.executions) == 4 and all(not backend.positions.get(w.lower()) for w in wallets)
        assert backend.snapshot_requests == 1  # one pair catalogue for all followers
    finally:
        await venue.close()
