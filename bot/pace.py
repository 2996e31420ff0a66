"""The pace notices are sent at, under Telegram's limits: about 30 messages a second overall and
one a second per chat. Exceeding them earns 429 answers and, repeated, a longer ban.

Spacing rather than a token bucket: a bucket of 30 lets 30 go at once and 30 more within the
same second, which is exactly the burst Telegram counts against a bot. Here each send waits its
turn at a gate that lets one message through per 1/rate seconds and records when it actually
passed, so a stalled event loop does not release a backlog in one burst afterwards. A 429's
`retry_after` closes the gate for everyone (Telegram's flood control is per bot).

The clock is a parameter so a test can run the same limits on a faster clock and check the
sending pattern without waiting 30+ seconds of real time.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Clock:
    """Monotonic seconds; `scale` clock-seconds pass per real second (1 in production)."""

    scale: float = 1.0

    def now(self) -> float:
        return time.monotonic() * self.scale

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.scale)


class SendPace:
    def __init__(self, per_second: float, chat_interval_s: float, clock: Clock | None = None):
        self.gap = 1.0 / per_second
        self.chat_interval_s = chat_interval_s
        self.clock = clock or Clock()
        self._last_any = -math.inf
        self._last_chat: dict[int, float] = {}
        self._closed_until = -math.inf
        self._gate = asyncio.Lock()

    async def turn(self, chat_id: int) -> None:
        """Wait until a message to `chat_id` may go (call it right before sending)."""
        last = self._last_chat.get(chat_id, -math.inf)
        await self.clock.sleep(last + self.chat_interval_s - self.clock.now())
        async with self._gate:  # FIFO: whoever waited longest goes first
            while True:
                wait = max(self._last_any + self.gap, self._closed_until) - self.clock.now()
                if wait <= 0:
                    break
                await self.clock.sleep(wait)
            now = self.clock.now()
            self._last_any = now
            self._last_chat[chat_id] = now
        if len(self._last_chat) > 10_000:
            self._forget_idle(now)

    def close_for(self, seconds: float) -> None:
        """Telegram said 429 retry_after: nothing goes out for that long."""
        self._closed_until = max(self._closed_until, self.clock.now() + seconds)

    def _forget_idle(self, now: float) -> None:
        self._last_chat = {c: t for c, t in self._last_chat.items() if now - t < self.chat_interval_s}
