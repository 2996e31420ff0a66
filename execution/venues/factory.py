"""One way to build a venue: a builder per `VenueName`, from the settings. A name that is not a
venue is an error naming the choices, never a fallback to some other venue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from data.pairs import Pair
from execution.venues.base import PriceFeed, Venue, VenueName
from infra.settings import Settings


class VenueConfigError(ValueError):
    """A venue that cannot be built as configured (its message names the setting at fault)."""


def venue_name(text: str) -> VenueName:
    try:
        return VenueName(text.strip().lower())
    except ValueError:
        choices = ", ".join(v.value for v in VenueName)
        raise VenueConfigError(f"unknown venue {text!r}: choose {choices}") from None


@dataclass(frozen=True)
class VenueParts:
    """What a venue may need: the database, the pair catalogue, prices, and the settings."""

    pool: asyncpg.Pool
    catalogue: dict[int, Pair]
    feed: PriceFeed
    settings: Settings
    paper_latency_ms: int = 0


def _delegate_key(parts: VenueParts, name: VenueName) -> str:
    if parts.settings.copy_delegate_key is None:
        raise VenueConfigError(
            f"the {name.value} venue trades with our delegate key: COPY_DELEGATE_KEY is not set"
        )
    key = parts.settings.copy_delegate_key.get_secret_value()
    try:
        from eth_account import Account

        Account.from_key(key)
    except Exception:
        raise VenueConfigError("COPY_DELEGATE_KEY is not a valid private key (32 bytes of hex)") from None
    return key


def _paper(parts: VenueParts) -> Venue:
    from execution.venues.paper import PaperVenue

    return PaperVenue(parts.pool, parts.catalogue, parts.feed, latency_ms=parts.paper_latency_ms)


def _onchain(parts: VenueParts) -> Venue:
    from data.sources.chain.rpc import ChainRpc
    from execution.venues.onchain import OnchainConfig, OnchainVenue

    s = parts.settings
    key = _delegate_key(parts, VenueName.ONCHAIN)
    config = OnchainConfig(
        trading_address=s.avantis_trading_address,
        chain_id=s.chain_id,
        gas_limit=s.copy_gas_limit,
        max_fee_per_gas_wei=s.copy_max_fee_per_gas_wei,
        priority_fee_wei=s.copy_priority_fee_wei,
        execution_fee_wei=s.copy_execution_fee_wei,
        fill_timeout_s=s.copy_fill_timeout_s,
    )
    return OnchainVenue(parts.pool, ChainRpc(s.base_rpc_url), key, config, pairs=sorted(parts.catalogue))


def _veranta(parts: VenueParts) -> Venue:
    from execution.venues.veranta import VerantaVenue

    # The SDK's own VERANTA_* settings pick the network and URLs.
    return VerantaVenue(parts.pool, _delegate_key(parts, VenueName.VERANTA))


BUILDERS: dict[VenueName, Callable[[VenueParts], Venue]] = {
    VenueName.PAPER: _paper,
    VenueName.ONCHAIN: _onchain,
    VenueName.VERANTA: _veranta,
}


def build_venue(name: VenueName, parts: VenueParts) -> Venue:
    return BUILDERS[name](parts)
