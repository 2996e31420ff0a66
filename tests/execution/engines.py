"""`vanta execute` processes for the multi-process copy tests, and the checks those tests share.

Every engine runs in its own process group, so killing the group takes whatever it started with
it; `Engines` kills every group it started when the test leaves it, passing or failing. Waits are
on progress, never on a wall clock: a loaded machine may be slow, but a test only fails when
nothing advanced for a long while.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType

import asyncpg

from data.events import EventKind, TradeEvent
from execution.copy.engine import ACTIONS
from execution.copy.journal import intent_id

VANTA = str(Path(sys.executable).parent / "vanta")
FINAL = "state NOT IN ('planned', 'sent', 'unknown')"


def engine_env(database_url: str, redis_url: str, home: Path, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "VANTA_HOME": str(home),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "COPY_EXECUTION_MAX_DELAY_MS": "600000",
        **extra,
    }


class Engines:
    """Engine processes sharing one consumer group, logging to one file."""

    def __init__(self, env: dict[str, str], log: Path, stream: str, *extra: str, group: str = "engines"):
        self.env = env
        self.log = log
        self.args = [VANTA, "execute", "--stream", stream, "--group", group, "--from-start", *extra]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.starts = 0

    def start(self, *more: str) -> subprocess.Popen[bytes]:
        self.starts += 1
        return self.spawn(*self.args, *more)

    def spawn(self, *command: str) -> subprocess.Popen[bytes]:
        """Any `vanta` command, under the same care (own process group, killed on exit)."""
        with self.log.open("ab") as sink:
            proc = subprocess.Popen(
                list(command),
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=sink,
                start_new_session=True,  # its own process group
            )
        self.procs.append(proc)
        return proc

    def consuming(self) -> int:
        return self.logged("copy engine consuming")

    def ready(self, proc: subprocess.Popen[bytes]) -> bool:
        """Whether this engine has joined the group (its consumer name ends with its pid)."""
        return proc.poll() is None and any(
            "copy engine consuming" in line and f'-{proc.pid}"' in line
            for line in self.log.read_text(errors="replace").splitlines()
        )

    def logged(self, text: str) -> int:
        return self.log.read_text(errors="replace").count(text) if self.log.exists() else 0

    async def until_consuming(self) -> None:
        """Every engine started so far has joined the group (a restart takes seconds when loaded)."""
        await until(lambda: _const(self.consuming() >= self.starts), "engines consuming", stall_s=120)

    def kill(self, proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGKILL) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        if sig == signal.SIGKILL:
            proc.wait(30)

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def __enter__(self) -> Engines:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for proc in self.procs:
            self.kill(proc)


async def _const(value: bool) -> bool:
    return value


async def until(
    check: Callable[[], Awaitable[bool]], what: str, *, stall_s: float = 60, poll_s: float = 0.1
) -> None:
    """Wait for `check`; fail only after `stall_s` without it becoming true."""
    deadline = time.monotonic() + stall_s
    while not await check():
        assert time.monotonic() < deadline, f"no {what} after {stall_s} s"
        await asyncio.sleep(poll_s)


async def until_progress_done(
    measure: Callable[[], Awaitable[int]],
    target: int,
    what: str,
    *,
    stall_s: float = 90,
    poll_s: float = 0.2,
    check: Callable[[], None] | None = None,
) -> None:
    """Wait until `measure()` reaches `target`; fail only when it stopped moving for `stall_s`."""
    last, moved = -1, time.monotonic()
    while True:
        value = await measure()
        if value >= target:
            return
        if value != last:
            last, moved = value, time.monotonic()
        if check is not None:
            check()
        assert time.monotonic() - moved < stall_s, f"{what}: stuck at {value} of {target} for {stall_s} s"
        await asyncio.sleep(poll_s)


async def final_intents(pool: asyncpg.Pool) -> int:
    return await pool.fetchval(f"SELECT count(*) FROM copy_intents WHERE {FINAL}")


def position_events(
    positions: int, *, partial: bool = False, first_trade_index: int = 0, price0: int = 60_000
) -> list[list[TradeEvent]]:
    """Per leader position, its events in order: an open, optionally a 40 % partial close, a close."""
    from tests.execution.copy_fixtures import leader_event

    out = []
    for k in range(positions):
        index = first_trade_index + k
        price = price0 + 10 * k
        opened = leader_event(EventKind.OPEN, n=3 * index, trade_index=index, price=str(price))
        events = [opened]
        remaining = opened.collateral_usdc or 0
        if partial:
            part = remaining * 2 // 5
            events.append(
                leader_event(
                    EventKind.PARTIAL_CLOSE,
                    n=3 * index + 1,
                    trade_index=index,
                    open_ts=opened.open_ts,
                    collateral=remaining,
                    closed=part,
                    price=str(price + 5),
                )
            )
            remaining -= part
        events.append(
            leader_event(
                EventKind.CLOSE,
                n=3 * index + 2,
                trade_index=index,
                open_ts=opened.open_ts,
                collateral=remaining,
                closed=remaining,
                price=str(price + 7),
            )
        )
        out.append(events)
    return out


async def copy_figures(pool: asyncpg.Pool, profiles: list[int], events: list[TradeEvent]) -> dict[str, int]:
    """What the paper venue's own books say about the copies of `events` for `profiles`: orders
    that reached it, duplicated ones, expected copies that never filled, and copies still open
    although every leader position in `events` was closed.

    A partial close (or TP/SL move) planned only after its position's copy was closed whole (by
    the leader's close, taken first by another engine while the partial's message waited in a
    killed one) has nothing left to act on: it is counted apart as `moot`, not as missing."""
    expected = {intent_id(p, ev.event_id, ACTIONS[ev.kind]) for p in profiles for ev in events}
    orders = await pool.fetch(
        "SELECT client_ref, count(*) AS n, bool_or(status = 'filled') AS filled FROM paper_orders GROUP BY 1"
    )
    by_ref = {r["client_ref"]: r for r in orders}
    moot = {
        r["intent_id"]
        for r in await pool.fetch(
            "SELECT p.intent_id FROM copy_intents p WHERE p.action IN ('partial_close', 'update_tp_sl') "
            "AND p.state = 'refused' AND p.refusal_reason = 'no_copied_position' AND EXISTS (SELECT 1 FROM "
            "copy_intents c WHERE c.profile_id = p.profile_id AND c.leader_position_key = p.leader_position_key "
            "AND c.action = 'close' AND c.state IN ('filled', 'resolved'))"
        )
    }
    closed_keys = {ev.position_key for ev in events if ev.kind is not EventKind.OPEN}
    left_open = await pool.fetchval(
        "SELECT count(*) FROM copy_positions WHERE status = 'open' AND leader_position_key = ANY($1::text[])",
        sorted(closed_keys),
    )
    refusals = Counter(
        r["refusal_reason"]
        for r in await pool.fetch("SELECT refusal_reason FROM copy_intents WHERE state = 'refused'")
    )
    return {
        "expected": len(expected),
        "orders": sum(r["n"] for r in orders),
        "duplicates": sum(r["n"] - 1 for r in orders if r["n"] > 1),
        "missing": sum(1 for ref in expected - moot if not (ref in by_ref and by_ref[ref]["filled"])),
        "moot": len(moot & expected),
        "left_open": left_open,
        "venue_open": await pool.fetchval("SELECT count(*) FROM paper_positions WHERE status = 'open'"),
        **{f"refused_{k}": v for k, v in refusals.items()},
    }
