"""The node, as the indexer and the on-chain venue need it: JSON-RPC over HTTP (aiohttp), checked.

Raw JSON-RPC replies are kept as hex strings (no AttributeDict/HexBytes formatting): the decoder
slices bytes itself and the backfill moves tens of thousands of logs a second.

Nothing a node says is trusted blindly:
- Transient failures (connection refused or reset, DNS, HTTP 429/5xx, timeouts, node-internal
  errors) and garbage answers (an HTML page or truncated JSON with status 200, a reply without a
  result, a result of the wrong shape) are retried with exponential backoff by tenacity. Each
  retry is logged with the method and the cause (the URL masked) and `vanta_rpc_up` drops to 0
  until a call succeeds again. Services retry forever (giving up would mean losing blocks);
  one-shot commands pass `max_attempts` and get an `RpcUnreachable` naming the node, one line.
- A `eth_getLogs` the node refuses as too large (or that times out) is not retried at the same
  size: `RangeTooLarge` tells the indexer to halve the range.
- A range of logs is asked for together with the logs of its last block *by block hash*, in one
  JSON-RPC batch (one HTTP request, answered by one node even behind a load balancer). A node
  that has not caught up with that block, or is on another branch, cannot answer the second
  query (geth, reth and anvil reply "unknown block"), so an empty answer from a lagging node is
  never mistaken for "no events"; and both answers must agree on the last block's logs.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
from collections.abc import Callable
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

from infra.errors import Unreachable
from infra.logs import log_fields, mask_url
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
# How nodes say they do not have a block (yet): geth/reth "unknown block", others "not found".
_UNKNOWN_BLOCK = ("unknown block", "block not found", "header not found")


class RpcError(RuntimeError):
    """The node answered with an error that retrying will not fix (bad params, unknown method)."""


class TransientRpcError(RuntimeError):
    """The node is there but failed this call (overloaded, rate limited, internal error)."""


class MalformedAnswer(TransientRpcError):
    """The answer was not the JSON-RPC reply asked for (an HTML page, cut-off JSON, a wrong shape):
    something between us and the node misbehaved; ask again."""


class NodeBehind(TransientRpcError):
    """The node does not have a block it should have (it lags the chain, or is on another branch)."""


class RangeTooLarge(RuntimeError):
    """The node refused an eth_getLogs range as too large, or it timed out: ask for less."""


class RpcUnreachable(Unreachable):
    """The node could not be reached (or kept failing) within a one-shot command's attempts."""


_RETRIED = (aiohttp.ClientError, asyncio.TimeoutError, OSError, TransientRpcError)


@dataclass(frozen=True)
class BlockRef:
    number: int
    hash: str
    parent_hash: str
    timestamp: int


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('code')}: {error.get('message')}"
    return str(error)


def _is_hex(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("0x")


def _check_block(raw: Any) -> BlockRef | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not all(
        _is_hex(raw.get(k)) for k in ("number", "hash", "parentHash", "timestamp")
    ):
        raise MalformedAnswer(f"eth_getBlockByNumber answered {type(raw).__name__} without a block header")
    return BlockRef(int(raw["number"], 16), raw["hash"], raw["parentHash"], int(raw["timestamp"], 16))


_LOG_FIELDS = ("address", "data", "blockNumber", "blockHash", "transactionHash", "logIndex")


def _check_logs(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise MalformedAnswer(f"eth_getLogs answered {type(raw).__name__}, not a list")
    for lg in raw:
        if (
            not isinstance(lg, dict)
            or not all(_is_hex(lg.get(k)) for k in _LOG_FIELDS)
            or not isinstance(lg.get("topics"), list)
        ):
            raise MalformedAnswer("eth_getLogs answered a log without its fields")
    return raw


def _log_ids(logs: list[dict[str, Any]]) -> set[tuple[str, int]]:
    return {(lg["transactionHash"], int(lg["logIndex"], 16)) for lg in logs}


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
        self.max_attempts = max_attempts
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)
        self._stop = stop_never if max_attempts is None else stop_after_attempt(max_attempts)
        self._wait = wait_exponential(multiplier=backoff_min_s, max=backoff_max_s)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- transport ------------------------------------------------------------------------------

    async def _post(self, payload: Any) -> Any:
        """One HTTP round trip; the decoded JSON body, or a transient error for anything else."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        async with self._session.post(self.url, json=payload) as resp:
            body = await resp.read()
            status, content_type = resp.status, resp.content_type
        if status == 429 or status >= 500:
            raise TransientRpcError(f"HTTP {status}")
        if status >= 400:
            raise RpcError(f"HTTP {status} from {mask_url(self.url)} (check the URL and its API key)")
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise MalformedAnswer(f"answer is not JSON ({len(body)} bytes of {content_type})") from None

    @staticmethod
    def _result(method: str, reply: Any) -> Any:
        if not isinstance(reply, dict) or ("result" not in reply and "error" not in reply):
            raise MalformedAnswer(f"{method}: not a JSON-RPC reply")
        error = reply.get("error")
        if error:
            text = _error_text(error)
            lowered = text.lower()
            if method == "eth_getLogs" and any(m in lowered for m in _TOO_LARGE):
                raise RangeTooLarge(text)
            if any(m in lowered for m in _UNKNOWN_BLOCK):
                raise NodeBehind(f"{method}: {text}")
            if isinstance(error, dict) and error.get("code") in _TRANSIENT_CODES:
                raise TransientRpcError(text)
            raise RpcError(f"{method}: {text}")
        return reply["result"]

    async def _call_once(self, method: str, params: list[Any]) -> Any:
        reply = await self._post(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        )
        return self._result(method, reply)

    async def _batch_once(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Several calls in one request (one node answers them all); results in call order."""
        ids = [next(self._ids) for _ in calls]
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": p}
            for i, (m, p) in zip(ids, calls, strict=True)
        ]
        replies = await self._post(payload)
        if isinstance(replies, dict):  # some nodes answer a refused batch with one error object
            self._result(calls[0][0], replies)
            raise MalformedAnswer("a batch was answered with a single reply")
        if not isinstance(replies, list):
            raise MalformedAnswer("a batch was not answered with a list")
        by_id = {r.get("id"): r for r in replies if isinstance(r, dict)}
        if set(by_id) != set(ids):
            raise MalformedAnswer("a batch answer does not match its requests")
        return [self._result(m, by_id[i]) for i, (m, _) in zip(ids, calls, strict=True)]

    # --- retries ----------------------------------------------------------------------------------

    def _before_sleep(self, method: str, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        retry_in = state.next_action.sleep if state.next_action else None
        self._note_failure(method, state.attempt_number, exc, retry_in)

    def _note_failure(
        self, method: str, attempt: int, exc: BaseException | None, retry_in: float | None
    ) -> None:
        RPC_UP.set(0)
        RPC_FAILURES.labels(method=method).inc()
        log.warning(
            "rpc call failed, retrying",
            extra=log_fields(
                rpc=mask_url(self.url),
                method=method,
                attempt=attempt,
                error=f"{type(exc).__name__}: {exc}",
                retry_in_s=None if retry_in is None else round(retry_in, 2),
            ),
        )

    async def _retrying(self, method: str, once: Callable[[], Any]) -> Any:
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_RETRIED),
                stop=self._stop,
                wait=self._wait,
                before_sleep=functools.partial(self._before_sleep, method),
                reraise=True,
            ):
                with attempt:
                    result = await once()
        except _RETRIED as exc:  # only reached when `max_attempts` ran out
            cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise RpcUnreachable(
                f"cannot reach the RPC node at {mask_url(self.url)} after {self.max_attempts} attempts "
                f"({method}): {mask_url(cause)}"
            ) from exc
        RPC_UP.set(1)
        return result

    async def call(self, method: str, params: list[Any], check: Callable[[Any], Any] | None = None) -> Any:
        """One JSON-RPC call with retries on transient failures; returns the `result`, passed
        through `check` (which raises `MalformedAnswer` for a wrong shape, so it is asked again)."""

        async def once() -> Any:
            result = await self._call_once(method, params)
            return check(result) if check else result

        return await self._retrying(method, once)

    # --- methods ----------------------------------------------------------------------------------

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
        return bytes.fromhex((await self.call("eth_call", [tx, "latest"], _hex_check))[2:])

    async def chain_id(self) -> int:
        return int(await self.call("eth_chainId", [], _hex_check), 16)

    async def head(self) -> int:
        return int(await self.call("eth_blockNumber", [], _hex_check), 16)

    async def block(self, number: int) -> BlockRef | None:
        """The block at `number` on the node's current chain, or None if it has no such block."""
        return await self.call("eth_getBlockByNumber", [hex(number), False], _check_block)

    async def logs(
        self, from_block: int, to_block: int, addresses: list[str], *, to_block_hash: str
    ) -> list[dict[str, Any]]:
        """Logs of `addresses` in [from_block, to_block], from a node that has `to_block` with
        hash `to_block_hash` (else `NodeBehind`, retried). A timeout over more than one block is
        reported as `RangeTooLarge` (a smaller range may well succeed); over a single block the
        call is retried like any other."""
        by_range = {"fromBlock": hex(from_block), "toBlock": hex(to_block), "address": addresses}
        by_hash = {"blockHash": to_block_hash, "address": addresses}

        async def once() -> list[dict[str, Any]]:
            ranged, last = await self._batch_once([("eth_getLogs", [by_range]), ("eth_getLogs", [by_hash])])
            ranged, last = _check_logs(ranged), _check_logs(last)
            in_last = [lg for lg in ranged if int(lg["blockNumber"], 16) == to_block]
            if _log_ids(in_last) != _log_ids(last) or any(lg["blockHash"] != to_block_hash for lg in in_last):
                raise NodeBehind(f"eth_getLogs over {from_block}..{to_block} disagrees with block {to_block}")
            return ranged

        if from_block == to_block:
            return await self._retrying("eth_getLogs", once)
        try:
            return await once()
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise RangeTooLarge(f"eth_getLogs timed out over {to_block - from_block + 1} blocks") from exc
        except _RETRIED as exc:
            self._note_failure("eth_getLogs", 1, exc, None)
            return await self._retrying("eth_getLogs", once)


def _hex_check(result: Any) -> str:
    if not _is_hex(result):
        raise MalformedAnswer(f"expected a hex string, got {type(result).__name__}")
    return result
