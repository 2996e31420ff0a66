"""A local Pusher server (protocol 7, public channels) for the order-stream source.

It speaks the frames a Pusher cluster sends: `pusher:connection_established` with a socket id,
`pusher_internal:subscription_succeeded` after `pusher:subscribe`, `pusher:ping`, channel events
whose `data` is a JSON *string*. Like Pusher, it keeps no history: an event published while
nobody is subscribed is gone.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


class FakePusher:
    def __init__(self, app_key: str):
        self.app_key = app_key
        self.subscribers: dict[str, set[ServerConnection]] = {}
        self.pongs = 0
        self.connections = 0
        self._ids = itertools.count(1)

    async def handler(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else ""
        if not path.startswith(f"/app/{self.app_key}") or "protocol=7" not in path:
            await ws.send(
                json.dumps({"event": "pusher:error", "data": {"code": 4001, "message": "unknown app"}})
            )
            await ws.close(4001)
            return
        self.connections += 1
        socket_id = f"{next(self._ids)}.{next(self._ids)}"
        established = {"socket_id": socket_id, "activity_timeout": 120}
        await ws.send(json.dumps({"event": "pusher:connection_established", "data": json.dumps(established)}))
        await ws.send(json.dumps({"event": "pusher:ping", "data": "{}"}))
        try:
            await self._serve(ws)
        except ConnectionClosed:
            pass  # the client went away (or drop_all cut it): Pusher just forgets the socket
        finally:
            for subs in self.subscribers.values():
                subs.discard(ws)

    async def _serve(self, ws: ServerConnection) -> None:
        async for raw in ws:
            msg = json.loads(raw)
            if msg.get("event") == "pusher:subscribe":
                channel = msg["data"]["channel"]
                self.subscribers.setdefault(channel, set()).add(ws)
                reply = {"event": "pusher_internal:subscription_succeeded", "channel": channel, "data": "{}"}
                await ws.send(json.dumps(reply))
            elif msg.get("event") == "pusher:pong":
                self.pongs += 1

    async def publish(self, channel: str, event: str, data: object) -> int:
        """Send to whoever is subscribed now; returns how many received it."""
        frame = json.dumps({"event": event, "channel": channel, "data": json.dumps(data)})
        subs = list(self.subscribers.get(channel, ()))
        for ws in subs:
            await ws.send(frame)
        return len(subs)

    async def drop_all(self) -> None:
        """The network drops every connection (no close handshake)."""
        for subs in self.subscribers.values():
            for ws in list(subs):
                ws.transport.abort()
            subs.clear()


@asynccontextmanager
async def pusher_server(app_key: str) -> AsyncIterator[tuple[str, FakePusher]]:
    fake = FakePusher(app_key)
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}", fake
