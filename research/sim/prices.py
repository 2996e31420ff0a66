"""Price paths for the simulator: real futures candles replayed, or a seeded synthetic market.

Both give the same shape: per pair, 15-minute bars with open/high/low/close as integers of 1e-10
(the contracts' price unit), so fills, TP/SL triggers and liquidations are exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

BAR_SECONDS = 900
E10 = 10**10
REAL_FILES = {"BTC/USD": "BTC_USDT-15m-futures.feather", "ETH/USD": "ETH_USDT-15m-futures.feather"}


@dataclass(frozen=True)
class PricePath:
    symbol: str
    start_ts: int  # epoch seconds of bar 0
    open: np.ndarray  # int64, 1e-10
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    source: str  # "real:<file>" or "synthetic:<seed>"

    @property
    def bars(self) -> int:
        return len(self.close)


def _to_e10(values: np.ndarray) -> np.ndarray:
    # Candles come as floats; round to the 1e-10 grid once, here, and stay integer afterwards.
    return np.round(values * E10).astype(np.int64)


def real_paths(prices_dir: Path, days: int, *, start: str | None = None) -> dict[str, PricePath]:
    """The last `days` days of the real candles (or from `start`, ISO date)."""
    paths = {}
    for symbol, name in REAL_FILES.items():
        frame = pl.read_ipc(prices_dir / name).sort("date")
        if start is not None:
            frame = frame.filter(pl.col("date") >= pl.lit(start).str.to_datetime(time_zone="UTC"))
        else:
            frame = frame.tail(days * 96)
        frame = frame.head(days * 96)
        if frame.height < days * 96:
            raise ValueError(f"{name} holds {frame.height} bars, fewer than {days} days")
        start_ts = int(frame["date"][0].timestamp())
        paths[symbol] = PricePath(
            symbol,
            start_ts,
            *(_to_e10(frame[c].to_numpy()) for c in ("open", "high", "low", "close")),
            source=f"real:{name}",
        )
    return paths


def synthetic_paths(days: int, seed: int, *, start_ts: int = 1_735_689_600) -> dict[str, PricePath]:
    """Stochastic volatility with jumps and regime switches, one path per pair, correlated.

    Volatility follows a mean-reverting log process whose level switches between calm, normal
    and stressed regimes (a Markov chain on 15-minute bars); jumps arrive as a Poisson process.
    The parameters are set so daily moves, fat tails and volatility clustering resemble BTC/ETH.
    """
    rng = np.random.default_rng(seed)
    n = days * 96
    regimes = np.array([0.25, 0.5, 1.1]) / np.sqrt(365 * 96)  # annualised vol levels per bar
    stay = 0.998
    state = np.empty(n, dtype=np.int64)
    state[0] = 1
    switches = rng.random(n) > stay
    moves = rng.integers(0, 3, n)
    for t in range(1, n):
        state[t] = moves[t] if switches[t] else state[t - 1]
    log_vol = np.zeros(n)
    shocks = rng.normal(0, 0.05, n)
    for t in range(1, n):
        log_vol[t] = 0.97 * log_vol[t - 1] + shocks[t]
    vol = regimes[state] * np.exp(log_vol)
    common = rng.normal(0, 1, n)
    out = {}
    for k, (symbol, start_price, beta) in enumerate((("BTC/USD", 60_000.0, 1.0), ("ETH/USD", 3_000.0, 1.25))):
        own = rng.normal(0, 1, n)
        z = 0.8 * common + 0.6 * own
        jumps = (rng.random(n) < 0.0008) * rng.normal(0, 0.02, n)
        r = beta * vol * z + jumps - 0.5 * (beta * vol) ** 2
        close = start_price * np.exp(np.cumsum(r))
        open_ = np.concatenate([[start_price], close[:-1]])
        wick = np.abs(rng.normal(0, 1, (2, n))) * beta * vol * 0.6
        high = np.maximum(open_, close) * np.exp(wick[0])
        low = np.minimum(open_, close) * np.exp(-wick[1])
        out[symbol] = PricePath(
            symbol,
            start_ts,
            _to_e10(open_),
            _to_e10(high),
            _to_e10(low),
            _to_e10(close),
            source=f"synthetic:{seed}:{k}",
        )
    return out


def load_paths(days: int, seed: int, prices: str | Path | None) -> dict[str, PricePath]:
    """`prices` is a folder of real candles, or "synthetic"/None for the seeded generator."""
    if prices is None or prices == "synthetic":
        return synthetic_paths(days, seed)
    folder = Path(prices)
    missing = [name for name in REAL_FILES.values() if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"{folder} lacks {', '.join(missing)}; pass --prices synthetic to generate prices"
        )
    return real_paths(folder, days)
