"""Waiting on progress instead of sleeping a fixed time: loaded machines are slow, never flaky."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def until(check: Callable[[], bool | Awaitable[bool]], *, what: str, timeout_s: float = 60.0) -> None:
    """Poll `check` until it holds; fail naming `what` after a generous timeout (a hang, not slowness)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)
