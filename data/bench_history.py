"""`vanta ingest history` timed as a whole command (`vanta bench`): process start to summary, on a
population of history files in the API's shape, into a scratch database and a scratch Redis.

The files are generated: closed trades whose numbers obey the API's own identity
(usdcSent = positionSize + gross - closingFee - funding), partial closes included, newest first
as the API lists them. No model is fit to them; they only have the real files' shape and size.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

TARGET_TRADES_PER_S = 20_000
_MICRO = Decimal("0.000001")
_E10 = Decimal("0.0000000001")


def _trade_json(t: dict[str, object]) -> str:
    return "{" + ", ".join(f'"{k}": {_json_value(v)}' for k, v in t.items()) + "}"


def _json_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)


def history_file_text(address: str, rng: random.Random, n_trades: int, start_ts: int) -> str:
    """One trader's closed trades, newest first, as the history API answers."""
    trades: list[dict[str, object]] = []
    ts = start_ts
    next_index: dict[int, int] = {}
    while len(trades) < n_trades:
        pair = rng.randrange(0, 90)
        index = next_index.get(pair, 0)
        next_index[pair] = (index + 1) % 5
        ts += rng.randrange(60, 4 * 3600)
        opened_at = ts
        buy = rng.random() < 0.5
        leverage = (Decimal(rng.randrange(10_000_000_000, 500_000_000_000)) * _E10).normalize()
        open_price = (Decimal(rng.randrange(10**9, 10**15)) * _E10).normalize()
        collateral = Decimal(rng.randrange(10_000_000, 5_000_000_000)) * _MICRO
        closes = 1 if rng.random() < 0.8 else rng.randrange(2, 4)
        for k in range(closes):
            if len(trades) >= n_trades:
                break
            ts += rng.randrange(30, 12 * 3600)
            last = k == closes - 1
            size = (
                collateral if last else (collateral * Decimal(rng.randrange(20, 70)) / 100).quantize(_MICRO)
            )
            move = Decimal(rng.randrange(-400, 500)) / 10_000
            close_price = (open_price * (1 + move)).quantize(_E10)
            sign = 1 if buy else -1
            gross = (size * leverage * (close_price - open_price) / open_price * sign).quantize(
                _MICRO, ROUND_HALF_EVEN
            )
            fee = (size * leverage * Decimal("0.00045")).quantize(_MICRO)
            funding = (size * Decimal(rng.randrange(0, 200)) / 100_000).quantize(_MICRO)
            sent = size + gross - fee - funding
            if sent < 0:  # liquidated: nothing comes back
                gross, sent = -size, Decimal(0)
            trades.append(
                {
                    "time": datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                    "gross": gross,
                    "pairIndex": pair,
                    "symbol": f"P{pair}/USD",
                    "index": index,
                    "buy": buy,
                    "leverage": leverage,
                    "openPrice": open_price,
                    "tp": 0,
                    "sl": 0,
                    "collateral": collateral,
                    "positionSize": size,
                    "closePrice": close_price,
                    "usdcSent": sent,
                    "openedAt": opened_at,
                    "closingFee": fee,
                    "funding": funding,
                }
            )
            collateral -= size
    trades.reverse()
    body = ", ".join(_trade_json(t) for t in trades)
    return f'{{"address": "{address}", "count": {len(trades)}, "trades": [{body}]}}'


def write_population(folder: Path, *, traders: int = 600, trades: int = 206_938, seed: int = 5) -> list[Path]:
    """`traders` files holding `trades` closed trades in all (sizes vary like real traders')."""
    rng = random.Random(seed)
    weights = [rng.paretovariate(1.5) for _ in range(traders)]
    scale = trades / sum(weights)
    counts = [max(1, int(w * scale)) for w in weights]
    counts[0] += trades - sum(counts)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, n in enumerate(counts):
        address = "0x" + "".join(rng.choice("0123456789abcdefABCDEF") for _ in range(40))
        path = folder / f"trader_{i:04d}.json"
        path.write_text(history_file_text(address, rng, max(n, 1), 1_735_689_600 + rng.randrange(0, 86_400)))
        paths.append(path)
    return paths


def _vanta() -> str:
    return str(Path(sys.executable).parent / "vanta")


async def _timed_ingest(paths: list[Path], home: Path) -> dict[str, float]:
    from infra import db, embedded
    from infra.settings import get_settings

    redis_url = embedded.embedded_redis_url(home)  # a Redis of its own: the real stream stays clean
    async with db.scratch_database(embedded.database_url(get_settings())) as url:
        env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_url}
        started = time.perf_counter()
        done = await asyncio.to_thread(
            subprocess.run,
            [_vanta(), "ingest", "history", *map(str, paths)],
            env=env,
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"vanta ingest history failed: {done.stderr[-2000:]}")
    embedded.stop_embedded_redis(home)
    import json

    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "ingest_history_trades_per_s": round(summary["trades"] / elapsed),
        "ingest_history_trades_per_s_target": TARGET_TRADES_PER_S,
        "ingest_history_trades": summary["trades"],
        "ingest_history_files": summary["files"],
        "ingest_history_s": round(elapsed, 2),
    }


def run() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="vanta-bench-history-") as tmp:
        paths = write_population(Path(tmp) / "files")
        return asyncio.run(_timed_ingest(paths, Path(tmp) / "home"))
