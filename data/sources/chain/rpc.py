"""The node, as the indexer needs it: head, block hashes and logs, over web3 7's async HTTP provider.

Raw JSON-RPC replies are kept as hex strings (no AttributeDict/HexBytes formatting): the decoder
slices bytes itself and the backfill moves tens of thousands of logs a second. Transient failures
(connection refused, HTTP 5xx, timeouts, rate limits, node-internal errors) are retried with
exponential backoff by tenacity, forever by default, because giving up would mean losing blocks;
each retry is logged once with the method and the cause, and `vanta_rpc_up` drops to 0 until a
call succeeds again. A `eth_getLogs` the node refuses as too large (or that times out) is not
retried at the same size: `RangeTooLarge` tells the indexer to halve the range.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_never,
    wait_exponential,
)
from web3 import AsyncHTTPProvider, AsyncWeb3

from infra.logs import log_fields
from infra.metrics import counter, gauge

log = logging.getLogger("vanta.rpc")

RPC_UP = gauge("vanta_rpc_up", "1 while the last RPC call succeeded, 0 while retrying")
RPC_FAILURES = counter("vanta_rpc_failures_total", "RPC calls that failed and were retried", ("method",))

# Messages providers use when an eth_getLogs range holds too much (Alchemy, Infura, QuickNode,
# geth, reth, Base's public node...).
_TOO_LARGE = (
    "more than",
    "too many",
    "limit exceeded",
    "response size",
    "block range",
    "range is too large",
    "query timeout",
    "-32005",
)
_TRANSIENT_CODES = {-32000, -32002, -32603, 429}


class RpcError(RuntimeError):
    """The node answered with an error that retrying will not fix (bad params, unknown method)."""


class TransientRpcError(RuntimeError):
    """The node is there but failed this call (overloaded, rate limited, internal error)."""


class RangeTooLarge(RuntimeError):
    """The node refused an eth_getLogs range as too large, or it timed out: ask for less."""


@dataclass(frozen=True)
class BlockRef:
    number: int
    hash: str
    parent_hash: str
    timestamp: int


def _error_text(error: dict[str, Any]) -> str:
    return f"{error.get('code')}: {error.get('message')}"


class ChainRpc:
    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 20.0,
        max_attempts: int | None = None,
        backoff_max_s: float = 30.0,
        backoff_min_s: float = 0.2,
    ):
        self.url = url
        provider = AsyncHTTPProvider(
            url, request_kwargs={"timeout": timeout_s}, exception_retry_configuration=None
        )
        self.w3 = AsyncWeb3(provider)
        self._stop = stop_never if max_attempts is None else stop_after_attempt(max_attempts)
        self._wait = wait_exponential(multiplier=backoff_min_s, max=backoff_max_s)
        self._down_since: str | None = None

    async def close(self) -> None:
        await self.w3.provider.disconnect()

    def _before_sleep(self, method: str, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        RPC_UP.set(0)
        RPC_FAILURES.labels(method=method).inc()
        log.warning(
            "rpc call failed, retrying",
            extra=log_fields(
                method=method,
                attempt=state.attempt_number,
                error=f"{type(exc).__name__}: {exc}",
                retry_in_s=round(state.next_action.sleep, 2) if state.next_action else None,
            ),
        )

    async def call(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call with retries on transient failures; returns the `result`."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(
                (aiohttp.ClientError, asyncio.TimeoutError, OSError, TransientRpcError)
            ),
            stop=self._stop,
            wait=self._wait,
            before_sleep=functools.partial(self._before_sleep, method),
            reraise=True,
        ):
            with attempt:
                result = await self._call_once(method, params)
        RPC_UP.set(1)
        return result

    async def _call_once(self, method: str, params: list[Any]) -> Any:
        reply = await self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        error = reply.get("error")
        if error:
            text = _error_text(error) if isinstance(error, dict) else str(error)
            if method == "eth_getLogs" and any(m in text.lower() for m in _TOO_LARGE):
                raise RangeTooLarge(text)
            if isinstance(error, dict) and error.get("code") in _TRANSIENT_CODES:
                raise TransientRpcError(text)
            raise RpcError(f"{method}: {text}")
        return reply.get("result")

    async def eth_call(
        self, to: str, data: bytes, *, sender: str | None = None, value: int = 0, gas: int | None = None
    ) -> bytes:
        """A contract call at the latest block, returning the raw ABI-encoded result. A revert is
        an `RpcError` carrying the node's message (and the contract's reason)."""
        tx: dict[str, Any] = {"to": to, "data": "0x" + data.hex()}
        if sender is not None:
            tx["from"] = sender
        if value:
            tx["value"] = hex(value)
        if gas is not None:
            tx["gas"] = hex(gas)
        return bytes.fromhex((await self.call("eth_call", [tx, "latest"]))[2:])

    async def chain_id(self) -> int:
        return int(await self.call("eth_chainId", []), 16)

    async def head(self) -> int:
        return int(await self.call("eth_blockNumber", []), 16)

    async def block(self, number: int) -> BlockRef | None:
        """The block at `number` on the node's current chain, or None if it has no such block."""
        raw = await self.call("eth_getBlockByNumber", [hex(number), False])
        if raw is None:
            return None
        return BlockRef(int(raw["number"], 16), raw["hash"], raw["parentHash"], int(raw["timestamp"], 16))

    async def logs(self, from_block: int, to_block: int, addresses: list[str]) -> list[dict[str, Any]]:
        """Logs of `addresses` in [from_block, to_block]. A timeout over more than one block is
        reported as `RangeTooLarge` (a smaller range may well succeed); over a single block the
        call is retried like any other."""
        params = [{"fromBlock": hex(from_block), "toBlock": hex(to_block), "address": addresses}]
        if from_block == to_block:
            return list(await self.call("eth_getLogs", params))
        try:
            return list(await self._call_once("eth_getLogs", params))
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise RangeTooLarge(f"eth_getLogs timed out over {to_block - from_block + 1} blocks") from exc
        except (aiohttp.ClientError, OSError, TransientRpcError):
            return list(await self.call("eth_getLogs", params))
