"""`vanta ingest events FILE.parquet`: a file that is not canonical events is one line naming it
(and its first bad row), never a traceback and never half-stored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from data.event_frames import EVENT_SCHEMA, FrameError, read_events

VANTA = str(Path(sys.executable).parent / "vanta")
TRADER = "0x" + "ab" * 20


def good_frame(n: int = 3) -> pl.DataFrame:
    rows = {
        "event_id": [f"sim:{i}" for i in range(n)],
        "venue": ["avantis"] * n,
        "source": ["simulator"] * n,
        "trader": [TRADER] * n,
        "pair_index": [1] * n,
        "pair": ["BTC/USD"] * n,
        "kind": ["open"] * n,
        "trade_index": list(range(n)),
        "open_ts": [1_700_000_000] * n,
        "ts": [1_700_000_000] * n,
        "side": ["long"] * n,
        "collateral_usdc": [100_000_000] * n,
        "leverage_e10": [10 * 10**10] * n,
        "price_e10": [60_000 * 10**10] * n,
        "size_closed_usdc": [None] * n,
        "open_fee_usdc": [45_000] * n,
        "close_fee_usdc": [0] * n,
        "rollover_fee_usdc": [0] * n,
        "loss_protection_usdc": [0] * n,
        "usdc_sent": [None] * n,
        "gross_pnl_usdc": [None] * n,
        "tp_e10": [None] * n,
        "sl_e10": [None] * n,
    }
    return pl.DataFrame(rows, schema=EVENT_SCHEMA)


def with_row(column: str, value: object, row: int = 1) -> pl.DataFrame:
    frame = good_frame()
    values = frame[column].to_list()
    values[row] = value
    return frame.with_columns(pl.Series(column, values, dtype=frame[column].dtype))


CASES = [
    ("text", None, "not a readable Parquet file"),
    ("missing", good_frame().drop("kind", "ts"), "missing columns kind, ts"),
    (
        "wrong type",
        good_frame().with_columns(pl.col("ts").cast(pl.Utf8) + "x"),
        "a column has the wrong type",
    ),
    ("kind", with_row("kind", "teleport"), "row 1: kind is not one of open, close"),
    ("trader", with_row("trader", "not-an-address"), "row 1: trader is not a 0x address"),
    ("side", with_row("side", "sideways"), "row 1: side is not long or short"),
    ("negative", with_row("collateral_usdc", -5), "row 1: a money column"),
    ("leverage", with_row("leverage_e10", 10**17), "row 1: leverage outside (0, 1000]"),
    ("ts", with_row("ts", 10**12), "row 1: ts missing or outside 1970..2100"),
    ("pair", with_row("pair_index", 2**20), "row 1: pair_index missing or outside 0..9999"),
]


@pytest.mark.parametrize(("name", "frame", "message"), CASES, ids=[c[0] for c in CASES])
def test_each_bad_file_gets_its_message(
    tmp_path: Path, name: str, frame: pl.DataFrame | None, message: str
) -> None:
    path = tmp_path / "events.parquet"
    if frame is None:
        path.write_text("kind,ts\nopen,1\n")
    else:
        frame.write_parquet(path)
    with pytest.raises(FrameError) as err:
        read_events(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_good_file_reads_every_event(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    good_frame(5).write_parquet(path)
    assert [e.trade_index for e in read_events(path)] == [0, 1, 2, 3, 4]


def test_the_command_prints_one_line_and_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    with_row("kind", "teleport").write_parquet(path)
    # The file is refused before any server is touched: an unreachable database shows it.
    env = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none", "VANTA_HOME": str(tmp_path)}
    done = subprocess.run([VANTA, "ingest", "events", str(path)], capture_output=True, text=True, env=env)
    assert done.returncode == 1
    assert done.stderr.strip().startswith(f"vanta: {path}: row 1: kind is not one of")
    assert len(done.stderr.strip().splitlines()) == 1
