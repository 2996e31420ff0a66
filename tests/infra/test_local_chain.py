"""The Avantis mock on a real anvil node: its logs decode with the mainnet ABIs, and every close
reproduces through the ledger formula to the micro-USDC."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_account import Account

from data.events import EventKind
from data.pairs import builtin_catalogue
from data.protocol.decode import Registry
from data.protocol.mapping import ChainMapper, LogContext
from infra.chain.anvil import DEFAULT_KEYS, run_anvil
from infra.chain.contracts import LocalAvantis, deploy
from research.reconcile import reconcile_events

pytestmark = pytest.mark.integration
E10 = 10**10
KEEPER, TRADER, DELEGATE, STRANGER = DEFAULT_KEYS[:4]


@pytest.fixture(scope="module")
def chain() -> Iterator[LocalAvantis]:
    with run_anvil() as node:
        local = deploy(node.http_url, KEEPER)
        for key in (TRADER,):
            addr = Account.from_key(key).address
            local.transact(local.usdc.functions.mint(addr, 1_000_000 * 10**6), KEEPER)
            local.transact(local.usdc.functions.approve(local.trading.address, 2**255), key)
        yield local


def trade_tuple(trader: str, pair: int, collateral: int, buy: bool, lev: int) -> tuple:
    return (trader, pair, 0, collateral, 0, 0, buy, lev * E10, 0, 0, 0)


def events_of(local: LocalAvantis) -> list:
    registry, mapper = Registry(), ChainMapper()
    out = []
    for lg in local.w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest", "address": local.trading.address}):
        decoded = registry.decode([bytes(t) for t in lg["topics"]], bytes(lg["data"]))
        block = local.w3.eth.get_block(lg["blockNumber"])
        ctx = LogContext(
            31337,
            "0x" + bytes(lg["transactionHash"]).hex(),
            lg["logIndex"],
            lg["blockNumber"],
            "0x" + bytes(lg["blockHash"]).hex(),
            block["timestamp"],
        )
        ev = mapper.map(decoded, ctx)
        if ev is not None:
            out.append(ev)
    return out


def test_trades_on_the_mock_decode_and_reconcile(chain: LocalAvantis) -> None:
    trader = Account.from_key(TRADER).address
    fn = chain.trading.functions
    # Open two longs on BTC (index 0 and 1), then a short on ETH.
    for pair, buy, price in ((1, True, 60_000), (1, True, 61_000), (0, False, 3_000)):
        r = chain.transact(fn.openTrade(trade_tuple(trader, pair, 1_000 * 10**6, buy, 10), 0, 10**10), TRADER)
        chain.transact(fn.executeMarketOrder(chain.order_id(r), price * E10), KEEPER)
    # Partial close of BTC #0 at a profit, full close of it, TP on BTC #1, liquidation of the ETH short.
    r = chain.transact(fn.closeTradeMarket(1, 0, 400 * 10**6), TRADER)
    chain.transact(fn.executeMarketOrder(chain.order_id(r), 60_600 * E10), KEEPER)
    remaining = chain.trading.functions.openTrades(trader, 1, 0).call()[3]
    r = chain.transact(fn.closeTradeMarket(1, 0, remaining), TRADER)
    chain.transact(fn.executeMarketOrder(chain.order_id(r), 59_500 * E10), KEEPER)
    chain.transact(fn.executeLimit(trader, 1, 1, 0, 62_000 * E10), KEEPER)
    chain.transact(fn.executeLimit(trader, 0, 0, 2, 3_300 * E10), KEEPER)
    # The index is free again: a minute later a new BTC long reuses index 0 with a new open timestamp.
    chain.w3.provider.make_request("evm_increaseTime", [60])
    r = chain.transact(fn.openTrade(trade_tuple(trader, 1, 500 * 10**6, True, 5), 0, 10**10), TRADER)
    chain.transact(fn.executeMarketOrder(chain.order_id(r), 60_000 * E10), KEEPER)
    chain.transact(fn.updateTp(1, 0, 70_000 * E10), TRADER)

    events = events_of(chain)
    kinds = [e.kind for e in events]
    assert kinds.count(EventKind.OPEN) == 4
    assert {
        EventKind.PARTIAL_CLOSE,
        EventKind.CLOSE,
        EventKind.TP,
        EventKind.LIQUIDATION,
        EventKind.TP_SL_UPDATE,
    } <= set(kinds)
    check = reconcile_events(events, builtin_catalogue())
    assert check.mismatches == [] and check.closes == check.exact == 4
    reused = [e for e in events if e.kind is EventKind.OPEN and e.pair_index == 1 and e.trade_index == 0]
    assert len(reused) == 2 and len({e.position_key for e in reused}) == 2
    # USDC actually moved: the trader holds what the closes paid.
    sent = sum(e.usdc_sent for e in events if e.is_close)
    deposited = 3 * 1_000 * 10**6 + 500 * 10**6
    assert chain.usdc.functions.balanceOf(trader).call() == 1_000_000 * 10**6 - deposited + sent


def test_delegate_trades_for_the_follower_and_strangers_cannot(chain: LocalAvantis) -> None:
    trader = Account.from_key(TRADER).address
    delegate = Account.from_key(DELEGATE).address
    fn = chain.trading.functions
    chain.transact(fn.setDelegate(delegate), TRADER)
    calldata = fn.openTrade(
        trade_tuple(trader, 2, 200 * 10**6, True, 3), 0, 10**10
    )._encode_transaction_data()
    r = chain.transact(fn.delegatedAction(trader, calldata), DELEGATE)
    chain.transact(fn.executeMarketOrder(chain.order_id(r), 150 * E10), KEEPER)
    assert chain.trading.functions.openTrades(trader, 2, 0).call()[7] == 3 * E10
    from web3.exceptions import ContractLogicError

    with pytest.raises(ContractLogicError, match="not delegate"):
        chain.transact(fn.delegatedAction(trader, calldata), STRANGER)


def test_simulated_activity_replays_onto_the_chain_and_decodes_back() -> None:
    import polars as pl

    from data.sources.chain.replay import Replayer
    from research.sim.run import simulate

    sim = simulate(6, 3, 4, prices="synthetic", workers=1)
    events = sim.events
    with run_anvil(genesis_timestamp=int(events["ts"].min()) - 86_400) as node:
        local = deploy(node.http_url, KEEPER)
        sent = Replayer(local).replay(events)
        assert sent >= events.height
        chain_events = events_of(local)
    # The same positions, opened and closed the same way, at the same prices and times.
    sim_opens = events.filter(pl.col("kind") == "open").sort("ts", "event_id")
    chain_opens = sorted(
        (e for e in chain_events if e.kind is EventKind.OPEN), key=lambda e: (e.ts, e.event_id)
    )
    assert [(e.trader, e.pair_index, e.trade_index) for e in chain_opens] == list(
        zip(sim_opens["trader"], sim_opens["pair_index"], sim_opens["trade_index"], strict=True)
    )
    assert [e.collateral_usdc for e in chain_opens] == sim_opens["collateral_usdc"].to_list()
    sim_kinds = sorted(events["kind"].to_list())
    chain_kinds = sorted(e.kind.value for e in chain_events if e.kind is not EventKind.TP_SL_UPDATE)
    assert chain_kinds == sim_kinds
    assert reconcile_events(chain_events, builtin_catalogue()).mismatches == []
