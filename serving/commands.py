"""`vanta serve` (the BentoML service) and `vanta scheduler` (retraining, refreshes, live prices)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import typer

from infra.settings import get_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def serve(
    port: int = typer.Option(None, help="listen here (default: the port of SERVING_URL)"),
    host: str = typer.Option(None, help="address to bind (default: the host of SERVING_URL)"),
) -> None:
    """Serve the analyzer, the regime, the leaderboard and opportunities over HTTP (BentoML) until stopped."""
    from serving import registry

    settings = get_settings()
    url = urlsplit(settings.serving_url)
    registry.configure(settings.vanta_home)  # BENTOML_HOME, inherited by the server's workers
    import bentoml

    bentoml.serve(
        "serving.service:Vanta",
        port=port if port is not None else (url.port or 3000),
        host=host or url.hostname or "127.0.0.1",
        working_dir=str(PROJECT_ROOT),
        blocking=True,
    )


def scheduler(
    retrain_every_h: float = typer.Option(24, min=0.01, help="hours between papermill retrainings"),
    retrain_now: bool = typer.Option(False, help="retrain at start instead of after the first interval"),
    refresh_every_s: int = typer.Option(None, min=1, help="default: AI_MODEL_UPDATE_INTERVAL"),
    retrain_timeout_h: float = typer.Option(6, min=0.01, help="a retraining running longer is killed"),
    metrics_port: int = typer.Option(None, min=0, help="/metrics port (default: METRICS_PORT; 0: any free)"),
) -> None:
    """Retrain every 24 h, refresh regimes and trader analytics every AI_MODEL_UPDATE_INTERVAL, record
    Pyth prices (PYTH_PRICE_FEED_IDS_JSON); a failed retraining alerts the admins, models stay."""
    from data.pairs import load_catalogue
    from data.sources.pyth.hermes import HermesClient, PythFeeds
    from data.sources.pyth.recorder import record_prices
    from infra.metrics import serve_metrics
    from infra.runtime import open_services, stop_on_signals
    from serving import jobs, registry
    from serving.scheduler import Job, Scheduler
    from serving.state import ServingState

    settings = get_settings()
    registry.configure(settings.vanta_home)
    feeds = PythFeeds(settings.pyth_price_feed_ids)

    async def run() -> None:
        stop = stop_on_signals()
        serve_metrics(settings.metrics_port if metrics_port is None else metrics_port)
        catalogue = load_catalogue(settings.shared_data_dir / "avantis" / "trading_snapshot.json")
        async with open_services(settings) as services:
            state = ServingState(
                services.pool, services.redis, catalogue, cache_ttl_s=settings.serving_cache_ttl_s
            )
            retrain_s = retrain_every_h * 3600

            async def retrain() -> dict[str, object]:
                return dict(await jobs.retrain(timeout_s=retrain_timeout_h * 3600))

            async def refresh() -> dict[str, object]:
                return dict(await jobs.refresh(state, services.pool))

            schedule = [
                Job(
                    "retrain",
                    retrain_s,
                    retrain,
                    alert=jobs.retrain_alert(),
                    first_after_s=0 if retrain_now else retrain_s,
                ),
                Job("refresh", refresh_every_s or settings.ai_model_update_interval, refresh),
            ]
            hermes = HermesClient(settings.pyth_hermes_url)
            background = [record_prices(services.pool, hermes, feeds, stop)] if feeds else []
            try:
                await Scheduler(services.pool, schedule).run(stop, background=background)
            finally:
                await hermes.close()

    asyncio.run(run())


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("scheduler")(scheduler)
