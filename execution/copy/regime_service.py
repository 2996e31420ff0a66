"""The regime guard's source in production: the serving layer's regime model, asked through the
serving client for the pair of each guarded open.

The guard's vocabulary is binary: `red` refuses opens, `green` lets them through, None is
`regime_unknown`. The model's yellow (elevated volatility: copy smaller) is not red, so it is
`green` here; the follower's sizing, not the guard, is where caution about yellow belongs.
No answer — the service down, timing out, not ready, no regime model, no prices for the pair, or
a regime older than `max_age_s` (prices stopped arriving) — is None: never copied on a guess.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from data.pairs import Pair
from infra.logs import log_fields
from infra.settings import Settings
from serving.client import ServingClient, Unknown

log = logging.getLogger("vanta.copy.regime")


class ServiceRegime:
    def __init__(
        self,
        client: ServingClient,
        catalogue: Mapping[int, Pair],
        *,
        max_age_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.client = client
        self.catalogue = catalogue
        self.max_age_s = max_age_s
        self.clock = clock

    async def regime(self, pair_index: int) -> str | None:
        pair = self.catalogue.get(pair_index)
        if pair is None:
            return None
        answer = await self.client.regime(pair.symbol)
        if isinstance(answer, Unknown) or not answer:
            return None
        state = answer[0]
        age = self.clock() - state.as_of
        if self.max_age_s is not None and age > self.max_age_s:
            log.warning(
                "regime too old to act on",
                extra=log_fields(pair=pair.symbol, age_s=round(age), model=state.model),
            )
            return None
        return "red" if state.color == "red" else "green"


def service_regime(settings: Settings, catalogue: Mapping[int, Pair]) -> tuple[ServiceRegime, ServingClient]:
    """The engine's regime source from the settings, and its client (for the caller to close).

    Tight timeouts: an open waits for this answer and leader events older than
    COPY_EXECUTION_MAX_DELAY_MS are not copied anyway. A regime older than two refresh intervals
    (and at least three hours: it is hourly) means prices stopped arriving: unknown."""
    client = ServingClient(settings.serving_url, timeout_s=0.25, attempts=2, backoff_s=0.02)
    max_age_s = max(3 * 3600, 2 * settings.ai_model_update_interval)
    return ServiceRegime(client, catalogue, max_age_s=max_age_s), client
