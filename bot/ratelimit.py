"""Per-user command rate limit in Redis, shared by every bot process.

A fixed one-minute window per user (`INCR` + `EXPIRE` in one transaction). The first refusal in a
window gets a friendly answer, later ones are dropped silently: a user hammering the bot must not
make the bot hammer Telegram back. If Redis is unreachable the limit lets commands through (it
protects the bot's capacity, not anyone's money) and says so in the log.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from infra.logs import log_fields

log = logging.getLogger("vanta.bot.ratelimit")


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    tell_user: bool  # the first refusal of this window: answer once, then stay quiet
    retry_in_s: int


class CommandRateLimit:
    def __init__(self, redis: aioredis.Redis | None, per_minute: int, prefix: str = "bot:rl"):
        self.redis = redis
        self.per_minute = per_minute
        self.prefix = prefix

    async def check(self, user_id: int) -> Verdict:
        if self.redis is None:
            return Verdict(True, False, 0)
        now = time.time()
        window = int(now // 60)
        key = f"{self.prefix}:{user_id}:{window}"
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, 120)
                count, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning(
                "rate limit unavailable; letting the command through", extra=log_fields(error=str(exc))
            )
            return Verdict(True, False, 0)
        retry = max(1, int((window + 1) * 60 - now))
        if count <= self.per_minute:
            return Verdict(True, False, 0)
        return Verdict(False, count == self.per_minute + 1, retry)
