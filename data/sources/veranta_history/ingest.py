"""Load closed-trade files in the history API's shape into `trade_events`, idempotently."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from data.events import TradeEvent
from data.sources.veranta_history.records import HistoryTrade, RecordError, load_file, parse_trade, to_events
from data.store import insert_events


@dataclass
class IngestReport:
    files: int = 0
    trades: int = 0
    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[dict[str, object]] = field(default_factory=list)
    new_events: list[TradeEvent] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("files", "trades", "inserted", "duplicates", "rejected")}


def events_for(trades: list[HistoryTrade]) -> list[TradeEvent]:
    """Each close plus one implied open per position, opened with its largest seen collateral."""
    opening: dict[str, Decimal] = {}
    for t in trades:
        opening[t.position_key] = max(opening.get(t.position_key, Decimal(0)), t.collateral)
    events: dict[str, TradeEvent] = {}
    for t in trades:
        opened, closed = to_events(t, opening[t.position_key])
        events.setdefault(opened.event_id, opened)
        events.setdefault(closed.event_id, closed)
    return list(events.values())


async def ingest_records(
    conn: asyncpg.Connection, trader: str, records: list[Any], origin: str, report: IngestReport
) -> None:
    """One trader's closed-trade records, whatever brought them (a file, the API's pages): each bad
    record is rejected with its reason, the rest are stored."""
    report.files += 1
    trades = []
    for i, rec in enumerate(records):
        report.trades += 1
        try:
            trades.append(parse_trade(trader, rec))
        except RecordError as exc:
            report.rejected += 1
            report.rejections.append({"file": origin, "trade": i, "reason": str(exc)})
    new = await insert_events(conn, events_for(trades))
    report.new_events.extend(new)
    new_closes = sum(1 for e in new if e.is_close)
    report.inserted += new_closes
    report.duplicates += len(trades) - new_closes


async def ingest_files(conn: asyncpg.Connection, paths: list[Path]) -> IngestReport:
    report = IngestReport()
    for path in paths:
        try:
            trader, records = load_file(path)
        except (RecordError, ValueError) as exc:
            report.files += 1
            report.rejected += 1
            report.rejections.append({"file": str(path), "reason": str(exc)})
            continue
        await ingest_records(conn, trader, records, str(path), report)
    return report
