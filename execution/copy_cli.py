"""`vanta execute`, `vanta reconcile`, `vanta follow add|list|rm`, `vanta copies`,
`vanta kill-switch`: the copy engine and its configuration without the bot."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import typer

from infra.settings import get_settings

follow_app = typer.Typer(no_args_is_help=True, help="Who copies whom, with which limits.")


def _micro(usdc: str | None) -> int | None:
    if usdc is None:
        return None
    from data.units import usdc_to_micro

    return usdc_to_micro(Decimal(usdc))


def _venue(name: str, pool: Any, catalogue: dict[int, Any], feed: Any, paper_latency_ms: int) -> Any:
    """The venue the engine sends to, built from the settings."""
    settings = get_settings()
    if name == "paper":
        from execution.venues.paper import PaperVenue

        return PaperVenue(pool, catalogue, feed, latency_ms=paper_latency_ms)
    if settings.copy_delegate_key is None:
        raise typer.BadParameter("COPY_DELEGATE_KEY is not set", param_hint="--venue")
    key = settings.copy_delegate_key.get_secret_value()
    if name == "veranta":
        from execution.venues.veranta import VerantaVenue

        return VerantaVenue(pool, key)  # the SDK's own VERANTA_* settings pick the network and URLs
    from data.sources.chain.rpc import ChainRpc
    from execution.venues.onchain import OnchainConfig, OnchainVenue

    config = OnchainConfig(
        trading_address=settings.avantis_trading_address,
        chain_id=settings.chain_id,
        gas_limit=settings.copy_gas_limit,
        max_fee_per_gas_wei=settings.copy_max_fee_per_gas_wei,
        priority_fee_wei=settings.copy_priority_fee_wei,
        execution_fee_wei=settings.copy_execution_fee_wei,
        fill_timeout_s=settings.copy_fill_timeout_s,
    )
    return OnchainVenue(pool, ChainRpc(settings.base_rpc_url), key, config, pairs=sorted(catalogue))


def execute(
    venue: str = typer.Option("paper", help="paper | onchain | veranta"),
    paper_latency_ms: int = typer.Option(0, min=0),
    from_start: bool = typer.Option(False, help="consume the stream from its start, not only new events"),
    claim_idle_ms: int = typer.Option(5000, min=100, help="take over a dead engine's messages after this"),
    stream: str = typer.Option("events", help="the event stream to consume"),
    group: str = typer.Option(None, help="consumer group shared by the engines (default copy-<venue>)"),
    chunk: int = typer.Option(250, min=1, help="intents locked and sent per batch"),
) -> None:
    """Run the copy engine on the event stream until SIGINT/SIGTERM (several may run side by side)."""
    from data.pairs import load_catalogue
    from data.sources.chain.rpc import ChainRpc
    from execution.copy.engine import CopyEngine, EngineConfig, LastPriceFeed
    from execution.copy.leader_equity import ChainLeaderEquity
    from infra.runtime import open_services, stop_on_signals

    settings = get_settings()
    if venue not in ("paper", "onchain", "veranta"):
        raise typer.BadParameter("paper, onchain or veranta", param_hint="--venue")

    async def run() -> None:
        stop = stop_on_signals()
        catalogue = load_catalogue(settings.shared_data_dir / "avantis" / "trading_snapshot.json")
        async with open_services(settings) as services:
            feed = LastPriceFeed()
            target = _venue(venue, services.pool, catalogue, feed, paper_latency_ms)
            config = EngineConfig(
                max_delay_ms=settings.copy_execution_max_delay_ms,
                claim_idle_ms=claim_idle_ms,
                stream=stream,
                group=group or f"copy-{venue}",
                chunk=chunk,
            )
            # Leaders' equity (proportional sizing) from the chain; unreachable, it is a refusal.
            chain = ChainRpc(settings.base_rpc_url, max_attempts=3)
            equity = ChainLeaderEquity(chain, settings.usdc_address)
            try:
                async with CopyEngine(
                    services.pool, services.redis, target, feed, catalogue, config, leader_equity=equity
                ) as engine:
                    await engine.run(stop, start_id="0" if from_start else "$")
            finally:
                await target.close()
                await chain.close()

    asyncio.run(run())


def reconcile(
    venue: str = typer.Option("paper", help="paper | onchain | veranta"),
    fix: bool = typer.Option(False, help="correct the journal and close on the venue what it closed"),
    every: float = typer.Option(0, min=0, help="repeat every this many seconds (0: once)"),
) -> None:
    """Compare followers' open positions on the venue with the journal; print each drift as JSON."""
    from dataclasses import asdict

    from data.pairs import load_catalogue
    from execution.copy.engine import LastPriceFeed
    from execution.copy.reconcile import reconcile as run_reconcile
    from infra.runtime import open_services, stop_on_signals

    settings = get_settings()

    async def run() -> None:
        stop = stop_on_signals()
        catalogue = load_catalogue(settings.shared_data_dir / "avantis" / "trading_snapshot.json")
        async with open_services(settings, with_redis=False) as services:
            target = _venue(venue, services.pool, catalogue, LastPriceFeed(), 0)
            try:
                while True:
                    for drift in await run_reconcile(services.pool, target, fix=fix):
                        typer.echo(json.dumps(asdict(drift)))
                    if not every:
                        return
                    try:
                        await asyncio.wait_for(stop.wait(), every)
                        return
                    except TimeoutError:
                        continue
            finally:
                await target.close()

    asyncio.run(run())


@follow_app.command("add")
def follow_add(
    leader: str = typer.Argument(..., help="leader address"),
    user: int = typer.Option(..., help="the follower's Telegram user id"),
    profile: str = typer.Option("default", help="the follower's profile name"),
    venue: str = typer.Option("paper", help="paper | onchain | veranta"),
    wallet: str = typer.Option(None, help="the follower's wallet, delegated to our key (onchain venue)"),
    equity: str = typer.Option(None, help="the profile's equity in USDC (needed by equity_pct/proportional)"),
    mode: str = typer.Option("fixed", help="fixed | equity_pct | proportional | multiplier"),
    fixed: str = typer.Option(None, help="USDC collateral per trade (fixed mode)"),
    pct: str = typer.Option(None, help="percent of equity per trade (equity_pct mode)"),
    multiplier: str = typer.Option(None, help="multiple of the leader's collateral (multiplier mode)"),
    cap: str = typer.Option(None, help="per-trade collateral cap, USDC"),
    leverage_cap: str = typer.Option(None),
    max_position: str = typer.Option(None, help="max notional per position, USDC"),
    side: str = typer.Option("both", help="both | long | short"),
    reverse: bool = typer.Option(False),
    copy_existing: bool = typer.Option(False, help="also copy positions the leader already holds"),
    slippage_bps: int = typer.Option(50, min=0),
    regime_guard: bool = typer.Option(
        False, help="refuse opens while the regime model says red (or has no answer: not served yet)"
    ),
    block: list[int] = typer.Option([], help="pair index never to copy (repeatable)"),
    allow: list[int] = typer.Option([], help="only these pair indexes (repeatable)"),
) -> None:
    """Follow a leader (replacing an existing follow of the same leader by this profile)."""
    from execution.copy.follows import add_follow
    from execution.copy.model import FollowConfig, SizingMode
    from execution.copy.profiles import ensure_profile
    from infra.runtime import open_services

    try:
        config = FollowConfig(
            sizing_mode=SizingMode(mode),
            fixed_collateral_usdc=_micro(fixed),
            equity_pct=Decimal(pct) if pct else None,
            multiplier=Decimal(multiplier) if multiplier else None,
            per_trade_cap_usdc=_micro(cap),
            leverage_cap=Decimal(leverage_cap) if leverage_cap else None,
            max_position_usdc=_micro(max_position),
            pair_allow=frozenset(allow) if allow else None,
            pair_block=frozenset(block),
            side_filter=side,
            reverse=reverse,
            copy_existing=copy_existing,
            slippage_bps=slippage_bps,
            regime_guard=regime_guard,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    needed = {
        "fixed": config.fixed_collateral_usdc,
        "equity_pct": config.equity_pct,
        "multiplier": config.multiplier,
    }
    if mode in needed and not needed[mode]:
        raise typer.BadParameter(f"mode {mode} needs its amount (--fixed, --pct or --multiplier)")
    if venue in ("onchain", "veranta") and not (wallet and wallet.startswith("0x") and len(wallet) == 42):
        raise typer.BadParameter(
            f"the {venue} venue needs the follower's 0x wallet address", param_hint="--wallet"
        )

    async def run() -> dict[str, int]:
        async with open_services(get_settings(), with_redis=False) as services:
            async with services.pool.acquire() as conn:
                pid = await ensure_profile(
                    conn,
                    telegram_user_id=user,
                    name=profile,
                    venue=venue,
                    equity_usdc=_micro(equity),
                    wallet_address=wallet,
                )
                fid = await add_follow(conn, pid, leader, config)
        return {"profile_id": pid, "follow_id": fid}

    typer.echo(json.dumps(asyncio.run(run())))


@follow_app.command("list")
def follow_list(user: int = typer.Option(None, help="only this Telegram user's follows")) -> None:
    """Live follows, one JSON object per line."""
    from infra.runtime import open_services

    async def run() -> list[dict[str, object]]:
        async with open_services(get_settings(), with_redis=False) as services:
            rows = await services.pool.fetch(
                "SELECT f.id, f.leader_address, f.status, p.id AS profile_id, p.name, u.telegram_user_id, "
                "c.sizing_mode FROM leader_follows f JOIN copytrader_profiles p ON p.id = f.profile_id "
                "JOIN users u ON u.id = p.user_id JOIN copy_configurations c ON c.id = f.config_id "
                "WHERE f.status <> 'stopped' AND ($1::bigint IS NULL OR u.telegram_user_id = $1) ORDER BY f.id",
                user,
            )
        return [dict(r) for r in rows]

    for row in asyncio.run(run()):
        typer.echo(json.dumps(row))


@follow_app.command("rm")
def follow_rm(follow_id: int = typer.Argument(...)) -> None:
    """Stop a follow (open copies stay open; their closes are no longer mirrored)."""
    from execution.copy.follows import stop_follow
    from infra.runtime import open_services

    async def run() -> bool:
        async with open_services(get_settings(), with_redis=False) as services:
            async with services.pool.acquire() as conn:
                return await stop_follow(conn, follow_id)

    if not asyncio.run(run()):
        typer.echo(f"no live follow {follow_id}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps({"stopped": follow_id}))


def copies(
    follower: int = typer.Option(..., help="profile id"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A follower's copied positions and PnL per leader (manual trades apart)."""
    from infra.runtime import open_services

    async def run() -> dict[str, object]:
        async with open_services(get_settings(), with_redis=False) as services:
            positions = await services.pool.fetch(
                "SELECT leader_address, pair_index, side, collateral_usdc, leverage, entry_price, leader_entry_price, "
                "exit_price, leader_exit_price, open_fee_usdc, close_fee_usdc, realized_pnl_usdc, status, is_manual "
                "FROM copy_positions WHERE profile_id = $1 ORDER BY id",
                follower,
            )
            per_leader = await services.pool.fetch(
                "SELECT CASE WHEN is_manual THEN 'manual' ELSE leader_address END AS leader, count(*) AS positions, "
                "sum(realized_pnl_usdc)::bigint AS realized_pnl_usdc, "
                "sum(open_fee_usdc + close_fee_usdc)::bigint AS fees_usdc "
                "FROM copy_positions WHERE profile_id = $1 GROUP BY 1 ORDER BY 1",
                follower,
            )
        return {"positions": [dict(r) for r in positions], "per_leader": [dict(r) for r in per_leader]}

    result = asyncio.run(run())
    if as_json:
        typer.echo(json.dumps(result, default=str))
        return
    for row in result["per_leader"]:  # type: ignore[union-attr]
        pnl = Decimal(row["realized_pnl_usdc"] or 0) / 1_000_000
        typer.echo(f"{row['leader']}: {row['positions']} positions, realized {pnl:.6f} USDC")


def kill_switch(state: str = typer.Argument(..., help="on | off")) -> None:
    """Stop (on) or resume (off) all copying at once, across every engine."""
    from execution.copy.engine import KILL_SWITCH_KEY
    from infra.runtime import open_services

    if state not in ("on", "off"):
        raise typer.BadParameter("on or off")

    async def run() -> None:
        async with open_services(get_settings(), migrate=False) as services:
            assert services.redis is not None
            if state == "on":
                await services.redis.set(KILL_SWITCH_KEY, "1")
            else:
                await services.redis.delete(KILL_SWITCH_KEY)

    asyncio.run(run())
    typer.echo(json.dumps({"kill_switch": state}))


def register(app: typer.Typer) -> None:
    app.command("execute")(execute)
    app.command("reconcile")(reconcile)
    app.add_typer(follow_app, name="follow")
    app.command("copies")(copies)
    app.command("kill-switch")(kill_switch)
