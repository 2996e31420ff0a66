"""`vanta ingest history` against real PostgreSQL and Redis: idempotent, conflicts apart from
repeats, every stored event published in event order, even across a failure between the two."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
import redis

from data.sources.veranta_history.ingest import events_for, ingest_files
from data.sources.veranta_history.records import load_file, parse_trade
from data.store import KIND_RANK, insert_events
from tests.conftest import shared_data_or_skip
from tests.servers import hand_started_redis

pytestmark = pytest.mark.integration
VANTA = str(Path(sys.executable).parent / "vanta")


def real_files() -> list[Path]:
    return sorted(shared_data_or_skip("avantis", "trades").glob("*.json"))


def vanta(*args: str, db: str, redis_url: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db, "REDIS_URL": redis_url, "VANTA_HOME": str(home)}
    return subprocess.run([VANTA, *args], env=env, capture_output=True, text=True, timeout=300)


def stream_events(redis_url: str) -> list[dict]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return [json.loads(fields["data"]) for _id, fields in client.xrange("events")]
    finally:
        client.close()


def assert_event_order(published: list[dict]) -> None:
    """By time, and within a position: its open first, its last close last."""
    keys = [(e["ts"], KIND_RANK[e["kind"]], e["event_id"]) for e in published]
    assert keys == sorted(keys)
    first_seen: dict[str, str] = {}
    for e in published:
        position = e["event_id"].split(":open")[0].split(":close")[0]
        first_seen.setdefault(position, e["kind"])
    assert set(first_seen.values()) == {"open"}


async def test_files_ingest_once_and_conflicts_are_not_duplicates(
    migrated_pool: asyncpg.Pool, tmp_path
) -> None:
    paths = real_files()
    async with migrated_pool.acquire() as conn:
        first = await ingest_files(conn, paths)
        again = await ingest_files(conn, paths)
    base = {"files": 3, "trades": 373, "conflicts": 0, "rejected": 0}
    assert first.summary() == {**base, "inserted": 373, "duplicates": 0}
    assert again.summary() == {**base, "inserted": 0, "duplicates": 373}
    assert await migrated_pool.fetchval("SELECT count(*) FROM event_outbox") == await migrated_pool.fetchval(
        "SELECT count(*) FROM trade_events"
    )

    doc = json.loads(paths[0].read_text(), parse_float=Decimal)
    trades = doc["trades"]
    changed = {**trades[1], "usdcSent": trades[1]["usdcSent"] + 1}  # same identity, other value
    doc["trades"] = [
        {**trades[0], "time": "2030-01-01T00:00:00.000Z"},  # a new close of a known position
        {"time": "yesterday"},
        {**trades[2], "leverage": -1},
        changed,
    ]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc, default=str))
    async with migrated_pool.acquire() as conn:
        mixed = await ingest_files(conn, [bad])
    assert (mixed.rejected, mixed.conflicts) == (2, 1)
    reasons = {p["trade"]: p.get("reason") or p["conflict"] for p in mixed.rejections}
    assert "missing" in reasons[1] and "leverage -1 is outside" in reasons[2]
    assert "is stored with other values: usdc_sent stored" in reasons[3]
    assert mixed.inserted + mixed.duplicates + mixed.conflicts + mixed.rejected == 4


async def test_the_bulk_path_stores_exactly_the_canonical_events(migrated_pool: asyncpg.Pool) -> None:
    """PostgreSQL builds the events of the bulk path; they must be the rows `events_for` gives."""
    paths = real_files()
    query = "SELECT * FROM trade_events ORDER BY event_id"

    def comparable(rows: list[asyncpg.Record]) -> list[dict]:
        return [{**dict(r), "raw": json.loads(r["raw"]), "inserted_at": None} for r in rows]

    async with migrated_pool.acquire() as conn:
        await ingest_files(conn, paths, stream=None)
        bulk = comparable(await conn.fetch(query))
        await conn.execute("TRUNCATE trade_events")
        for p in paths:
            trader, records = load_file(p)
            await insert_events(conn, events_for([parse_trade(trader, r) for r in records]))
        one_by_one = comparable(await conn.fetch(query))
    assert len(bulk) > 373 and bulk == one_by_one


def write_doc(path: Path, address: str, trades: list[dict]) -> Path:
    path.write_text(json.dumps({"address": address, "count": len(trades), "trades": trades}, default=str))
    return path


# Each malformed record (one field as raw JSON text), and what the user reads about it on stderr.
MALFORMED = [
    ("collateral", "1e15", "collateral 1E+15 is outside [0, 1000000000]"),
    ("leverage", "1e25", "leverage 1E+25 is outside [0, 1000]"),
    ("pairIndex", "2147483648", "pairIndex 2147483648 is outside [0, 9999]"),
    ("pairIndex", '"1e999999999"', "pairIndex '1e999999999' is outside [0, 9999]"),
    ("pairIndex", "1e999999999", "pairIndex 1E+999999999 is outside [0, 9999]"),
    ("pairIndex", "1.7", "pairIndex must be a whole number, not 1.7"),
    (
        "openedAt",
        "-1",
        "openedAt -1 is outside [1577836800, 4102444800] (epoch seconds, 2020-01-01 .. 2100-01-01)",
    ),
    ("index", "-1", "index -1 is outside [0, 99999]"),
    ("time", '"0001-01-01T00:00:00Z"', "time '0001-01-01T00:00:00Z' is outside 2020-01-01 .. 2100-01-01"),
    ("symbol", '"BTC\\u0000/USD"', "symbol must be printable text of at most 32 characters: 'BTC\\x00/USD'"),
    ("usdcSent", "NaN", "usdcSent is not a number: nan"),
    ("buy", '"true"', "buy is not a boolean: 'true'"),
]


def with_raw_field(record: dict, name: str, raw: str) -> str:
    """The record as JSON with one field's value written as the given JSON text."""
    return json.dumps({**record, name: "__RAW__"}, default=str).replace('"__RAW__"', raw)


def test_cli_names_the_file_record_and_field_of_each_and_exits_1(empty_db_url: str, tmp_path: Path) -> None:
    """One file: a good record, then each malformed one (a different position each)."""
    trader, records = load_file(real_files()[0])
    bad_records = [with_raw_field(records[i + 1], name, raw) for i, (name, raw, _) in enumerate(MALFORMED)]
    bad = tmp_path / "bad.json"
    body = ", ".join([json.dumps(records[0], default=str), *bad_records])
    bad.write_text(f'{{"address": "{trader}", "trades": [{body}]}}')
    with hand_started_redis(tmp_path) as redis_url:
        done = vanta(
            "ingest", "history", str(bad), db=empty_db_url, redis_url=redis_url, home=tmp_path / "home"
        )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"rejected: {bad}: trade {i + 1}: {message}" for i, (_, _, message) in enumerate(MALFORMED)
    ]
    assert json.loads(done.stdout) == {
        "files": 1,
        "trades": 1 + len(MALFORMED),
        "inserted": 1,
        "duplicates": 0,
        "conflicts": 0,
        "rejected": len(MALFORMED),
        "published": 2,
    }


def test_cli_refuses_bad_addresses_and_unreadable_files(empty_db_url: str, tmp_path: Path) -> None:
    cases = {
        write_doc(
            tmp_path / "empty_address.json", "", []
        ): "address is not a 0x address of 40 hex digits: ''",
        write_doc(
            tmp_path / "short.json", "0x12", []
        ): "address is not a 0x address of 40 hex digits: '0x12'",
        write_doc(tmp_path / "sql.json", "'; DROP TABLE x; --", []): "address is not a 0x address",
    }
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    cases[deep] = "JSON nested too deeply"
    with hand_started_redis(tmp_path) as redis_url:
        done = vanta(
            "ingest", "history", *map(str, cases), db=empty_db_url, redis_url=redis_url, home=tmp_path / "h"
        )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == len(cases)
    for (path, message), line in zip(cases.items(), lines, strict=True):
        assert line.startswith(f"rejected: {path}: ") and message in line
    assert json.loads(done.stdout) == {
        "files": 4,
        "trades": 0,
        "inserted": 0,
        "duplicates": 0,
        "conflicts": 0,
        "rejected": 4,
        "published": 0,
    }


async def test_a_failed_publish_is_finished_by_the_rerun(empty_db_url: str, tmp_path: Path) -> None:
    """good.json then bad.json; the stream refuses the events after they are committed (its key
    holds a plain string: every XADD fails, as a crash between the two would leave it). The
    rerun publishes every stored event, in event order, and `vanta db check` sees the gap."""
    good = real_files()[0]
    trader, records = load_file(good)
    bad = write_doc(tmp_path / "bad.json", trader, [{**records[0], "collateral": "1e15"}])
    home = tmp_path / "home"
    with hand_started_redis(tmp_path) as redis_url:
        client = redis.Redis.from_url(redis_url)
        client.set("events", "not a stream")
        failed = vanta(
            "ingest", "history", str(good), str(bad), db=empty_db_url, redis_url=redis_url, home=home
        )
        assert failed.returncode == 1 and "Traceback" not in failed.stderr
        assert "could not be published" in failed.stderr and "WRONGTYPE" in failed.stderr

        conn = await asyncpg.connect(empty_db_url)
        try:
            stored = await conn.fetchval("SELECT count(*) FROM trade_events")
            assert (
                stored > len(records) and await conn.fetchval("SELECT count(*) FROM event_outbox") == stored
            )
            await conn.execute("UPDATE event_outbox SET enqueued_at = now() - interval '1 hour'")
            check = vanta("db", "check", "--json", db=empty_db_url, redis_url=redis_url, home=home)
            assert check.returncode == 1, check.stderr
            result = {c["name"]: c for c in json.loads(check.stdout)["checks"]}["unpublished_events"]
            assert result["count"] == stored and not result["ok"]

            client.delete("events")
            rerun = vanta("ingest", "history", str(good), db=empty_db_url, redis_url=redis_url, home=home)
            assert rerun.returncode == 0, rerun.stderr
            summary = json.loads(rerun.stdout)
            assert summary["inserted"] == 0 and summary["duplicates"] == len(records)
            assert summary["published"] == stored
            assert await conn.fetchval("SELECT count(*) FROM event_outbox") == 0
        finally:
            await conn.close()
        published = stream_events(redis_url)
        assert len(published) == stored == len({e["event_id"] for e in published})
        assert_event_order(published)
        assert vanta("db", "check", db=empty_db_url, redis_url=redis_url, home=home).returncode == 0
        client.close()


def test_every_real_trade_reaches_the_stream_in_event_order(empty_db_url: str, tmp_path: Path) -> None:
    paths = real_files()
    with hand_started_redis(tmp_path) as redis_url:
        done = vanta(
            "ingest", "history", *map(str, paths), db=empty_db_url, redis_url=redis_url, home=tmp_path / "h"
        )
        assert done.returncode == 0, done.stderr
        published = stream_events(redis_url)
    summary = json.loads(done.stdout)
    assert summary["inserted"] == 373 and summary["published"] == len(published) > 373
    assert_event_order(published)
    first = datetime.fromtimestamp(published[0]["ts"], UTC)
    assert first.year >= 2020
