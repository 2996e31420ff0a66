"""Conversation and user state in PostgreSQL, saved after every update, so a restart of the bot
loses no conversation: someone halfway through /copytrader carries on where they were.

python-telegram-bot keeps conversation states and `user_data` in memory and hands them to a
`BasePersistence` every `update_interval` seconds. That interval would lose the last seconds of
every conversation on a crash, so `SavingUpdateProcessor` saves right after each update instead
(and runs one user's updates in order while different users' run side by side).

The state is JSON (`bot_state.data`): flows keep plain values in `user_data` (strings, numbers,
booleans, lists, dicts), never `Decimal`s or objects.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from typing import Any

import asyncpg
from telegram import Update
from telegram.ext import Application, BasePersistence, BaseUpdateProcessor, PersistenceInput
from telegram.ext._utils.types import ConversationDict, ConversationKey

log = logging.getLogger("vanta.bot.persistence")

_USER = "user"
_UPSERT = """
INSERT INTO bot_state (scope, key, data, updated_at) VALUES ($1, $2, $3::jsonb, now())
ON CONFLICT (scope, key) DO UPDATE SET data = EXCLUDED.data, updated_at = now()
"""


def _conversation_scope(name: str) -> str:
    return f"conversation:{name}"


class PostgresPersistence(BasePersistence[dict[str, Any], dict[str, Any], dict[str, Any]]):
    """`user_data` and conversation states in the `bot_state` table (chat and bot data unused:
    every chat with Vanta is private, so user data covers it)."""

    def __init__(self, pool: asyncpg.Pool):
        super().__init__(
            store_data=PersistenceInput(bot_data=False, chat_data=False, user_data=True, callback_data=False),
            update_interval=60,
        )
        self.pool = pool

    async def get_user_data(self) -> dict[int, dict[str, Any]]:
        rows = await self.pool.fetch("SELECT key, data FROM bot_state WHERE scope = $1", _USER)
        return {int(r["key"]): json.loads(r["data"]) for r in rows}

    async def get_chat_data(self) -> dict[int, dict[str, Any]]:
        return {}

    async def get_bot_data(self) -> dict[str, Any]:
        return {}

    async def get_callback_data(self) -> None:
        return None

    async def get_conversations(self, name: str) -> ConversationDict:
        rows = await self.pool.fetch(
            "SELECT key, data FROM bot_state WHERE scope = $1", _conversation_scope(name)
        )
        return {tuple(json.loads(r["key"])): json.loads(r["data"]) for r in rows}

    async def update_conversation(self, name: str, key: ConversationKey, new_state: object | None) -> None:
        scope, k = _conversation_scope(name), json.dumps(list(key))
        if new_state is None:
            await self.pool.execute("DELETE FROM bot_state WHERE scope = $1 AND key = $2", scope, k)
        else:
            await self.pool.execute(_UPSERT, scope, k, json.dumps(new_state))

    async def update_user_data(self, user_id: int, data: dict[str, Any]) -> None:
        await self.pool.execute(_UPSERT, _USER, str(user_id), json.dumps(data))

    async def drop_user_data(self, user_id: int) -> None:
        await self.pool.execute("DELETE FROM bot_state WHERE scope = $1 AND key = $2", _USER, str(user_id))

    # Chat data, bot data and callback data are not stored (see the class docstring).
    async def update_chat_data(self, chat_id: int, data: dict[str, Any]) -> None:
        return None

    async def update_bot_data(self, data: dict[str, Any]) -> None:
        return None

    async def update_callback_data(self, data: Any) -> None:
        return None

    async def drop_chat_data(self, chat_id: int) -> None:
        return None

    async def refresh_user_data(self, user_id: int, user_data: dict[str, Any]) -> None:
        return None

    async def refresh_chat_data(self, chat_id: int, chat_data: dict[str, Any]) -> None:
        return None

    async def refresh_bot_data(self, bot_data: dict[str, Any]) -> None:
        return None

    async def flush(self) -> None:
        return None  # every write above is already committed


class SavingUpdateProcessor(BaseUpdateProcessor):
    """Processes updates concurrently across users, in order per user, and saves the state
    right after each one (see the module docstring)."""

    def __init__(self, max_concurrent_updates: int = 64):
        super().__init__(max_concurrent_updates)
        self.application: Application[Any, Any, Any, Any, Any, Any] | None = None
        self._locks: dict[int, tuple[asyncio.Lock, list[int]]] = {}  # user -> (lock, [users of it])
        self.processed = 0  # updates finished (handled and saved)
        self._progress = asyncio.Condition()

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = 0
        if isinstance(update, Update) and update.effective_user is not None:
            key = update.effective_user.id
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                await coroutine
                if self.application is not None and self.application.persistence is not None:
                    await self.application.update_persistence()
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]
            self.processed += 1
            async with self._progress:
                self._progress.notify_all()

    async def wait_processed(self, count: int) -> None:
        """Until `count` updates have been handled and saved (the console paces scripts by it)."""
        async with self._progress:
            await self._progress.wait_for(lambda: self.processed >= count)

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None
