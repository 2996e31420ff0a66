"""`vanta pnl fifo` timed as a whole command (process start to CSV out), beside
ChicoPanama/Vanta-Bot's FIFO on the same fills when that repository is on disk.

The fills are long-only (every sell closes part of what was bought, as the issue's 1,000,000
fills were), so Vanta-Bot's `realized_pnl_fifo` (OPEN adds a lot, CLOSE takes from the oldest)
computes the same books. Its code is read from a local clone (`VANTA_BOT_REPO`, a git directory;
default the workplace's mirror) and never copied into this project.
"""

from __future__ import annotations

import csv
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl

TARGET_FILLS_PER_S = 1_000_000
TARGET_VS_VANTA_BOT = 5.0
VANTA_BOT_FIFO = "src/services/analytics/fifo_pnl.py"
DEFAULT_VANTA_BOT_REPO = Path("/work/.mirror/ChicoPanama+Vanta-Bot/repo")


def write_long_only_fills(path: Path, n: int, *, books: int = 2000, seed: int = 3) -> None:
    """n fills: buy-then-sell pairs per book, each sell at most the buy before it."""
    rng = np.random.default_rng(seed)
    half = n // 2
    book = rng.integers(0, books, half)
    buy_qty = rng.integers(1, 10**8, half)  # up to 1 unit, in 1e-8
    sell_qty = (buy_qty * rng.uniform(0.1, 1.0, half)).astype(np.int64).clip(1)
    ts = 1_704_067_200 + np.arange(half) * 2
    frame = pl.DataFrame(
        {
            "trader": np.char.add("0x", np.char.zfill((book // 2).astype(str), 40)),
            "pair": np.where(book % 2 == 0, "BTC/USD", "ETH/USD"),
            "buy_ts": ts,
            "buy_qty": buy_qty,
            "sell_qty": sell_qty,
            "buy_price": rng.integers(10**14, 10**15, half),
            "sell_price": rng.integers(10**14, 10**15, half),
            "fee": rng.integers(0, 10**10, half),
        }
    )

    def side(prefix: str, offset: int) -> pl.DataFrame:
        return frame.select(
            "trader",
            "pair",
            ts=pl.col("buy_ts") + offset,
            side=pl.lit("buy" if prefix == "buy" else "sell"),
            qty=(pl.col(f"{prefix}_qty").cast(pl.Decimal(38, 8)) / 10**8).cast(pl.Utf8),
            price=(pl.col(f"{prefix}_price").cast(pl.Decimal(38, 10)) / 10**10).cast(pl.Utf8),
            fee=(pl.col("fee").cast(pl.Decimal(38, 10)) / 10**10).cast(pl.Utf8),
        )

    pl.concat([side("buy", 0), side("sell", 1)]).sort("ts").write_csv(path)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time_command(path: Path, runs: int = 3) -> tuple[float, float, bytes]:
    """Median wall and CPU seconds of the whole command (CPU too: on a shared machine the wall
    clock mostly measures the neighbours)."""
    vanta = str(Path(sys.executable).parent / "vanta")
    walls, cpus, out = [], [], b""
    for _ in range(runs):
        cpu, started = _children_cpu(), time.perf_counter()
        done = subprocess.run([vanta, "pnl", "fifo", str(path)], capture_output=True, check=True)
        walls.append(time.perf_counter() - started)
        cpus.append(_children_cpu() - cpu)
        out = done.stdout
    return statistics.median(walls), statistics.median(cpus), out


def _vanta_bot_fifo(repo: Path):
    source = subprocess.run(
        ["git", "--git-dir", str(repo), "show", f"HEAD:{VANTA_BOT_FIFO}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    namespace: dict[str, object] = {}
    exec(compile(source, VANTA_BOT_FIFO, "exec"), namespace)  # their code, run as they wrote it
    return namespace["realized_pnl_fifo"]


def _vanta_bot_figures(path: Path, ours_cpu_s: float, ours_out: bytes) -> dict[str, object]:
    repo = Path(os.environ.get("VANTA_BOT_REPO", DEFAULT_VANTA_BOT_REPO))
    if not (repo / "HEAD").exists():
        return {
            "fifo_vs_vanta_bot": f"skipped: no clone of ChicoPanama/Vanta-Bot at {repo} (set VANTA_BOT_REPO)"
        }
    fifo = _vanta_bot_fifo(repo)
    # Their whole path in CPU seconds, in this process (no interpreter start counted for them):
    # CSV rows to Decimal fills per book, then their FIFO per book; against our whole command's.
    started = time.process_time()
    books: dict[tuple[str, str], list[tuple[str, Decimal, Decimal, Decimal]]] = defaultdict(list)
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            side = "OPEN" if row["side"] == "buy" else "CLOSE"
            books[(row["trader"], row["pair"])].append(
                (side, Decimal(row["qty"]), Decimal(row["price"]), Decimal(row["fee"]))
            )
    parsed = time.process_time()
    theirs = {key: fifo(fills) for key, fills in books.items()}
    done = time.process_time()
    # Same books, same net PnL (theirs is realized minus fees).
    ours = {}
    for row in csv.DictReader(ours_out.decode().splitlines()):
        ours[(row["trader"], row["pair"])] = Decimal(row["realized_pnl"]) - Decimal(row["fees_paid"])
    agree = ours == theirs
    whole = done - started
    return {
        "vanta_bot_fifo_whole_cpu_s": round(whole, 2),
        "vanta_bot_fifo_kernel_cpu_s": round(done - parsed, 2),
        "fifo_vs_vanta_bot": round(whole / ours_cpu_s, 1),
        "fifo_vs_vanta_bot_kernel_only": round((done - parsed) / ours_cpu_s, 1),
        "fifo_vs_vanta_bot_target": TARGET_VS_VANTA_BOT,
        "fifo_same_pnl_as_vanta_bot": agree,
    }


def run(n: int = 1_000_000) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="vanta-bench-fifo-") as tmp:
        path = Path(tmp) / "fills.csv"
        write_long_only_fills(path, n)
        wall, cpu, out = _time_command(path)
        figures: dict[str, object] = {
            "fifo_cli_fills_per_s": round(n / wall),
            "fifo_cli_fills_per_s_target": TARGET_FILLS_PER_S,
            "fifo_cli_fills_per_cpu_s": round(n / cpu),
            "fifo_cli_s": round(wall, 2),
            "fifo_cli_cpu_s": round(cpu, 2),
            "fifo_cli_fills": n,
        }
        figures.update(_vanta_bot_figures(path, cpu, out))
        return figures
