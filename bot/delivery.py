"""The notification delivery worker: drains the `notifications` outbox to Telegram.

- Pace: `SendPace` (under ~30 messages/s overall, 1/s per chat); one message in flight per chat,
  in the order the notices were written, many chats side by side.
- 429: the notice goes back to pending, not before `retry_after`, and the whole sender waits that
  long (Telegram's flood control is per bot).
- 403 "bot was blocked by the user": the notice and the chat's other pending notices fail, and
  the user's follows are paused through the copy service (`on_blocked`): copying on without any
  way to warn the user would be worse than stopping.
- Exactly what happens around a crash is in `bot.outbox` (at most once, never silently lost).

The engine writes notices in the same transaction as their cause; a trigger NOTIFYs
`notifications`, which wakes this worker at once (it polls every `poll_s` as a fallback).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
import httpx
from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from bot import outbox
from bot.outbox import Notice
from bot.pace import SendPace
from infra.logs import log_fields
from infra.metrics import counter

log = logging.getLogger("vanta.bot.delivery")
DELIVERED = counter("vanta_bot_notices_total", "Notices by outcome", ("outcome",))

Render = Callable[[Notice], Awaitable[str | None]]  # None: below the user's level, skip it
OnBlocked = Callable[[int], Awaitable[None]]


def retry_after_s(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _never_left(exc: NetworkError) -> bool:
    """Errors that prove the request never reached Telegram (safe to send again)."""
    cause = exc.__cause__
    return isinstance(cause, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


class DeliveryWorker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        bot: Bot,
        pace: SendPace,
        *,
        render: Render,
        on_blocked: OnBlocked,
        concurrency: int = 64,
        batch: int = 500,
        poll_s: float = 1.0,
        worker_id: str | None = None,
        only_chats: list[int] | None = None,
    ):
        self.pool = pool
        self.bot = bot
        self.pace = pace
        self.render = render
        self.on_blocked = on_blocked
        self.concurrency = concurrency
        self.batch = batch
        self.poll_s = poll_s
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.only_chats = only_chats  # the console delivers its own user's notices, nobody else's
        self._chats: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stopping = False

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; the messages in flight then finish, nothing new starts."""
        async with self.pool.acquire() as conn:
            lost = await outbox.recover(conn, self.worker_id)
        if lost:
            DELIVERED.labels(outcome="unknown").inc(len(lost))
            log.warning(
                "notices whose send was interrupted are marked unknown; their users are told",
                extra=log_fields(count=len(lost), ids=[n.id for n in lost][:20]),
            )
        listener = await self.pool.acquire()
        await listener.add_listener("notifications", self._on_notify)
        try:
            while not stop.is_set():
                try:
                    await self.dispatch()
                except (OSError, asyncpg.PostgresError) as exc:
                    log.warning("reading the outbox failed; retrying", extra=log_fields(error=str(exc)[:200]))
                self._wake.clear()
                waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
                await asyncio.wait(
                    [*waits, *self._chats.values()], timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED
                )
                for w in waits:
                    w.cancel()
        finally:
            self._stopping = True
            if self._chats:
                await asyncio.gather(*self._chats.values(), return_exceptions=True)
            with contextlib.suppress(Exception):
                await listener.remove_listener("notifications", self._on_notify)
            await self.pool.release(listener)

    def _on_notify(self, *args: object) -> None:
        self._wake.set()

    async def dispatch(self) -> int:
        """Start a sender for every chat with notices due that has none yet; how many started."""
        free = self.concurrency - len(self._chats)
        if free <= 0:
            return 0
        notices = await outbox.pending(self.pool, self.batch, list(self._chats), self.only_chats)
        by_chat: dict[int, list[Notice]] = {}
        for n in notices:
            if n.chat_id is None:
                await outbox.settle(self.pool, n.id, "failed", "the user has no Telegram account")
                DELIVERED.labels(outcome="failed").inc()
                continue
            by_chat.setdefault(n.chat_id, []).append(n)
        started = 0
        for chat_id, items in list(by_chat.items())[:free]:
            task = asyncio.create_task(self._drain(chat_id, items), name=f"deliver:{chat_id}")
            self._chats[chat_id] = task
            task.add_done_callback(lambda t, c=chat_id: self._chat_done(c, t))
            started += 1
        return started

    def _chat_done(self, chat_id: int, task: asyncio.Task[None]) -> None:
        self._chats.pop(chat_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("a chat's sender failed", exc_info=task.exception(), extra=log_fields(chat=chat_id))
        self._wake.set()

    async def _drain(self, chat_id: int, notices: list[Notice]) -> None:
        for notice in notices:
            if self._stopping:
                return
            if not await self._deliver(chat_id, notice):
                return  # the chat refused or is throttled: its other notices wait

    async def _deliver(self, chat_id: int, notice: Notice) -> bool:
        """Send one notice; False when this chat's remaining notices must not follow now."""
        try:
            text = await self.render(notice)
        except Exception as exc:  # a notice that cannot be worded must not block the ones after it
            await outbox.settle(self.pool, notice.id, "failed", f"could not be worded: {exc!r}"[:500])
            DELIVERED.labels(outcome="failed").inc()
            log.error("a notice could not be worded", exc_info=exc, extra=log_fields(notice=notice.id))
            return True
        if text is None:
            await outbox.settle(self.pool, notice.id, "skipped", "below the user's notification level")
            DELIVERED.labels(outcome="skipped").inc()
            return True
        await self.pace.turn(chat_id)
        if not await outbox.claim(self.pool, notice.id, self.worker_id):
            return True  # another worker has it
        try:
            sent = await self.bot.send_message(chat_id, text, parse_mode=ParseMode.HTML)
        except RetryAfter as exc:
            wait = retry_after_s(exc)
            self.pace.close_for(wait)
            real_wait = wait / self.pace.clock.scale  # the database counts real seconds
            await outbox.release(
                self.pool, notice.id, self.worker_id, real_wait, f"429: retry after {wait:g}s"
            )
            DELIVERED.labels(outcome="retry").inc()
            return False
        except Forbidden as exc:
            await outbox.settle(self.pool, notice.id, "failed", f"403: {exc.message}")
            DELIVERED.labels(outcome="failed").inc()
            if "blocked" in exc.message.lower() or "deactivated" in exc.message.lower():
                failed = await outbox.fail_chat(self.pool, chat_id, f"403: {exc.message}")
                log.warning(
                    "the user blocked the bot: their follows are paused",
                    extra=log_fields(chat=chat_id, notices_failed=failed + 1),
                )
                await self.on_blocked(chat_id)
            return False
        except BadRequest as exc:
            await outbox.settle(self.pool, notice.id, "failed", f"400: {exc.message}")
            DELIVERED.labels(outcome="failed").inc()
            log.error("Telegram refused a notice", extra=log_fields(notice=notice.id, error=exc.message))
            return True
        except TimedOut as exc:
            if _never_left(exc):
                await outbox.release(self.pool, notice.id, self.worker_id, 1.0, "timed out before sending")
                return False
            await outbox.settle(self.pool, notice.id, "unknown", "timed out waiting for Telegram's answer")
            DELIVERED.labels(outcome="unknown").inc()
            log.warning("a notice may or may not have arrived (timeout)", extra=log_fields(notice=notice.id))
            return False
        except NetworkError as exc:
            if _never_left(exc):
                await outbox.release(self.pool, notice.id, self.worker_id, 1.0, f"not sent: {exc.message}")
                DELIVERED.labels(outcome="retry").inc()
                return False
            await outbox.settle(self.pool, notice.id, "unknown", f"connection lost: {exc.message}")
            DELIVERED.labels(outcome="unknown").inc()
            return False
        await outbox.mark_sent(self.pool, notice.id, self.worker_id, sent.message_id)
        DELIVERED.labels(outcome="sent").inc()
        return True
