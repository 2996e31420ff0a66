"""`vanta execute`, `vanta reconcile`, `vanta follow add|edit|list|rm`, `vanta profile
list|pause|resume|stop|rm`, `vanta copies`, `vanta notifications`, `vanta kill-switch`: the copy
service (`execution/copy/service.py`) from the command line, as the operator. Tables for people,
`--json` for machines; a refused input is one line naming it, exit status 2."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

from infra.settings import get_settings

if TYPE_CHECKING:
    from execution.copy.service import CopyError, CopyService

T = TypeVar("T")
follow_app = typer.Typer(no_args_is_help=True, help="Who copies whom, with which limits.")
profile_app = typer.Typer(
    no_args_is_help=True, help="Followers' profiles: list, pause, resume, stop, remove."
)

# How a service field is spelled on the command line (an argument, or an option).
_SPELLING = {"leader": "LEADER"}
_SELF_EXPLAINING = {"profile", "follow"}  # "no such profile 9" needs no prefix


def _refused(exc: CopyError) -> NoReturn:
    if exc.field is None or exc.field in _SELF_EXPLAINING:
        text = exc.problem
    else:
        text = f"{_SPELLING.get(exc.field, '--' + exc.field.replace('_', '-'))}: {exc.problem}"
    typer.echo(f"vanta: {text}", err=True)
    raise typer.Exit(2)


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; a refusal or an unreachable server is one line, not a traceback."""
    import asyncpg

    from execution.copy.service import CopyError

    try:
        return asyncio.run(work)
    except CopyError as exc:
        _refused(exc)
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.exceptions.CannotConnectNowError) as exc:
        typer.echo(f"vanta: a server could not be reached ({type(exc).__name__})", err=True)
        raise typer.Exit(1) from None


@asynccontextmanager
async def _service(*, redis: bool = False, migrate: bool = True) -> AsyncIterator[CopyService]:
    from execution.copy.service import CopyService
    from infra.runtime import open_services

    settings = get_settings()
    async with open_services(settings, with_redis=redis, migrate=migrate) as services:
        yield CopyService(services.pool, services.redis, settings)


def _print_json(payload: object) -> None:
    typer.echo(json.dumps(payload, default=str))


def _table(title: str, columns: list[str], rows: list[list[object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c, justify="right" if c.endswith(("USDC", "x", "#")) else "left")
    for row in rows:
        table.add_row(*("—" if v is None else str(v) for v in row))
    Console().print(table)


# --- the engine and reconciliation ----------------------------------------------------------------


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
    from execution.copy.service import EngineOptions, parse_venue, run_engine
    from infra.runtime import stop_on_signals

    options = EngineOptions(venue, paper_latency_ms, from_start, claim_idle_ms, stream, group, chunk)

    async def run() -> None:
        parse_venue(venue)  # a wrong name is refused before anything starts
        async with _service(redis=True) as service:
            await run_engine(service, options, stop_on_signals())

    _run(run())


def reconcile(
    venue: str = typer.Option("paper", help="paper | onchain | veranta"),
    fix: bool = typer.Option(False, help="correct the journal and close on the venue what it closed"),
    every: float = typer.Option(0, min=0, help="repeat every this many seconds (0: once)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per drift"),
) -> None:
    """Compare followers' open positions on the venue with the journal; report each drift."""
    from dataclasses import asdict

    from execution.copy.service import Actor, parse_venue, until_stopped
    from infra.runtime import stop_on_signals

    async def run() -> None:
        name = parse_venue(venue)
        async with _service() as service:
            stop = stop_on_signals()
            while not stop.is_set():
                drifts = await until_stopped(service.reconcile(Actor.operator(), name, fix=fix), stop)
                if stop.is_set():
                    return
                if as_json:
                    for drift in drifts:
                        _print_json(asdict(drift))
                elif drifts:
                    _table(
                        f"Drift on {name.value}",
                        ["profile", "kind", "position", "journal USDC", "venue USDC", "fixed"],
                        [
                            [
                                d.profile_id,
                                d.kind.value,
                                d.position_ref,
                                _usdc(d.journal_collateral_usdc),
                                _usdc(d.venue_collateral_usdc),
                                "yes" if d.fixed else "no",
                            ]
                            for d in drifts
                        ],
                    )
                else:
                    typer.echo(f"No drift: every {name.value} profile's open copies match the venue.")
                if not every:
                    return
                try:
                    await asyncio.wait_for(stop.wait(), every)
                except TimeoutError:
                    continue

    _run(run())


def _short(address: str | None) -> str:
    """An address in a table: enough to recognize it (the full one is in `--json`)."""
    if not address or len(address) < 12:
        return address or "manual"
    return f"{address[:6]}…{address[-4:]}"


def _usdc(micro: int | None, *, signed: bool = False) -> str:
    from execution.copy.service import usdc

    return usdc(micro, signed=signed)


# --- follows ----------------------------------------------------------------------------------------


def _follow_input(**options: Any) -> Any:
    from execution.copy.service import FollowInput

    return FollowInput(**options)


@follow_app.command("add")
def follow_add(
    leader: str = typer.Argument(..., help="leader address (0x...)"),
    user: str = typer.Option(..., help="the follower's Telegram user id"),
    profile: str = typer.Option("default", help="the follower's profile name"),
    venue: str = typer.Option("paper", help="paper | onchain | veranta"),
    wallet: str = typer.Option(None, help="the follower's wallet, delegated to our key (onchain, veranta)"),
    equity: str = typer.Option(None, help="the profile's equity in USDC (needed by equity_pct/proportional)"),
    mode: str = typer.Option("fixed", help="fixed | equity_pct | proportional | multiplier"),
    fixed: str = typer.Option(None, help="USDC collateral per trade (fixed mode)"),
    pct: str = typer.Option(None, help="percent of equity per trade (equity_pct mode)"),
    multiplier: str = typer.Option(None, help="multiple of the leader's collateral (multiplier mode)"),
    cap: str = typer.Option(None, help="per-trade collateral cap, USDC"),
    leverage_cap: str = typer.Option(None, help="highest leverage copied"),
    max_position: str = typer.Option(None, help="max notional per position, USDC"),
    side: str = typer.Option("both", help="both | long | short"),
    reverse: bool = typer.Option(False),
    copy_existing: bool = typer.Option(False, help="also copy positions the leader already holds"),
    slippage_bps: str = typer.Option("50", help="refuse a copy when the price moved more than this"),
    regime_guard: bool = typer.Option(
        False, help="refuse opens while the regime model says red (or cannot answer: regime_unknown)"
    ),
    block: list[str] = typer.Option([], help="pair index never to copy (repeatable)"),
    allow: list[str] = typer.Option([], help="only these pair indexes (repeatable)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Follow a leader (replacing an existing follow of the same leader by this profile)."""
    from execution.copy.service import Actor, ProfileInput

    settings = _follow_input(
        mode=mode,
        fixed=fixed,
        pct=pct,
        multiplier=multiplier,
        cap=cap,
        leverage_cap=leverage_cap,
        max_position=max_position,
        side=side,
        reverse=reverse,
        copy_existing=copy_existing,
        slippage_bps=slippage_bps,
        regime_guard=regime_guard,
        allow=allow,
        block=block,
    )

    async def run() -> Any:
        actor = Actor.user(user)
        async with _service() as service:
            return await service.follow(
                actor, leader, settings, ProfileInput(name=profile, venue=venue, wallet=wallet, equity=equity)
            )

    done = _run(run())
    if as_json:
        _print_json({"profile_id": done.profile_id, "follow_id": done.follow_id})
    else:
        typer.echo(
            f"Profile {done.profile_id} ({profile}) now follows {leader.lower()}: follow {done.follow_id}."
        )


@follow_app.command("edit")
def follow_edit(
    follow_id: str = typer.Argument(...),
    mode: str = typer.Option("fixed", help="fixed | equity_pct | proportional | multiplier"),
    fixed: str = typer.Option(None),
    pct: str = typer.Option(None),
    multiplier: str = typer.Option(None),
    cap: str = typer.Option(None),
    leverage_cap: str = typer.Option(None),
    max_position: str = typer.Option(None),
    side: str = typer.Option("both"),
    reverse: bool = typer.Option(False),
    copy_existing: bool = typer.Option(False),
    slippage_bps: str = typer.Option("50"),
    regime_guard: bool = typer.Option(False),
) -> None:
    """Replace a follow's settings (the same checks as `follow add`)."""
    from execution.copy.service import Actor, as_dict

    settings = _follow_input(
        mode=mode,
        fixed=fixed,
        pct=pct,
        multiplier=multiplier,
        cap=cap,
        leverage_cap=leverage_cap,
        max_position=max_position,
        side=side,
        reverse=reverse,
        copy_existing=copy_existing,
        slippage_bps=slippage_bps,
        regime_guard=regime_guard,
    )

    async def run() -> Any:
        async with _service() as service:
            return await service.edit_follow(Actor.operator(), follow_id, settings)

    _print_json(as_dict(_run(run())))


@follow_app.command("list")
def follow_list(
    user: str = typer.Option(None, help="only this Telegram user's follows"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Live follows."""
    from execution.copy.service import Actor, as_dict

    async def run() -> list[Any]:
        actor = Actor.user(user) if user is not None else Actor.operator()
        async with _service() as service:
            return await service.follows(actor)

    found = _run(run())
    if as_json:
        _print_json([as_dict(f) for f in found])
        return
    if not found:
        typer.echo("No live follows.")
        return
    _table(
        "Follows",
        ["follow", "profile", "venue", "leader", "mode", "settings"],
        [
            [
                f.id,
                f"{f.profile_id} ({f.profile})",
                f.venue,
                f.leader,
                f.mode,
                ", ".join(f"{k}={v}" for k, v in f.settings.items()),
            ]
            for f in found
        ],
    )


@follow_app.command("rm")
def follow_rm(follow_id: str = typer.Argument(...)) -> None:
    """Stop a follow (open copies stay open; their closes are no longer mirrored)."""
    from execution.copy.service import Actor

    async def run() -> None:
        async with _service() as service:
            await service.unfollow(Actor.operator(), follow_id)

    _run(run())
    typer.echo(json.dumps({"stopped": int(follow_id)}))


# --- profiles ---------------------------------------------------------------------------------------


@profile_app.command("list")
def profile_list(
    user: str = typer.Option(None, help="only this Telegram user's profiles"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Live profiles with their equity, limits and status."""
    from execution.copy.service import Actor, as_dict

    async def run() -> list[Any]:
        actor = Actor.user(user) if user is not None else Actor.operator()
        async with _service() as service:
            return await service.profiles(actor)

    found = _run(run())
    if as_json:
        _print_json([as_dict(p) for p in found])
        return
    _table(
        "Profiles",
        ["profile", "user", "name", "venue", "equity USDC", "daily loss USDC", "status"],
        [
            [
                p.id,
                p.telegram_user_id,
                p.name,
                p.venue,
                _usdc(p.equity_usdc),
                _usdc(p.daily_loss_limit_usdc),
                p.status + (f" ({p.pause_reason})" if p.pause_reason else ""),
            ]
            for p in found
        ],
    )


def _status_command(verb: str) -> Any:
    def command(profile_id: str = typer.Argument(...)) -> None:
        from execution.copy.service import Actor

        async def run() -> Any:
            async with _service() as service:
                if verb == "rm":
                    await service.delete_profile(Actor.operator(), profile_id)
                    return None
                return await getattr(service, verb)(Actor.operator(), profile_id)

        view = _run(run())
        _print_json({"profile_id": int(profile_id), "status": view.status if view else "removed"})

    command.__doc__ = {
        "pause": "Pause a profile: no new copies; closes of its open copies are still mirrored.",
        "resume": "Resume a paused or stopped profile.",
        "stop": "Stop a profile's copying until resumed; closes of its open copies are still mirrored.",
        "rm": "Remove a profile that holds no open copies (its history stays).",
    }[verb]
    return command


for _verb in ("pause", "resume", "stop", "rm"):
    profile_app.command(_verb)(_status_command(_verb))


# --- what followers see -------------------------------------------------------------------------------


def copies(
    follower: str = typer.Option(..., help="profile id"),
    as_json: bool = typer.Option(False, "--json"),
    marks: bool = typer.Option(
        False, help="price open copies at the event stream's latest fills (needs Redis)"
    ),
    recent: int = typer.Option(0, min=0, help="also show this many recent copies and refusals"),
) -> None:
    """A follower's copied positions and PnL per leader (manual trades apart)."""
    from execution.copy.service import Actor, as_dict

    async def run() -> tuple[Any, list[Any]]:
        async with _service(redis=marks) as service:
            prices = await service.marks() if marks else None
            report = await service.copies(Actor.operator(), follower, prices)
            latest = await service.recent(Actor.operator(), follower, recent) if recent else []
            return report, latest

    report, latest = _run(run())
    if as_json:
        _print_json({**as_dict(report), "recent": [as_dict(c) for c in latest]})
        return
    if not report.per_leader:
        typer.echo(f"Profile {report.profile_id} has no copies yet.")
    else:
        _table(
            f"Profile {report.profile_id}: PnL per leader",
            [
                "leader",
                "positions #",
                "open #",
                "realized USDC",
                "unrealized USDC",
                "fees USDC",
                "slippage USDC",
            ],
            [
                [
                    _short(r.leader),
                    r.positions,
                    r.open,
                    _usdc(r.realized_pnl_usdc, signed=True),
                    _usdc(r.unrealized_pnl_usdc, signed=True),
                    _usdc(r.fees_usdc),
                    _usdc(r.slippage_cost_usdc),
                ]
                for r in report.per_leader
            ],
        )
        held = [p for p in report.positions if p.status == "open"]
        if held:
            _table(
                "Open copies",
                ["leader", "pair", "side", "collateral USDC", "leverage x", "entry", "unrealized USDC"],
                [
                    [
                        _short(p.leader),
                        p.pair,
                        p.side,
                        _usdc(p.collateral_usdc),
                        f"{p.leverage.normalize():f}",
                        f"{p.entry_price.normalize():f}",
                        _usdc(p.unrealized_pnl_usdc, signed=True),
                    ]
                    for p in held
                ],
            )
    if latest:
        _table(
            "Recent copies and refusals",
            ["at", "leader", "action", "state", "pair", "collateral USDC", "PnL USDC", "reason"],
            [
                [
                    c.at.strftime("%Y-%m-%d %H:%M:%S"),
                    _short(c.leader),
                    c.action,
                    c.state,
                    c.pair,
                    _usdc(c.collateral_usdc),
                    _usdc(c.pnl_usdc, signed=True),
                    c.reason,
                ]
                for c in latest
            ],
        )


def notifications(
    user: str = typer.Option(..., help="the follower's Telegram user id"),
    limit: int = typer.Option(20, min=1, max=500),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A follower's latest notifications, as the bot will word them."""
    from execution.copy.service import Actor, as_dict

    async def run() -> list[Any]:
        async with _service() as service:
            return await service.notifications(Actor.operator(), limit, telegram_user_id=user)

    found = _run(run())
    if as_json:
        _print_json([as_dict(n) for n in found])
        return
    if not found:
        typer.echo("No notifications.")
        return
    _table(
        "Notifications",
        ["at", "level", "text"],
        [[n.at.strftime("%Y-%m-%d %H:%M:%S"), n.level, n.text] for n in found],
    )


def kill_switch(state: str = typer.Argument(..., help="on | off")) -> None:
    """Stop (on) or resume (off) all copying at once, across every engine."""
    from execution.copy.service import Actor, CopyError

    async def run() -> None:
        if state not in ("on", "off"):
            raise CopyError(f"{state!r} is not on or off", "state")
        async with _service(redis=True, migrate=False) as service:
            await service.kill_switch(Actor.operator(), state == "on")

    _run(run())
    typer.echo(json.dumps({"kill_switch": state}))


def register(app: typer.Typer) -> None:
    app.command("execute")(execute)
    app.command("reconcile")(reconcile)
    app.add_typer(follow_app, name="follow")
    app.add_typer(profile_app, name="profile")
    app.command("copies")(copies)
    app.command("notifications")(notifications)
    app.command("kill-switch")(kill_switch)
