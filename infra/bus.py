"""The event bus: Redis Streams with consumer groups.

Delivery is at-least-once: a message stays pending until acked, and a message a dead consumer
left pending is claimed by a live one after `min_idle_ms`. Consumers must therefore dedupe by the
event id carried in the payload.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

EVENTS_STREAM = "events"


@dataclass(frozen=True)
class Message:
    id: str
    payload: dict[str, Any]


def connect(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, decode_responses=True)


class StreamBus:
    def __init__(self, redis: aioredis.Redis, stream: str = EVENTS_STREAM, maxlen: int | None = 1_000_000):
        self.redis = redis
        self.stream = stream
        # Approximate trimming keeps memory bounded without making every XADD walk the stream.
        self.maxlen = maxlen

    async def publish(self, payload: dict[str, Any]) -> str:
        return (await self.publish_many([payload]))[0]

    async def publish_many(self, payloads: list[dict[str, Any]]) -> list[str]:
        """One round trip for a batch (a pipeline, not a transaction: each message stands alone)."""
        pipe = self.redis.pipeline(transaction=False)
        for payload in payloads:
            pipe.xadd(
                self.stream,
                {"data": json.dumps(payload, separators=(",", ":"))},
                maxlen=self.maxlen,
                approximate=True,
            )
        return await pipe.execute()

    async def ensure_group(self, group: str, start_id: str = "0") -> None:
        try:
            await self.redis.xgroup_create(self.stream, group, id=start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(
        self, group: str, consumer: str, *, count: int = 100, block_ms: int | None = 1000
    ) -> list[Message]:
        """New messages for this consumer; they stay pending until `ack`."""
        reply = await self.redis.xreadgroup(group, consumer, {self.stream: ">"}, count=count, block=block_ms)
        return [m for _stream, entries in reply or [] for m in self._parse(entries)]

    async def ack(self, group: str, *ids: str) -> int:
        if not ids:
            return 0
        return await self.redis.xack(self.stream, group, *ids)

    async def claim_stale(
        self, group: str, consumer: str, *, min_idle_ms: int, count: int = 100
    ) -> list[Message]:
        """Take over messages another consumer read but never acked (it crashed or hung)."""
        claimed: list[Message] = []
        cursor = "0-0"
        while True:
            reply = await self.redis.xautoclaim(
                self.stream, group, consumer, min_idle_time=min_idle_ms, start_id=cursor, count=count
            )
            cursor, entries = reply[0], reply[1]
            claimed.extend(self._parse(entries))
            if cursor == "0-0" or len(claimed) >= count:
                return claimed

    async def latest(self, count: int) -> list[Message]:
        """The last `count` messages of the stream, oldest first (read only, no group)."""
        entries = await self.redis.xrevrange(self.stream, count=count)
        return self._parse(list(reversed(entries)))

    async def pending_count(self, group: str) -> int:
        info = await self.redis.xpending(self.stream, group)
        return int(info["pending"])

    @staticmethod
    def _parse(entries: list[Any]) -> list[Message]:
        messages = []
        for msg_id, fields in entries:
            if fields is None:  # deleted by trimming while pending
                continue
            messages.append(Message(msg_id, json.loads(fields["data"])))
        return messages


class Cache:
    """JSON values with a TTL under a key prefix; the one caching helper services share."""

    def __init__(self, redis: aioredis.Redis, prefix: str):
        self.redis = redis
        self.prefix = prefix

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    async def get(self, key: str) -> Any | None:
        raw = await self.redis.get(self._key(key))
        return None if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any, ttl_s: float) -> None:
        await self.redis.set(self._key(key), json.dumps(value), px=int(ttl_s * 1000))

    async def delete(self, key: str) -> None:
        await self.redis.delete(self._key(key))
