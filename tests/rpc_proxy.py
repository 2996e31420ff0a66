"""A JSON-RPC proxy in front of anvil that misbehaves like a real provider.

Faults, each on every N-th HTTP request (0 turns a fault off; they cycle so they do not collide):
- `fail_every`: an HTTP 503, a JSON-RPC internal error, or a dropped connection, in turn.
- `garbage_every`: a status-200 answer that is not the reply asked for: an HTML error page,
  the real reply cut off mid-JSON, or a reply of the wrong shape, in turn.
- `lag_every`: the request is answered by a node `lag_blocks` behind the head, as a load
  balancer in front of nodes at different heights does: `eth_blockNumber` says the lagging head,
  blocks past it are `null`, `eth_getLogs` over a range silently leaves out the logs past it
  (what anvil and several providers do), and `eth_getLogs` by the hash of a block past it is
  refused with geth's "unknown block".
- `max_log_blocks`: an `eth_getLogs` range over that many blocks is refused with the error
  Alchemy/Infura send ("query returned more than 10000 results").
A JSON-RPC batch is one HTTP request and is answered by one node (one view), as behind real load
balancers. It runs on its own port in a thread, so subprocesses (`vanta index tail`) can use it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections import Counter
from typing import Any

import aiohttp
from aiohttp import web

from infra.chain.anvil import _free_port

HTML_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"


class FlakyRpcProxy:
    def __init__(
        self,
        upstream: str,
        *,
        fail_every: int = 0,
        max_log_blocks: int | None = None,
        garbage_every: int = 0,
        lag_every: int = 0,
        lag_blocks: int = 0,
    ):
        self.upstream = upstream
        self.fail_every = fail_every
        self.max_log_blocks = max_log_blocks
        self.garbage_every = garbage_every
        self.lag_every = lag_every
        self.lag_blocks = lag_blocks
        self.port = _free_port()
        self.calls = 0
        self.failures: Counter[str] = Counter()
        self.garbage: Counter[str] = Counter()
        self.lagged = 0  # requests answered by the lagging view
        self.hidden_logs = 0  # logs a lagging view left out of a range answer
        self.too_large = 0
        self._faults = itertools.cycle(("http_503", "rpc_internal", "drop"))
        self._garbage = itertools.cycle(("html", "truncated", "wrong_shape"))
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
        async def shutdown() -> None:
            await self._session.close()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._session = self._loop.run_until_complete(self._open_session())
        self._ready.set()
        self._loop.run_forever()

    async def _open_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    @staticmethod
    def _every(n: int, count: int, offset: int) -> bool:
        return bool(n) and (count + offset) % n == 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        self.calls += 1
        calls = body if isinstance(body, list) else [body]
        if self._every(self.fail_every, self.calls, 0):
            fault = next(self._faults)
            self.failures[fault] += 1
            if fault == "http_503":
                return web.Response(status=503, text="upstream unavailable")
            if fault == "rpc_internal":
                error = {"code": -32603, "message": "internal error"}
                return web.json_response({"jsonrpc": "2.0", "id": calls[0].get("id"), "error": error})
            request.transport.close()  # type: ignore[union-attr]
            return web.Response(status=500)
        lagging = self._every(self.lag_every, self.calls, 1)
        lag_head = None
        if lagging:
            self.lagged += 1
            lag_head = int((await self._upstream_one("eth_blockNumber", []))["result"], 16) - self.lag_blocks
        replies = [await self._answer(call, lag_head) for call in calls]
        answer: Any = replies if isinstance(body, list) else replies[0]
        if self._every(self.garbage_every, self.calls, 2):
            kind = next(self._garbage)
            self.garbage[kind] += 1
            if kind == "html":
                return web.Response(body=HTML_PAGE, status=200, content_type="text/html")
            raw = json.dumps(answer).encode()
            if kind == "truncated":
                return web.Response(body=raw[: len(raw) // 2], status=200, content_type="application/json")
            wrong = {"jsonrpc": "2.0", "id": calls[0].get("id"), "result": {"unexpected": True}}
            return web.json_response(wrong if isinstance(body, list) else [wrong])
        return web.json_response(answer)

    async def _upstream_one(self, method: str, params: list[Any], call_id: Any = 1) -> dict[str, Any]:
        payload = {"jsonrpc": "2.0", "id": call_id, "method": method, "params": params}
        async with self._session.post(self.upstream, json=payload) as upstream:
            return await upstream.json(content_type=None)

    async def _answer(self, call: dict[str, Any], lag_head: int | None) -> dict[str, Any]:
        method, params, call_id = call.get("method"), call.get("params") or [], call.get("id")

        def result(value: Any) -> dict[str, Any]:
            return {"jsonrpc": "2.0", "id": call_id, "result": value}

        if method == "eth_getLogs" and self.max_log_blocks is not None and "fromBlock" in params[0]:
            span = int(params[0]["toBlock"], 16) - int(params[0]["fromBlock"], 16) + 1
            if span > self.max_log_blocks:
                self.too_large += 1
                error = {"code": -32005, "message": "query returned more than 10000 results"}
                return {"jsonrpc": "2.0", "id": call_id, "error": error}
        if lag_head is not None:
            if method == "eth_blockNumber":
                return result(hex(lag_head))
            if method == "eth_getBlockByNumber" and params[0] not in (
                "latest",
                "pending",
                "safe",
                "finalized",
            ):
                if int(params[0], 16) > lag_head:
                    return result(None)
            if method == "eth_getLogs" and "blockHash" in params[0]:
                block = (await self._upstream_one("eth_getBlockByHash", [params[0]["blockHash"], False]))[
                    "result"
                ]
                if block is None or int(block["number"], 16) > lag_head:
                    return {
                        "jsonrpc": "2.0",
                        "id": call_id,
                        "error": {"code": -32000, "message": "unknown block"},
                    }
        reply = await self._upstream_one(method, params, call_id)  # type: ignore[arg-type]
        if lag_head is not None and method == "eth_getLogs" and isinstance(reply.get("result"), list):
            kept = [lg for lg in reply["result"] if int(lg["blockNumber"], 16) <= lag_head]
            self.hidden_logs += len(reply["result"]) - len(kept)
            reply["result"] = kept
        return reply
