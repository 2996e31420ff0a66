"""The same real closed trades through both paths give the same realized PnL per position.

History path: the Veranta history API records → canonical events → the research ledger.
Chain path: the same trades replayed as transactions on the Avantis mock (anvil), each close
executed with the outcome mainnet computed, indexed from the node's logs → PostgreSQL → the same
ledger. What the chain carries that the history API does not: the opening fee (the API reports
collateral after it, and no fee); so per position, chain PnL + opening fee = history PnL, to the
micro-USDC, and the opening fee is exactly deposit − collateral. What the chain cannot carry
exactly: `gross`, which it holds as percentProfit (1e-10 %) × size, within 1 micro-USDC.
"""

from __future__ import annotations

import json

import asyncpg
import pytest

from data.events import TradeEvent
from data.sources.chain.indexer import Indexer, IndexerConfig
from data.sources.chain.replay import replay_with_outcomes
from data.sources.chain.rpc import ChainRpc
from data.sources.veranta_history.ingest import events_for
from data.sources.veranta_history.records import load_file, parse_trade
from infra.chain.anvil import DEFAULT_KEYS, run_anvil
from infra.chain.contracts import deploy
from research.ledger import PositionLedger
from tests.conftest import shared_data_or_skip

pytestmark = pytest.mark.integration
CHAIN_ID = 31337


def sample(events: list[TradeEvent], singles: int) -> list[TradeEvent]:
    """Every position closed in several steps or liquidated, and the first `singles` others."""
    closes: dict[str, list[TradeEvent]] = {}
    for e in events:
        if e.is_close:
            closes.setdefault(e.position_key, []).append(e)
    rich = {k for k, cs in closes.items() if len(cs) > 1 or any(c.kind == "liquidation" for c in cs)}
    plain = sorted(k for k in closes if k not in rich)[:singles]
    keep = rich | set(plain)
    return [e for e in events if e.position_key in keep]


@pytest.mark.parametrize(
    "files,singles",
    [
        # One trader in `make test`: its partial closes, its liquidation and 30 other positions...
        pytest.param(["eda73.json"], 30, id="one_trader"),
        # ...all three files (324 positions, 373 closes, ~1,400 transactions) in `make soak`.
        pytest.param(["d49c1.json", "dce95.json", "eda73.json"], None, id="all", marks=pytest.mark.soak),
    ],
)
async def test_real_closed_trades_give_the_same_realized_pnl_through_chain_and_history(
    migrated_pool: asyncpg.Pool, files: list[str], singles: int | None
) -> None:
    folder = shared_data_or_skip("avantis", "trades")
    history: list[TradeEvent] = []
    for path in (folder / name for name in files):
        trader, records = load_file(path)
        events = events_for([parse_trade(trader, r) for r in records])
        history += events if singles is None else sample(events, singles)
    history.sort(key=lambda e: (e.ts, e.kind != "open", e.event_id))
    by_history = PositionLedger()
    history_closes = by_history.apply_all(history)

    with run_anvil(genesis_timestamp=min(e.ts for e in history) - 86_400) as node:
        chain = deploy(node.http_url, DEFAULT_KEYS[0])
        replayed = replay_with_outcomes(chain, history)
        head = int(node.rpc("eth_blockNumber"), 16)  # type: ignore[arg-type]
        rpc = ChainRpc(node.http_url)
        config = IndexerConfig(CHAIN_ID, (chain.trading.address.lower(),), confirmation_depth=0)
        try:
            async with Indexer(rpc, migrated_pool, None, config) as indexer:
                await indexer.backfill(0, head)
        finally:
            await rpc.close()

    rows = await migrated_pool.fetch("SELECT raw FROM trade_events ORDER BY block_number, log_index")
    on_chain = [TradeEvent.from_record(json.loads(r["raw"])) for r in rows]
    by_chain = PositionLedger()
    chain_closes = by_chain.apply_all(on_chain)
    opens = {e.position_key: e for e in on_chain if e.kind == "open"}

    assert len(replayed) == len(by_history.positions) == len(by_chain.positions) > 30
    assert len(chain_closes) == len(history_closes) > len(by_history.positions)
    assert {"partial_close", "close", "liquidation"} <= {c.kind for c in history_closes}
    mismatched = []
    for key, hist in by_history.positions.items():
        mined = replayed[key]
        pos = by_chain.positions[mined.position_key]
        fee = opens[mined.position_key].open_fee_usdc
        assert fee == mined.deposit_usdc - hist.open_collateral_usdc > 0
        if pos.realized_pnl_usdc + fee != hist.realized_pnl_usdc or pos.is_open or hist.is_open:
            mismatched.append((key, hist.realized_pnl_usdc, pos.realized_pnl_usdc, fee))
    assert mismatched == []

    # Close by close: what was paid, closed, charged, and how the position ended.
    chain_key = {k: v.position_key for k, v in replayed.items()}
    hist_by_pos: dict[str, list] = {}
    for c in history_closes:
        hist_by_pos.setdefault(chain_key[c.position_key], []).append(c)
    chain_by_pos: dict[str, list] = {}
    for c in chain_closes:
        chain_by_pos.setdefault(c.position_key, []).append(c)
    assert hist_by_pos.keys() == chain_by_pos.keys()
    for key, closes in hist_by_pos.items():
        for h, c in zip(closes, chain_by_pos[key], strict=True):
            assert (c.kind, c.usdc_sent, c.collateral_closed_usdc, c.close_fee_usdc, c.rollover_fee_usdc) == (
                h.kind,
                h.usdc_sent,
                h.collateral_closed_usdc,
                h.close_fee_usdc,
                h.rollover_fee_usdc,
            )
    gross_gap = max(
        abs((c.gross_pnl_usdc or 0) - (h.gross_pnl_usdc or 0))
        for h, c in zip(
            sorted((e for e in history if e.is_close), key=lambda e: (chain_key[e.position_key], e.ts)),
            sorted((e for e in on_chain if e.is_close), key=lambda e: (e.position_key, e.ts)),
            strict=True,
        )
    )
    assert gross_gap <= 1
    total_history = sum(p.realized_pnl_usdc for p in by_history.positions.values())
    total_chain = sum(p.realized_pnl_usdc for p in by_chain.positions.values())
    total_fees = sum(e.open_fee_usdc for e in opens.values())
    print(
        f"{len(replayed)} positions, {len(chain_closes)} closes: history PnL {total_history} µUSDC = chain PnL {total_chain} + "
        f"opening fees {total_fees}; gross within {gross_gap} µUSDC"
    )
