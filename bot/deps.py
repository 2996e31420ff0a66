"""What the handlers may use, handed to them through the application (never imported globals):
the copy service for everything a follower does, the serving client for what Vanta knows about
traders and markets, the pair catalogue, the admin list and the rate limit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from telegram.ext import ContextTypes

from bot.ratelimit import CommandRateLimit
from data.pairs import Pair
from execution.copy.service import CopyService
from serving.client import ServingClient

_KEY = "vanta_deps"


@dataclass
class BotDeps:
    pool: asyncpg.Pool  # the bot's own tables only (preferences); copy data goes through `service`
    service: CopyService
    market: ServingClient
    catalogue: dict[int, Pair]
    admins: frozenset[int]
    limiter: CommandRateLimit
    delegate_address: str | None = None  # ours, derived from COPY_DELEGATE_KEY (never the key)
    chain: Any = None  # data.sources.chain.rpc.ChainRpc: reads followers' delegate registrations
    trading_address: str = ""  # the Avantis trading contract holding `delegations`

    def is_admin(self, telegram_user_id: int) -> bool:
        return telegram_user_id in self.admins


def install(bot_data: dict[str, Any], deps: BotDeps) -> None:
    bot_data[_KEY] = deps


def deps(context: ContextTypes.DEFAULT_TYPE) -> BotDeps:
    return context.application.bot_data[_KEY]
