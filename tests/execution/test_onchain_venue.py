"""The on-chain venue against the local Avantis contracts on anvil: our delegate trades for
followers through `delegatedAction`; one signed transaction per intent, whatever happens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import pytest

from data.events import Side
from execution.venues.base import VenueOrder, VenuePending
from tests.execution.onchain_fixtures import EXECUTION_FEE_WEI, USDC, LocalVenueChain, local_venue_chain

pytestmark = pytest.mark.integration
BTC = 1


@pytest.fixture
async def local() -> AsyncIterator[LocalVenueChain]:
    with local_venue_chain() as chain:
        yield chain
        await chain.close()


def open_order(ref: str, wallet: str, collateral: int = 500 * USDC, **kw: object) -> VenueOrder:
    args: dict[str, object] = {
        "client_ref": ref,
        "account": wallet,
        "action": "open",
        "pair_index": BTC,
        "side": Side.LONG,
        "collateral_usdc": collateral,
        "leverage": Decimal("5"),
        "reference_price": Decimal("60000"),
        "max_slippage_bps": 50,
        **kw,
    }
    return VenueOrder(**args)  # type: ignore[arg-type]


async def tx_count(local: LocalVenueChain, pool: asyncpg.Pool) -> tuple[int, int]:
    chain_nonce = local.chain.w3.eth.get_transaction_count(local.delegate)
    return chain_nonce, await pool.fetchval("SELECT count(*) FROM onchain_txs")


async def test_open_partial_close_tp_sl_and_close_reach_the_contract(
    local: LocalVenueChain, migrated_pool: asyncpg.Pool
) -> None:
    a, b = local.add_followers(2)
    stranger = local.add_followers(1, delegated=False)[0]
    venue = local.venue(migrated_pool)
    eth_before = local.chain.w3.eth.get_balance(local.delegate)
    usdc_before = local.usdc_of(a)
    with local.keeper(local.followers) as keeper:
        opened = await venue.submit_many(
            [
                open_order("o-a", a, tp=Decimal("66000")),
                open_order("o-b", b, 300 * USDC, side=Side.SHORT, leverage=Decimal("2.5")),
                open_order("o-s", stranger),
                open_order("o-small", a, 10 * USDC),  # 50 USDC notional: below the contract's minimum
            ]
        )
        assert [r.status for r in opened] == ["filled", "filled", "rejected", "rejected"]
        assert "not delegate" in (opened[2].reason or "")
        assert "below minimum position" in (opened[3].reason or "")
        fee_a = 500 * USDC * 5 * 450 // 1_000_000
        assert (opened[0].collateral_usdc, opened[0].fee_usdc) == (500 * USDC - fee_a, fee_a)
        assert opened[0].price == Decimal(60000) and opened[0].position_ref == "1:0"
        t = local.trade(a, BTC, 0)
        assert (t["collateral"], t["leverage"], t["buy"], t["tp"]) == (
            500 * USDC - fee_a,
            5 * 10**10,
            True,
            66_000 * 10**10,
        )
        assert local.usdc_of(a) == usdc_before - 500 * USDC
        tb = local.trade(b, BTC, 0)
        assert (tb["leverage"], tb["buy"]) == (25 * 10**9, False)

        local.prices[BTC] = 61_200 * 10**10  # +2 %
        part = open_order("p-a", a, action="partial_close", collateral_usdc=200 * USDC, position_ref="1:0")
        tpsl = VenueOrder("u-b", b, "update_tp_sl", BTC, position_ref="1:0", sl=Decimal("63000"))
        partial, updated = await venue.submit_many([part, tpsl])
        assert partial.filled and updated.filled
        assert partial.collateral_usdc == 200 * USDC and partial.pnl_usdc == partial.usdc_sent - 200 * USDC  # type: ignore[operator]
        assert partial.pnl_usdc > 0 and partial.fee_usdc > 0  # type: ignore[operator]
        assert local.trade(a, BTC, 0)["collateral"] == 500 * USDC - fee_a - 200 * USDC
        assert local.trade(b, BTC, 0)["sl"] == 63_000 * 10**10

        close = open_order("c-a", a, action="close", collateral_usdc=10**12, position_ref="1:0")
        (closed,) = await venue.submit_many([close])
        assert closed.filled and closed.collateral_usdc == 500 * USDC - fee_a - 200 * USDC
        assert local.trade(a, BTC, 0)["leverage"] == 0
        assert local.usdc_of(a) == usdc_before - 500 * USDC + partial.usdc_sent + closed.usdc_sent  # type: ignore[operator]
        assert keeper.errors == []
    # Four transactions were sent (two opens, a partial close with a TP/SL update, a close); the
    # three market orders among opens and closes paid the execution fee.
    assert await tx_count(local, migrated_pool) == (5, 5)
    spent = eth_before - local.chain.w3.eth.get_balance(local.delegate)
    assert spent >= 4 * EXECUTION_FEE_WEI
    positions = await venue.open_positions(b)
    assert [(p.position_ref, p.side, p.leverage) for p in positions] == [("1:0", Side.SHORT, Decimal("2.5"))]
    assert await venue.open_positions(a) == []


async def test_a_second_send_of_an_intent_never_signs_a_second_transaction(
    local: LocalVenueChain, migrated_pool: asyncpg.Pool
) -> None:
    (a,) = local.add_followers(1)
    venue = local.venue(migrated_pool, fill_timeout_s=1.0)
    order = open_order("o-1", a)
    # No keeper yet: the order is placed on chain but not filled, so the venue times out.
    with pytest.raises(VenuePending):
        await venue.submit_many([order])
    assert await tx_count(local, migrated_pool) == (1, 1)
    with local.keeper(local.followers):
        again = await local.venue(migrated_pool).submit_many([order])  # a restarted engine's retry
        looked_up = await venue.lookup(["o-1", "never-sent"])
    assert again[0].filled and looked_up == {"o-1": again[0]}
    assert await tx_count(local, migrated_pool) == (1, 1)
    assert local.chain.trading.functions.openCount(a, BTC).call() == 1


async def test_a_transaction_stored_but_never_broadcast_is_sent_by_the_next_lookup(
    local: LocalVenueChain, migrated_pool: asyncpg.Pool
) -> None:
    """The crash between storing a signed transaction and broadcasting it: its nonce would block
    every later one. The next engine's lookup (or any later wait) broadcasts the stored bytes."""
    a, b = local.add_followers(2)
    venue = local.venue(migrated_pool)
    first = open_order("lost", a)
    built = await venue._preflight(first)
    assert not hasattr(built, "status")
    max_fee, tip = await venue._fees()
    await venue._sign_and_store([(first, *built)], max_fee, tip)  # type: ignore[misc]
    with local.keeper(local.followers):
        (later,) = await venue.submit_many([open_order("later", b)])  # nonce 1 waits for nonce 0
        found = await venue.lookup(["lost"])
    assert later.filled and found["lost"].filled
    assert await tx_count(local, migrated_pool) == (2, 2)
    assert local.chain.trading.functions.openCount(a, BTC).call() == 1


async def test_gas_above_the_cap_sends_nothing(local: LocalVenueChain, migrated_pool: asyncpg.Pool) -> None:
    (a,) = local.add_followers(1)
    venue = local.venue(migrated_pool, max_fee_per_gas_wei=1)
    (result,) = await venue.submit_many([open_order("o", a)])
    assert result.status == "rejected" and "above the cap" in (result.reason or "")
    assert await tx_count(local, migrated_pool) == (0, 0)


async def test_a_fill_past_the_slippage_bound_is_canceled_and_refunded(
    local: LocalVenueChain, migrated_pool: asyncpg.Pool
) -> None:
    (a,) = local.add_followers(1)
    before = local.usdc_of(a)
    local.prices[BTC] = 60_400 * 10**10  # 0.67 % above the leader's 60,000, the bound is 0.5 %
    with local.keeper(local.followers):
        (result,) = await local.venue(migrated_pool).submit_many([open_order("o", a)])
    assert result.status == "rejected" and "canceled" in (result.reason or "")
    assert local.usdc_of(a) == before
    assert local.chain.trading.functions.openCount(a, BTC).call() == 0
