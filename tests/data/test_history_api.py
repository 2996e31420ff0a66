"""Veranta history API through veranta-sdk, against a local server paging the real files."""

from __future__ import annotations

import json

import asyncpg
import pytest
from veranta_sdk import AsyncVeranta

from data.events import TradeEvent
from data.sources.veranta_history.api import fetch_trade_history, ingest_traders
from data.sources.veranta_history.ingest import events_for
from data.sources.veranta_history.records import RecordError, load_file, parse_trade
from tests.conftest import shared_data_or_skip
from tests.fakes.veranta_history import history_server

pytestmark = pytest.mark.integration


async def test_paged_history_ingests_like_the_files_and_only_once(migrated_pool: asyncpg.Pool) -> None:
    files = sorted(shared_data_or_skip("avantis", "trades").glob("*.json"))
    traders = [load_file(p)[0] for p in files]
    async with history_server(files) as (url, requests), AsyncVeranta(history_api_url=url) as client:
        async with migrated_pool.acquire() as conn:
            first = await ingest_traders(conn, client.info, traders, limit=50)
            again = await ingest_traders(conn, client.info, traders, limit=50)
    base = {"files": 3, "trades": 373, "conflicts": 0, "rejected": 0}
    assert first.summary() == {**base, "inserted": 373, "duplicates": 0}
    assert again.summary() == {**base, "inserted": 0, "duplicates": 373}
    # Each trader's pages were walked to the first short page: ceil((n + 1) / 50) requests each.
    counts = [len(load_file(p)[1]) for p in files]
    assert len(requests) == 2 * sum(n // 50 + 1 for n in counts)
    expected = {
        ev.event_id: ev
        for p in files
        for ev in events_for([parse_trade(load_file(p)[0], r) for r in load_file(p)[1]])
    }
    rows = await migrated_pool.fetch("SELECT event_id, raw FROM trade_events")
    assert {r["event_id"]: TradeEvent.from_record(json.loads(r["raw"])) for r in rows} == expected


class _Pages:
    def __init__(self, pages: list[object]):
        self.pages = pages

    async def trade_history(self, trader: str, page: int = 0, limit: int = 20) -> object:
        return self.pages[page]


async def test_a_page_of_the_wrong_shape_is_an_error_not_an_empty_history() -> None:
    with pytest.raises(RecordError, match="page 1 of 0xabc"):
        await fetch_trade_history(_Pages([[{"x": 1}, {"x": 2}], {"error": "rate limited"}]), "0xabc", limit=2)
    assert await fetch_trade_history(_Pages([[{"x": 1}, {"x": 2}], []]), "0xabc", limit=2) == [
        {"x": 1},
        {"x": 2},
    ]
