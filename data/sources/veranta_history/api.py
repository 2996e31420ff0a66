"""Closed trades from Veranta's history API through veranta-sdk (`info.trade_history`), paged.

The API answers a page in the shape of the files in `../shared/data/avantis/trades/`
(`{"address", "count", "trades": [...]}`); some deployments answer a bare list. Pages are read
until one comes back shorter than the page size, so a trader with exactly N×limit trades costs
one empty page more, never a missed one.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, Protocol

import asyncpg

from data.sources.veranta_history.ingest import IngestReport, ingest_records
from data.sources.veranta_history.records import RecordError
from infra.logs import log_fields

log = logging.getLogger("vanta.history_api")


class TradeHistoryApi(Protocol):
    """What this adapter needs of veranta-sdk's `AsyncVeranta().info`."""

    async def trade_history(self, trader: str, page: int = 0, limit: int = 20) -> Any: ...


def _exact(record: Any) -> Any:
    """The SDK decodes JSON numbers as floats. The server prints each number as the shortest text
    that round-trips (JavaScript's Number#toString), and so does Python's `repr`, so
    `Decimal(repr(x))` recovers the digits that were sent, exactly."""
    if isinstance(record, dict):
        return {k: Decimal(repr(v)) if isinstance(v, float) else v for k, v in record.items()}
    return record


def _page_records(reply: Any, trader: str, page: int) -> list[Any]:
    if isinstance(reply, list):
        return [_exact(r) for r in reply]
    if isinstance(reply, dict) and isinstance(reply.get("trades"), list):
        return [_exact(r) for r in reply["trades"]]
    raise RecordError(f"trade history page {page} of {trader}: expected a list or an object with 'trades'")


async def fetch_trade_history(
    info: TradeHistoryApi, trader: str, *, limit: int = 100, max_pages: int = 10_000
) -> list[Any]:
    records: list[Any] = []
    for page in range(max_pages):
        batch = _page_records(await info.trade_history(trader, page, limit), trader, page)
        records.extend(batch)
        log.debug("history page", extra=log_fields(trader=trader, page=page, records=len(batch)))
        if len(batch) < limit:
            return records
    raise RecordError(f"trade history of {trader} did not end within {max_pages} pages of {limit}")


async def ingest_traders(
    conn: asyncpg.Connection, info: TradeHistoryApi, traders: list[str], *, limit: int = 100
) -> IngestReport:
    report = IngestReport()
    for trader in traders:
        records = await fetch_trade_history(info, trader, limit=limit)
        await ingest_records(conn, trader, records, f"api:{trader}", report)
    return report
