"""The event bus: Redis Streams with consumer groups.

Delivery is at-least-once: a message stays pending until acked, and a message a dead consumer
left pending is claimed by a live one after `min_idle_ms`. Consumers must therefore dedupe by the
event id carried in the payload.

Restarts: the client reconnects by itself on the next command (redis-py keeps no dead socket),
and a consumer group that vanished with a Redis that kept no data is created again from the
start of whatever stream there is. A command that fails while Redis is down raises a
`redis.exceptions.ConnectionError`; services wrap their steps in `infra.reconnect.with_reconnect`
to wait for Redis and carry on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from infra.logs import log_fields

log = logging.getLogger("vanta.bus")

EVENTS_STREAM = "events"


@dataclass(frozen=True)
class Message:
    id: str
    payload: dict[str, Any]


def connect(url: str) -> aioredis.Redis:
    """A client for `url`. Connecting gives up after 5 s (an unreachable server is an error to
    report or to retry, not a hang), and idle pooled connections are checked before reuse, so the
    first command after a Redis restart reconnects instead of failing on a dead socket."""
    return aioredis.Redis.from_url(
        url, decode_responses=True, socket_connect_timeout=5, health_check_interval=10
    )


class StreamBus:
    def __init__(self, redis: aioredis.Redis, stream: str = EVENTS_STREAM, maxlen: int | None = 1_000_000):
        self.redis = redis
        self.stream = stream
        # Approximate trimming keeps memory bounded without making every XADD walk the stream.
        self.maxlen = maxlen
        self._groups: dict[str, str] = {}  # groups this bus created or joined, with their start id

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
        self._groups.setdefault(group, start_id)
        try:
            await self.redis.xgroup_create(self.stream, group, id=start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(
        self, group: str, consumer: str, *, count: int = 100, block_ms: int | None = 1000
    ) -> list[Message]:
        """New messages for this consumer; they stay pending until `ack`."""
        try:
            reply = await self.redis.xreadgroup(
                group, consumer, {self.stream: ">"}, count=count, block=block_ms
            )
        except ResponseError as exc:
            await self._recreate_lost_group(group, exc)
            return []
        return [m for _stream, entries in reply or [] for m in self._parse(entries)]

    async def _recreate_lost_group(self, group: str, exc: ResponseError) -> None:
        """A Redis restarted without its data has neither the stream nor the group: create the
        group again from the stream's start (at-least-once: consumers dedupe what they saw)."""
        if "NOGROUP" not in str(exc) or group not in self._groups:
            raise exc
        log.warning(
            "consumer group lost (Redis restarted without its data); creating it again",
            extra=log_fields(stream=self.stream, group=group),
        )
        await self.ensure_group(group, "0")

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
            try:
                reply = await self.redis.xautoclaim(
                    self.stream, group, consumer, min_idle_time=min_idle_ms, start_id=cursor, count=count
                )
            except ResponseError as exc:
                await self._recreate_lost_group(group, exc)
                return claimed
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
