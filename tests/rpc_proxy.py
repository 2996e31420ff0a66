"""A JSON-RPC proxy in front of anvil that misbehaves like a real provider.

Every `fail_every`-th call fails, cycling through an HTTP 503, a JSON-RPC internal error and a
dropped connection; `eth_getLogs` over more than `max_log_blocks` blocks is refused with the
error Alchemy/Infura send ("query returned more than 10000 results"). It runs on its own port in a
thread, so subprocesses (`vanta index tail`) can use it too.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections import Counter

import aiohttp
from aiohttp import web

from infra.chain.anvil import _free_port


class FlakyRpcProxy:
    def __init__(self, upstream: str, *, fail_every: int = 0, max_log_blocks: int | None = None):
        self.upstream = upstream
        self.fail_every = fail_every
        self.max_log_blocks = max_log_blocks
        self.port = _free_port()
        self.calls = 0
        self.failures: Counter[str] = Counter()
        self.too_large = 0
        self._faults = itertools.cycle(("http_503", "rpc_internal", "drop"))
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FlakyRpcProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the RPC proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/", self._handle)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._session = self._loop.run_until_complete(self._open_session())
        self._ready.set()
        self._loop.run_forever()

    async def _open_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        call = json.loads(body)
        self.calls += 1
        if self.fail_every and self.calls % self.fail_every == 0:
            fault = next(self._faults)
            self.failures[fault] += 1
            if fault == "http_503":
                return web.Response(status=503, text="upstream unavailable")
            if fault == "rpc_internal":
                error = {"code": -32603, "message": "internal error"}
                return web.json_response({"jsonrpc": "2.0", "id": call.get("id"), "error": error})
            request.transport.close()  # type: ignore[union-attr]
            return web.Response(status=500)
        if call.get("method") == "eth_getLogs" and self.max_log_blocks is not None:
            flt = call["params"][0]
            span = int(flt["toBlock"], 16) - int(flt["fromBlock"], 16) + 1
            if span > self.max_log_blocks:
                self.too_large += 1
                error = {"code": -32005, "message": "query returned more than 10000 results"}
                return web.json_response({"jsonrpc": "2.0", "id": call.get("id"), "error": error})
        async with self._session.post(
            self.upstream, data=body, headers={"Content-Type": "application/json"}
        ) as upstream:
            return web.Response(body=await upstream.read(), content_type="application/json")
