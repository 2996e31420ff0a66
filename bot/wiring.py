"""Building the bot's dependencies from the settings and the running services, in one place for
`vanta bot`, its console mode, the demo and the benchmark."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.deps import BotDeps
from bot.ratelimit import CommandRateLimit
from data.pairs import load_catalogue
from data.sources.chain.rpc import ChainRpc
from execution.copy.service import CopyService
from infra.runtime import Services
from serving.client import ServingClient


def delegate_address(key: str | None) -> str | None:
    """Our delegate's public address: what followers register. The key itself never leaves here."""
    if not key:
        return None
    from eth_account import Account

    return str(Account.from_key(key).address)


@asynccontextmanager
async def open_bot_deps(
    services: Services, *, extra_admins: frozenset[int] = frozenset(), serving_url: str | None = None
) -> AsyncIterator[BotDeps]:
    """The bot's collaborators; `serving_url` overrides SERVING_URL (the demo's own service)."""
    settings = services.settings
    catalogue = load_catalogue(settings.shared_data_dir / "avantis" / "trading_snapshot.json")
    key = settings.copy_delegate_key.get_secret_value() if settings.copy_delegate_key else None
    ours = delegate_address(key)
    chain = ChainRpc(settings.base_rpc_url, timeout_s=5, max_attempts=2) if ours else None
    try:
        async with ServingClient(serving_url or settings.serving_url) as market:
            yield BotDeps(
                pool=services.pool,
                service=CopyService(services.pool, services.redis, settings, catalogue),
                market=market,
                catalogue=catalogue,
                admins=settings.telegram_admins | extra_admins,
                limiter=CommandRateLimit(services.redis, settings.telegram_commands_per_minute),
                delegate_address=ours,
                chain=chain,
                trading_address=settings.avantis_trading_address,
            )
    finally:
        if chain is not None:
            await chain.close()
