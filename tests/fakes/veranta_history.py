"""A local stand-in for Veranta's history API: serves closed-trade files page by page.

Same route and body shape as the real service (`GET /v2/history/trade-history/{trader}/{page}/
{limit}` → `{"address", "count", "trades": [...]}`), numbers sent as the JSON numbers the files
hold, so the client parses exactly what production would send.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web


@asynccontextmanager
async def history_server(files: list[Path]) -> AsyncIterator[tuple[str, list[str]]]:
    """Yields (base URL, request log). Files are read at each request, so a test can add trades."""
    requests: list[str] = []

    async def trade_history(request: web.Request) -> web.Response:
        requests.append(request.path)
        docs = {d["address"].lower(): d for d in (json.loads(p.read_text()) for p in files)}
        doc = docs.get(request.match_info["trader"].lower())
        if doc is None:
            return web.json_response({"address": request.match_info["trader"], "count": 0, "trades": []})
        page, limit = int(request.match_info["page"]), int(request.match_info["limit"])
        trades = doc["trades"][page * limit : (page + 1) * limit]
        body = json.dumps({"address": doc["address"], "count": len(doc["trades"]), "trades": trades})
        return web.Response(text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v2/history/trade-history/{trader}/{page}/{limit}", trade_history)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", requests
    finally:
        await runner.cleanup()
