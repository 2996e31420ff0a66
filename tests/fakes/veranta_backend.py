"""A local stand-in for Veranta's web services, as veranta-sdk 2.2 speaks to them in delegate
mode: the tx-builder (`/v2/meta`, `/v2/intents/{open,close}`, `/v2/trade/{open,close}`), the data
API's `/v2/trading` snapshot (the real file), the core API's `/user-data`, and the batched-market
relayer (`POST /market/execute-batched` streaming Server-Sent Events, `GET
/tracking-id/{id}/status`).

Intents are built with the SDK's own `LocalIntentBuilder` (its schemas mirror the contracts), and
the relayer checks what a real one must: the EIP-712 signature over the intent it built recovers to
the trader or a delegate the trader registered, the deadline has not passed, and the nonce is
fresh. Fills follow research/pnl.py's formulas at the price the test sets.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import eth_abi
from aiohttp import web
from eth_account import Account
from eth_account.messages import encode_typed_data
from veranta_sdk.execution.local_intents import LocalIntentBuilder, _abi_schema
from veranta_sdk.signing.intents import _EIP712_DOMAIN_FIELDS, to_int_message
from veranta_sdk.types import IntentPayload

from data.events import Side
from research.pnl import close_outcome, open_fee, percent_profit_e10

CHAIN_ID = 8453
ROUTER = "0x44914408af82bC9983bbb330e3578E1105e11d4e"
E10 = 10**10
FEE_PPM = 450


@dataclass
class VerantaBackend:
    snapshot_file: Path
    prices: dict[int, Decimal] = field(default_factory=dict)
    delegates: dict[str, set[str]] = field(default_factory=dict)  # trader -> delegates (lowercase)
    positions: dict[str, dict[tuple[int, int], dict[str, Any]]] = field(default_factory=dict)
    executions: list[dict[str, Any]] = field(default_factory=list)  # every accepted order
    refusals: list[str] = field(default_factory=list)
    snapshot_requests: int = 0
    base_url: str = ""
    _builder: LocalIntentBuilder = field(default_factory=lambda: LocalIntentBuilder(CHAIN_ID, ROUTER))
    _built: dict[str, IntentPayload] = field(default_factory=dict)
    _used_nonces: set[int] = field(default_factory=set)
    _tracking: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _order_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # --- tx-builder -----------------------------------------------------------------------------

    async def meta(self, _: web.Request) -> web.Response:
        return web.json_response({"chainId": CHAIN_ID, "addresses": {"tradingRouter": ROUTER}})

    def _keep(self, payload: IntentPayload) -> web.Response:
        self._built[payload.encoded_intent.lower()] = payload
        return web.json_response(payload.model_dump(by_alias=True, exclude_none=True))

    async def intent_open(self, request: web.Request) -> web.Response:
        p = await request.json()
        pair = int(p["pairIndex"])
        payload = self._builder.open_trade(
            trader=p["trader"],
            pair_index=pair,
            is_long=p["side"] == "long",
            collateral_usdc=p["collateralUsdc"],
            leverage=p["leverage"],
            open_price=p.get("openPrice") or str(self.prices[pair]),
            tp=p.get("takeProfit") or 0,
            sl=p.get("stopLoss") or 0,
            slippage_percent=p.get("slippagePercent") or 1,
        )
        return self._keep(payload)

    async def intent_close(self, request: web.Request) -> web.Response:
        p = await request.json()
        pair, index = int(p["pairIndex"]), int(p["tradeIndex"])
        held = self.positions.get(p["trader"].lower(), {}).get((pair, index))
        if held is None:
            return web.json_response({"error": "NO_POSITION"}, status=404)
        payload = self._builder.close_trade(
            trader=p["trader"],
            pair_index=pair,
            index=index,
            open_timestamp=int(p.get("openTimestamp") or held["openedAt"]),
            amount_usdc=p["collateralToCloseUsdc"],
            wanted_price=p.get("expectedPrice") or str(self.prices[pair]),
        )
        return self._keep(payload)

    async def calldata(self, request: web.Request) -> web.Response:
        p = await request.json()
        return web.json_response(
            {
                "to": ROUTER,
                "from": p["trader"],
                "data": "0x" + secrets.token_hex(68),
                "value": "0x0",
                "chainId": CHAIN_ID,
            }
        )

    # --- data and core APIs ---------------------------------------------------------------------

    async def trading(self, _: web.Request) -> web.Response:
        self.snapshot_requests += 1
        return web.json_response(json.loads(self.snapshot_file.read_text()))

    async def user_data(self, request: web.Request) -> web.Response:
        trader = request.query["trader"].lower()
        return web.json_response(
            {"positions": list(self.positions.get(trader, {}).values()), "limitOrders": []}
        )

    # --- the relayer ----------------------------------------------------------------------------

    def _signer_problem(self, body: dict[str, Any]) -> tuple[str | None, IntentPayload | None]:
        payload = self._built.get(str(body["erc712"]["userIntent"]).lower())
        if payload is None:
            return "UNKNOWN_INTENT", None
        return self._check(payload, body["erc712"]["userSignature"]), payload

    def _check(self, payload: IntentPayload, signature: str) -> str | None:
        """What a real relayer refuses: a signer that is neither the trader nor a delegate the
        trader registered, a passed deadline, a used nonce."""
        full = {
            "types": {"EIP712Domain": _EIP712_DOMAIN_FIELDS, **payload.types},
            "primaryType": payload.primary_type,
            "domain": payload.domain,
            "message": to_int_message(payload.types, payload.primary_type, payload.message),
        }
        signer = Account.recover_message(encode_typed_data(full_message=full), signature=signature).lower()
        msg = payload.message
        trader = (msg.get("_t") or {}).get("trader") or msg.get("_trader") or msg.get("trader")
        if signer != trader.lower() and signer not in self.delegates.get(trader.lower(), set()):
            return "INVALID_SIGNER"
        if int(msg["_deadline"]) < time.time() * 1000:
            return "EXPIRED"
        if int(msg["_nonce"]) in self._used_nonces:
            return "NONCE_USED"
        return None

    async def execute(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        problem, payload = self._signer_problem(body)
        if problem is not None or payload is None:
            self.refusals.append(problem or "UNKNOWN_INTENT")
            await _sse(response, "Error", {"code": problem, "message": f"rejected: {problem}"}, None)
            return response
        self._used_nonces.add(int(payload.message["_nonce"]))
        tracking = "trk-" + secrets.token_hex(6)
        events = self._tracking[tracking] = []
        order_id = next(self._order_ids)
        events.append({"type": "MarketOrderAccepted", "payload": {"trackingId": tracking}})
        events.append({"type": "MarketOrderInitiated", "payload": {"orderId": str(order_id)}})
        events.append(self._fill(payload, order_id))
        self.executions.append({"trackingId": tracking, "intent": payload.primary_type, **payload.message})
        for seq, ev in enumerate(events):
            await _sse(response, ev["type"], ev["payload"], seq)
            await asyncio.sleep(0)
        return response

    def _fill(self, payload: IntentPayload, order_id: int) -> dict[str, Any]:
        msg = to_int_message(payload.types, payload.primary_type, payload.message)
        tx = "0x" + secrets.token_hex(32)
        if payload.primary_type == "OpenTradeReq":
            t = msg["_t"]
            pair = int(t["pairIndex"])
            price = int(self.prices[pair] * E10)
            if abs(price - t["openPrice"]) * 100 * E10 > msg["_slippageP"] * t["openPrice"]:
                return {
                    "type": "MarketOrderCanceled",
                    "payload": {"orderId": str(order_id), "code": "HighSlippage"},
                }
            collateral = int(t["positionSizeUSDC"])
            fee = open_fee(collateral, t["leverage"], FEE_PPM)
            book = self.positions.setdefault(t["trader"].lower(), {})
            index = next(i for i in itertools.count() if (pair, i) not in book)
            trade = {
                "trader": t["trader"],
                "pairIndex": pair,
                "index": index,
                "initialPosToken": str(collateral - fee),
                "positionSizeUSDC": str(collateral),
                "openPrice": str(price),
                "buy": t["buy"],
                "leverage": str(t["leverage"]),
                "tp": str(t["tp"]),
                "sl": str(t["sl"]),
                "timestamp": str(int(time.time())),
            }
            book[(pair, index)] = {
                "trader": t["trader"],
                "pairIndex": pair,
                "index": index,
                "buy": t["buy"],
                "collateral": str(collateral - fee),
                "leverage": str(t["leverage"]),
                "openPrice": str(price),
                "tp": str(t["tp"]),
                "sl": str(t["sl"]),
                "openedAt": int(time.time()),
            }
            fill = {
                "price": str(price),
                "positionSizeUSDC": str(collateral),
                "percentProfit": "0",
                "usdcSentToTrader": "0",
            }
        else:
            trader, pair, index = msg["_trader"].lower(), int(msg["_pairIndex"]), int(msg["_index"])
            held = self.positions[trader][(pair, index)]
            price = int(self.prices[pair] * E10)
            amount = min(int(msg["_amount"]), int(held["collateral"]))
            side = Side.LONG if held["buy"] else Side.SHORT
            out = close_outcome(
                amount, int(held["leverage"]), int(held["openPrice"]), price, side, close_fee_ppm=FEE_PPM
            )
            remaining = int(held["collateral"]) - amount
            trade = {**held, "initialPosToken": held["collateral"]}
            if remaining <= 0 or out.liquidated:
                del self.positions[trader][(pair, index)]
            else:
                held["collateral"] = str(remaining)
            fill = {
                "price": str(price),
                "positionSizeUSDC": str(amount),
                "percentProfit": str(
                    percent_profit_e10(int(held["openPrice"]), price, int(held["leverage"]), side, 500)
                ),
                "usdcSentToTrader": str(out.usdc_sent),
            }
        return {
            "type": "MarketOrderExecuted",
            "payload": {"orderId": str(order_id), "transactionHash": tx, "isPnl": False, "t": trade, **fill},
        }

    async def price_trigger(self, request: web.Request) -> web.Response:
        """`PUT /price-triggers/global-{tp|sl}-{trader}-{pair}-{index}`: a signed UpdateTpSlReq,
        decoded from its ABI encoding (the SDK builds this intent itself) and verified like any."""
        body = await request.json()
        abi_type, order = _abi_schema("UpdateTpSlReq")
        (values,) = eth_abi.decode([abi_type], bytes.fromhex(body["userIntent"][2:]))
        payload = self._builder.build("UpdateTpSlReq", dict(zip(order, values, strict=True)))
        problem = self._check(payload, body["signedMessage"])
        if problem is not None:
            self.refusals.append(problem)
            return web.json_response(
                {"ok": False, "error": {"code": problem, "message": problem}}, status=403
            )
        msg = payload.message
        self._used_nonces.add(int(msg["_nonce"]))
        held = self.positions.get(msg["trader"].lower(), {}).get((int(msg["_pairIndex"]), int(msg["_index"])))
        if held is None:
            return web.json_response(
                {"ok": False, "error": {"code": "NO_POSITION", "message": "no position"}}, status=404
            )
        held["tp"], held["sl"] = str(msg["_newTp"]), str(msg["_newSl"])
        self.executions.append({"intent": "UpdateTpSlReq", **msg})
        return web.json_response({"ok": True, "entityId": request.match_info["entity"]})

    async def status(self, request: web.Request) -> web.Response:
        events = self._tracking.get(request.match_info["tracking"], [])
        after = int(request.query.get("afterSeq", -1))
        return web.json_response(
            {"events": [{**ev, "seq": seq} for seq, ev in enumerate(events) if seq > after]}
        )

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/txb/v2/meta", self.meta)
        app.router.add_post("/txb/v2/intents/open", self.intent_open)
        app.router.add_post("/txb/v2/intents/close", self.intent_close)
        app.router.add_post("/txb/v2/trade/open", self.calldata)
        app.router.add_post("/txb/v2/trade/close", self.calldata)
        app.router.add_get("/data/v2/trading", self.trading)
        app.router.add_get("/core/user-data", self.user_data)
        app.router.add_put("/core/price-triggers/{entity}", self.price_trigger)
        app.router.add_post("/batched-market/market/execute-batched", self.execute)
        app.router.add_get("/batched-market/tracking-id/{tracking}/status", self.status)
        return app

    def sdk_config(self) -> dict[str, str]:
        """The veranta-sdk overrides that point a client at this server."""
        return {
            "api_base_url": self.base_url,
            "tx_builder_url": f"{self.base_url}/txb",
            "core_api_url": f"{self.base_url}/core",
            "batched_market_url": f"{self.base_url}/batched-market",
            "data_api_url": f"{self.base_url}/data",
        }


async def _sse(response: web.StreamResponse, kind: str, payload: dict[str, Any], seq: int | None) -> None:
    lines = ([f"id: {seq}"] if seq is not None else []) + [
        f"event: {kind}",
        f"data: {json.dumps(payload)}",
        "",
        "",
    ]
    await response.write("\n".join(lines).encode())


@asynccontextmanager
async def running_backend(backend: VerantaBackend) -> AsyncIterator[VerantaBackend]:
    runner = web.AppRunner(backend.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    backend.base_url = f"http://127.0.0.1:{port}"
    try:
        yield backend
    finally:
        await runner.cleanup()
