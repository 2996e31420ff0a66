"""The chain indexer: Avantis logs from a node into `trade_events`, exactly once, reorgs included.

Invariants:
- `indexer_checkpoints` says "every block up to `last_block` (whose hash was `last_block_hash`)
  is in the database". A range's events, undecodable logs, block hashes and the new checkpoint
  are written in one transaction, so a crash anywhere resumes at the first block not committed.
- New events are published to the stream before that transaction commits: a crash in between
  re-publishes them on restart (consumers dedupe by event id), it never drops them.
- Only blocks at least `confirmation_depth` below the head are indexed. A deeper reorg is noticed
  when the checkpoint's hash is no longer on the node's chain: the indexer walks back through the
  recent hashes it kept (`indexer_blocks`) to the last common block, deletes what came after it,
  announces the orphaned event ids on the `events:retracted` stream and indexes the new branch.
- One indexer per chain: a PostgreSQL advisory lock is held for as long as it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from data.events import TradeEvent
from data.protocol.decode import DecodeError, Registry
from data.protocol.mapping import ChainMapper, LogContext
from data.sources.chain.rpc import ChainRpc, RangeTooLarge
from data.store import insert_events, publish_events
from infra.bus import EVENTS_STREAM, StreamBus
from infra.errors import Unreachable
from infra.logs import log_fields, mask_url
from infra.metrics import counter, gauge
from infra.reconnect import Stopped, sleep_unless_stopped, with_reconnect

log = logging.getLogger("vanta.indexer")

RETRACTED_STREAM = "events:retracted"
INDEXED_BLOCK = gauge("vanta_indexer_block", "Last block the indexer committed", ("chain_id",))
LOGS_INDEXED = counter("vanta_indexer_logs_total", "Logs the indexer processed", ("chain_id",))
UNDECODED = counter(
    "vanta_indexer_undecoded_logs_total", "Logs at a watched address stored raw", ("topic0", "reason")
)
REORGS = counter("vanta_indexer_reorgs_total", "Reorgs that orphaned indexed blocks", ("chain_id",))

Progress = Callable[[int, int, int], None]  # blocks done, blocks in all, logs so far


@dataclass(frozen=True)
class IndexerConfig:
    chain_id: int
    addresses: tuple[str, ...]
    confirmation_depth: int = 3
    initial_range: int = 1000
    max_range: int = 10_000
    poll_interval_s: float = 5.0
    # How long to wait for a node that lacks a block it announced; None (services) waits forever.
    max_behind_s: float | None = None
    keep_block_hashes: int = 2048  # how deep a reorg can be undone
    events_stream: str = EVENTS_STREAM

    @property
    def name(self) -> str:
        return f"avantis:{self.chain_id}"


@dataclass
class RangeResult:
    logs: int = 0
    inserted: list[TradeEvent] = field(default_factory=list)
    undecoded: int = 0


@dataclass
class IndexerTotals:
    blocks: int = 0
    logs: int = 0
    inserted: int = 0
    undecoded: int = 0
    reorgs: int = 0
    orphaned: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Checkpoint:
    block: int
    hash: str


class ChainChanged(RuntimeError):
    """The node's chain moved under a range while it was read, or it lacks the range's last
    block: read the range again once it has it."""


class NodeStaysBehind(Unreachable):
    """A one-shot command waited `max_behind_s` for the node to have a block; it never did."""


def _hex_bytes(value: str) -> bytes:
    return bytes.fromhex(value[2:])


class Indexer:
    def __init__(
        self,
        rpc: ChainRpc,
        pool: asyncpg.Pool,
        redis: aioredis.Redis | None,
        config: IndexerConfig,
        registry: Registry | None = None,
    ):
        self.rpc = rpc
        self.pool = pool
        self.redis = redis
        self.config = config
        self.registry = registry or Registry()
        self.mapper = ChainMapper()
        self.checkpoint: Checkpoint | None = None
        self.totals = IndexerTotals()
        self._range = config.initial_range
        self._addresses = [a.lower() for a in config.addresses]
        self._watched = set(self._addresses)
        self._unknown_seen: set[tuple[str | None, str]] = set()
        self._lock_conn: asyncpg.Connection | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Indexer:
        node_chain = await self.rpc.chain_id()
        if node_chain != self.config.chain_id:
            raise ValueError(
                f"the node is chain {node_chain} but the indexer is configured for chain "
                f"{self.config.chain_id} (CHAIN_ID)"
            )
        await self._hold_lock()
        return self

    async def __aexit__(self, *exc: object) -> None:
        alive = self._lock_alive()
        conn, self._lock_conn = self._lock_conn, None
        if conn is None:
            return
        if not alive:
            with contextlib.suppress(Exception):
                await self.pool.release(conn)
            return
        try:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", self.config.name)
            await self.pool.release(conn)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            conn.terminate()  # the session ends, and its lock with it

    def _lock_alive(self) -> bool:
        """Whether the session holding the advisory lock still exists."""
        if self._lock_conn is None:
            return False
        try:
            return not self._lock_conn.is_closed()
        except asyncpg.InterfaceError:
            return False  # the pool already took the dead connection back

    async def _hold_lock(self) -> None:
        """Hold the one-indexer-per-chain advisory lock, taking it again if the session that held
        it is gone (a PostgreSQL restart ends it), then reload the checkpoint: it is the truth of
        what was committed, whatever this process believed before the outage."""
        if self._lock_alive():
            return
        if self._lock_conn is not None:
            with contextlib.suppress(Exception):
                await self.pool.release(self._lock_conn)
            self._lock_conn = None
        conn = await self.pool.acquire()
        try:
            got = await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", self.config.name)
            if not got:
                log.info("another indexer holds the lock; waiting", extra=log_fields(name=self.config.name))
                await conn.execute("SELECT pg_advisory_lock(hashtext($1))", self.config.name)
        except BaseException:
            await self.pool.release(conn)
            raise
        self._lock_conn = conn
        async with self.pool.acquire() as c:
            self.checkpoint = await self._load_checkpoint(c)
            await self._seed_mapper(c)

    async def _load_checkpoint(self, conn: asyncpg.Connection) -> Checkpoint | None:
        row = await conn.fetchrow(
            "SELECT last_block, last_block_hash FROM indexer_checkpoints WHERE name = $1", self.config.name
        )
        return Checkpoint(row["last_block"], row["last_block_hash"]) if row else None

    async def _seed_mapper(self, conn: asyncpg.Connection) -> None:
        """Open positions' timestamps, so TP/SL/margin updates after a restart key the same way."""
        rows = await conn.fetch(
            """
            SELECT trader, pair_index, trade_index, kind, open_ts FROM (
                SELECT DISTINCT ON (trader, pair_index, trade_index) trader, pair_index, trade_index,
                       kind, open_ts
                FROM trade_events
                WHERE chain_id = $1 AND source = 'chain'
                  AND kind IN ('open', 'close', 'tp', 'sl', 'liquidation')
                ORDER BY trader, pair_index, trade_index, block_number DESC, log_index DESC
            ) last WHERE kind = 'open'
            """,
            self.config.chain_id,
        )
        self.mapper = ChainMapper()
        for r in rows:
            self.mapper.open_ts[(r["trader"], r["pair_index"], r["trade_index"])] = r["open_ts"]

    # --- public operations --------------------------------------------------------------------

    async def safe_head(self) -> int:
        return await self.rpc.head() - self.config.confirmation_depth

    async def backfill(
        self,
        from_block: int,
        to_block: int,
        progress: Progress | None = None,
        stop: asyncio.Event | None = None,
    ) -> IndexerTotals:
        """Index [from_block, to_block], resuming after the checkpoint if it is already past
        `from_block` (so a killed backfill, run again, continues where it stopped). Returns early,
        with what it committed, when `stop` is set."""
        start = from_block
        if self.checkpoint is not None and self.checkpoint.block >= from_block:
            start = self.checkpoint.block + 1
        await self._index_until(start, to_block, progress, first=from_block, stop=stop)
        return self.totals

    async def catch_up(self, progress: Progress | None = None, stop: asyncio.Event | None = None) -> int:
        """Index everything confirmed since the checkpoint; returns the new checkpoint block."""
        await self._hold_lock()
        target = await self.safe_head()
        if self.checkpoint is None:
            # A fresh tail starts at the confirmed head; history is `backfill`'s job.
            await self._index_until(max(target, 0), target, progress, stop=stop)
        else:
            await self._index_until(self.checkpoint.block + 1, target, progress, stop=stop)
        return self.checkpoint.block if self.checkpoint else -1

    async def tail(self, ws_url: str | None, stop: asyncio.Event) -> None:
        """Follow the chain until `stop` is set: new heads over a websocket subscription wake the
        indexer at once; if there is no websocket (or it drops), it polls every interval.

        Nothing stops it but `stop`: RPC failures are retried forever (by `ChainRpc`), and a
        PostgreSQL or Redis restart is waited out (`with_reconnect`), the advisory lock and the
        checkpoint taken again from the database before indexing goes on."""
        wake = asyncio.Event()
        listener = asyncio.create_task(self._listen_heads(ws_url, wake, stop)) if ws_url else None
        try:
            while not stop.is_set():
                wake.clear()  # before, not after: a head announced during catch_up must wake us again
                await with_reconnect(lambda: self.catch_up(stop=stop), what="indexer", stop=stop)
                waiters = [asyncio.create_task(wake.wait()), asyncio.create_task(stop.wait())]
                await asyncio.wait(
                    waiters, timeout=self.config.poll_interval_s, return_when="FIRST_COMPLETED"
                )
                for w in waiters:
                    w.cancel()
        except Stopped:
            log.info("indexer stopped during an outage")
        finally:
            if listener is not None:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)

    async def _listen_heads(self, ws_url: str, wake: asyncio.Event, stop: asyncio.Event) -> None:
        from web3 import AsyncWeb3, WebSocketProvider

        delay = 1.0
        while not stop.is_set():
            try:
                async with AsyncWeb3(WebSocketProvider(ws_url)) as w3:
                    await w3.eth.subscribe("newHeads")
                    log.info("subscribed to new heads")
                    delay = 1.0
                    async for _message in w3.socket.process_subscriptions():
                        wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "websocket subscription lost; polling until it is back",
                    extra=log_fields(error=f"{type(exc).__name__}: {exc}", retry_in_s=delay),
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    # --- ranges ---------------------------------------------------------------------------------

    async def _index_until(
        self,
        start: int,
        end: int,
        progress: Progress | None,
        first: int | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        first = start if first is None else first
        total = max(end - first + 1, 0)
        behind_since: float | None = None
        while start <= end and not (stop is not None and stop.is_set()):
            if await self._reorged():
                start = self.checkpoint.block + 1 if self.checkpoint else start
                continue
            last = min(end, start + self._range - 1)
            try:
                result = await self._index_range(start, last)
            except RangeTooLarge as exc:
                self._range = max(1, (last - start + 1) // 2)
                log.info(
                    "log range too large; halving",
                    extra=log_fields(blocks=self._range, error=str(exc)),
                )
                continue
            except ChainChanged as exc:
                # The node lags the block asked for, or a reorg is under way: never index past
                # what the node has shown; wait for it (bounded for one-shot commands).
                now = time.monotonic()
                behind_since = behind_since or now
                waited = now - behind_since
                if self.config.max_behind_s is not None and waited > self.config.max_behind_s:
                    raise NodeStaysBehind(
                        f"the node at {mask_url(self.rpc.url)} still lacks block {last} after "
                        f"{waited:.0f} s ({exc}); nothing past block "
                        f"{self.checkpoint.block if self.checkpoint else start - 1} was indexed"
                    ) from exc
                log.info("node behind or chain moving; waiting", extra=log_fields(error=str(exc)))
                if await sleep_unless_stopped(stop, min(0.2 * 2 ** min(waited, 5), 5.0)):
                    return
                continue
            behind_since = None
            self._range = min(self.config.max_range, self._range * 2)
            self.totals.blocks += last - start + 1
            self.totals.logs += result.logs
            self.totals.inserted += len(result.inserted)
            self.totals.undecoded += result.undecoded
            start = last + 1
            if progress:
                progress(min(last - first + 1, total), total, self.totals.logs)

    async def _reorged(self) -> bool:
        """If the checkpoint's block is no longer on the node's chain, roll back to the last block
        both agree on. Returns whether it rolled back."""
        cp = self.checkpoint
        if cp is None:
            return False
        current = await self.rpc.block(cp.block)
        if current is None:
            return False  # the node is behind the checkpoint: compare once it has that block again
        if current.hash == cp.hash:
            return False
        # One node behind a load balancer may sit on a stale branch: believe a reorg only when
        # asked again, and only past this point delete anything.
        again = await self.rpc.block(cp.block)
        if again is None or again.hash == cp.hash or again.hash != current.hash:
            return False
        async with self.pool.acquire() as conn:
            known = await conn.fetch(
                "SELECT block_number, block_hash FROM indexer_blocks WHERE chain_id = $1 "
                "ORDER BY block_number DESC",
                self.config.chain_id,
            )
        ancestor: Checkpoint | None = None
        for row in known:
            on_chain = await self.rpc.block(row["block_number"])
            if on_chain is not None and on_chain.hash == row["block_hash"]:
                ancestor = Checkpoint(row["block_number"], row["block_hash"])
                break
        if ancestor is None:
            oldest = known[-1]["block_number"] if known else cp.block
            raise RuntimeError(
                f"chain {self.config.chain_id} reorganised below the {len(known)} block hashes kept "
                f"(oldest {oldest}); re-index from an earlier block with `vanta index backfill`"
            )
        await self._roll_back(ancestor, cp)
        return True

    async def _roll_back(self, ancestor: Checkpoint, old: Checkpoint) -> None:
        chain_id = self.config.chain_id
        async with self.pool.acquire() as conn, conn.transaction():
            orphaned = [
                r["event_id"]
                for r in await conn.fetch(
                    "DELETE FROM trade_events WHERE chain_id = $1 AND block_number > $2 RETURNING event_id",
                    chain_id,
                    ancestor.block,
                )
            ]
            await conn.execute(
                "DELETE FROM raw_chain_logs WHERE chain_id = $1 AND block_number > $2",
                chain_id,
                ancestor.block,
            )
            await conn.execute(
                "DELETE FROM indexer_blocks WHERE chain_id = $1 AND block_number > $2",
                chain_id,
                ancestor.block,
            )
            await self._write_checkpoint(conn, ancestor)
            if orphaned and self.redis is not None:
                await StreamBus(self.redis, RETRACTED_STREAM).publish(
                    {"chain_id": chain_id, "after_block": ancestor.block, "event_ids": sorted(orphaned)}
                )
            await self._seed_mapper(conn)
        self.checkpoint = ancestor
        self.totals.reorgs += 1
        self.totals.orphaned += len(orphaned)
        REORGS.labels(chain_id=str(chain_id)).inc()
        log.warning(
            "reorg: rolled back orphaned blocks",
            extra=log_fields(
                chain_id=chain_id,
                common_block=ancestor.block,
                old_checkpoint=old.block,
                orphaned_events=len(orphaned),
            ),
        )

    async def _index_range(self, start: int, stop: int) -> RangeResult:
        end_before = await self.rpc.block(stop)
        if end_before is None:
            raise ChainChanged(f"block {stop} is not on the node (yet)")
        # Asked together with block `stop`'s own logs by its hash: only a node that has that very
        # block can answer, so a lagging node's empty answer is never taken for "no events".
        raw_logs = await self.rpc.logs(start, stop, self._addresses, to_block_hash=end_before.hash)
        end_after = await self.rpc.block(stop)
        if end_after is None or end_after.hash != end_before.hash:
            raise ChainChanged(f"block {stop} changed while its range was read")
        raw_logs.sort(key=lambda lg: (int(lg["blockNumber"], 16), int(lg["logIndex"], 16)))
        # The mapper keeps joins across logs (open times, fees by transaction); if this range
        # does not commit, it will be read again, so it must see the mapper as it was.
        mapper_before = copy.deepcopy(self.mapper)
        try:
            events, undecoded, hashes = await self._decode(raw_logs)
            hashes[stop] = end_after.hash
            result = RangeResult(logs=len(raw_logs), undecoded=len(undecoded))
            async with self.pool.acquire() as conn, conn.transaction():
                result.inserted = await insert_events(conn, events)
                if undecoded:
                    await conn.executemany(
                        "INSERT INTO raw_chain_logs (chain_id, tx_hash, log_index, block_number, block_hash, "
                        "address, topic0, topics, data, reason) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) "
                        "ON CONFLICT DO NOTHING",
                        undecoded,
                    )
                await conn.executemany(
                    "INSERT INTO indexer_blocks (chain_id, block_number, block_hash) VALUES ($1, $2, $3) "
                    "ON CONFLICT (chain_id, block_number) DO UPDATE SET block_hash = EXCLUDED.block_hash",
                    [(self.config.chain_id, n, h) for n, h in sorted(hashes.items())],
                )
                await conn.execute(
                    "DELETE FROM indexer_blocks WHERE chain_id = $1 AND block_number < $2",
                    self.config.chain_id,
                    stop - self.config.keep_block_hashes,
                )
                checkpoint = Checkpoint(stop, end_after.hash)
                await self._write_checkpoint(conn, checkpoint)
                if result.inserted and self.redis is not None:
                    await publish_events(self.redis, result.inserted, stream=self.config.events_stream)
        except BaseException:
            self.mapper = mapper_before
            raise
        self.checkpoint = checkpoint
        INDEXED_BLOCK.labels(chain_id=str(self.config.chain_id)).set(stop)
        LOGS_INDEXED.labels(chain_id=str(self.config.chain_id)).inc(len(raw_logs))
        return result

    async def _write_checkpoint(self, conn: asyncpg.Connection, cp: Checkpoint) -> None:
        await conn.execute(
            """
            INSERT INTO indexer_checkpoints (name, chain_id, last_block, last_block_hash, updated_at)
            VALUES ($1, $2, $3, $4, now())
            ON CONFLICT (name) DO UPDATE SET last_block = EXCLUDED.last_block,
                last_block_hash = EXCLUDED.last_block_hash, updated_at = now()
            """,
            self.config.name,
            self.config.chain_id,
            cp.block,
            cp.hash,
        )

    async def _decode(
        self, raw_logs: list[dict[str, Any]]
    ) -> tuple[list[TradeEvent], list[tuple[Any, ...]], dict[int, str]]:
        """Canonical events, rows for `raw_chain_logs`, and the hash of every block seen."""
        timestamps = await self._timestamps(raw_logs)
        events: list[TradeEvent] = []
        undecoded: list[tuple[Any, ...]] = []
        hashes: dict[int, str] = {}
        chain_id = self.config.chain_id
        for lg in raw_logs:
            if lg["address"].lower() not in self._watched:
                continue
            block = int(lg["blockNumber"], 16)
            hashes[block] = lg["blockHash"]
            ctx = LogContext(
                chain_id,
                lg["transactionHash"],
                int(lg["logIndex"], 16),
                block,
                lg["blockHash"],
                timestamps[block],
            )
            topics = lg["topics"]
            try:
                decoded = self.registry.decode([_hex_bytes(t) for t in topics], _hex_bytes(lg["data"]))
                event = self.mapper.map(decoded, ctx)
            except (DecodeError, KeyError, ValueError) as exc:
                reason = str(exc)
                topic0 = topics[0] if topics else None
                kind = "unknown_topic0" if reason.startswith("unknown topic0") else "malformed"
                UNDECODED.labels(topic0=topic0 or "none", reason=kind).inc()
                if (topic0, kind) not in self._unknown_seen:
                    self._unknown_seen.add((topic0, kind))
                    log.warning(
                        "log not decoded; stored raw",
                        extra=log_fields(topic0=topic0, address=lg["address"], reason=reason),
                    )
                undecoded.append(
                    (
                        chain_id,
                        ctx.tx_hash,
                        ctx.log_index,
                        block,
                        ctx.block_hash,
                        lg["address"].lower(),
                        topic0,
                        topics,
                        lg["data"],
                        reason,
                    )
                )
                continue
            if event is not None:
                events.append(event)
        return events, undecoded, hashes

    async def _timestamps(self, raw_logs: list[dict[str, Any]]) -> dict[int, int]:
        """Block times from the logs (`blockTimestamp`, returned by current nodes) or, where a
        node leaves it out, from the block headers."""
        out: dict[int, int] = {}
        missing: set[int] = set()
        for lg in raw_logs:
            block = int(lg["blockNumber"], 16)
            if lg.get("blockTimestamp"):
                out[block] = int(lg["blockTimestamp"], 16)
            elif block not in out:
                missing.add(block)
        missing -= out.keys()
        for number in sorted(missing):
            ref = await self.rpc.block(number)
            if ref is None:
                raise ChainChanged(f"block {number} vanished while its logs were read")
            out[number] = ref.timestamp
        return out
