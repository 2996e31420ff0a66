"""Benchmark of log decoding (`vanta bench`): raw logs to canonical events, no node involved."""

from __future__ import annotations

import time

from eth_abi import encode

from data.protocol.abi import EVENTS, TRADE_TYPE
from data.protocol.decode import Registry
from data.protocol.mapping import ChainMapper, LogContext

_ME = ["uint256", TRADE_TYPE, "bool", "uint256", "uint256", "int256", "uint256", "bool"]


def _logs(n: int) -> list[tuple[list[bytes], bytes, LogContext]]:
    topic = next(
        bytes.fromhex(a.topic0[2:]) for a in EVENTS if a.name == "MarketExecuted" and a.version == "1.5"
    )
    out = []
    for i in range(n):
        trade = (
            "0x" + f"{i % 5000:040x}",
            i % 3,
            i % 5,
            1_000_000_000,
            0,
            60_000 * 10**10,
            i % 2 == 0,
            10 * 10**10,
            0,
            0,
            1_700_000_000 + i,
        )
        opening = i % 2 == 0
        data = encode(
            _ME,
            [
                i,
                trade,
                opening,
                60_000 * 10**10,
                1_000_000_000,
                0 if opening else 10**10,
                0 if opening else 1_090_000_000,
                False,
            ],
        )
        out.append(([topic], data, LogContext(8453, f"0x{i:064x}", 0, i, f"0x{i:064x}", 1_700_000_000 + i)))
    return out


def run() -> dict[str, float]:
    logs = _logs(100_000)
    registry, mapper = Registry(), ChainMapper()
    t0 = time.perf_counter()
    events = [mapper.map(registry.decode(topics, data), ctx) for topics, data, ctx in logs]
    elapsed = time.perf_counter() - t0
    assert all(e is not None for e in events)
    return {"decode_logs_per_s": round(len(logs) / elapsed)}
