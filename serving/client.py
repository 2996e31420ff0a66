"""The typed async client of the serving layer, for the engine, the bot and the scheduler.

When the service cannot answer — down, timing out, overloaded, not ready, failing — a call returns
`Unknown` with the reason instead of raising or guessing: a caller then refuses what needed the
answer (the regime guard refuses with `regime_unknown`) rather than acting on a default. Transport
failures and 5xx/503 answers are retried a few times with short exponential backoff (tenacity);
a 4xx other than "not found" is the caller's mistake and raises `ServingRequestError`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import TypeAdapter, ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from infra.logs import log_fields
from infra.metrics import counter
from serving.schemas import (
    Health,
    LeaderboardPage,
    LeaderboardSort,
    Opportunity,
    RegimeState,
    ScoreItem,
    TraderCard,
    TraderScore,
)

log = logging.getLogger("vanta.serving.client")

UNKNOWN_ANSWERS = counter(
    "vanta_serving_unknown_total", "Serving calls answered Unknown (service could not answer)", ("route",)
)

T = TypeVar("T")


@dataclass(frozen=True)
class Unknown:
    """The service gave no answer; `reason` says why (for logs and refusals, never for guessing)."""

    reason: str


class ServingRequestError(ValueError):
    """The service refused the request as malformed (4xx): a bug in the caller, not an outage."""


class _Retryable(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


_SCORES = TypeAdapter(list[TraderScore])
_REGIMES = TypeAdapter(list[RegimeState])
_OPPORTUNITIES = TypeAdapter(list[Opportunity])
_CARD = TypeAdapter(TraderCard)
_PAGE = TypeAdapter(LeaderboardPage)
_HEALTH = TypeAdapter(Health)


class ServingClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 2.0,
        attempts: int = 3,
        backoff_s: float = 0.05,
        max_connections: int = 64,
    ):
        self.base_url = base_url.rstrip("/")
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 1.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> ServingClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- the endpoints ------------------------------------------------------------------------

    async def score(self, items: list[ScoreItem] | list[str]) -> list[TraderScore] | Unknown:
        """Scores for a batch of traders (addresses, or feature rows), in the order given."""
        rows = [ScoreItem(trader=i) if isinstance(i, str) else i for i in items]
        body = {"items": [r.model_dump(exclude_none=True) for r in rows]}
        return await self._call("/score", body, _SCORES)

    async def trader(self, address: str) -> TraderCard | Unknown | None:
        """A trader's card; None when the service knows no trade of this address."""
        return await self._call("/trader", {"address": address}, _CARD, not_found_is_none=True)

    async def leaderboard(
        self,
        *,
        page: int = 1,
        page_size: int = 20,
        sort: LeaderboardSort = "score",
        eligible_only: bool = True,
        min_trades: int = 0,
        archetype: str | None = None,
        hide_flagged: bool = False,
    ) -> LeaderboardPage | Unknown:
        body = {
            "page": page,
            "page_size": page_size,
            "sort": sort,
            "eligible_only": eligible_only,
            "min_trades": min_trades,
            "archetype": archetype,
            "hide_flagged": hide_flagged,
        }
        return await self._call("/leaderboard", body, _PAGE)

    async def regime(self, pair: str | None = None) -> list[RegimeState] | Unknown:
        """The current regime of one pair (`BTC/USD`) or of every pair the service has prices for."""
        return await self._call("/regime", {"pair": pair}, _REGIMES)

    async def opportunities(self, *, limit: int = 10, min_p_win: float = 0.55) -> list[Opportunity] | Unknown:
        return await self._call("/opportunities", {"limit": limit, "min_p_win": min_p_win}, _OPPORTUNITIES)

    async def health(self) -> Health | Unknown:
        return await self._call("/health", {}, _HEALTH)

    # --- transport ----------------------------------------------------------------------------

    async def _call(
        self, route: str, body: dict[str, Any], shape: TypeAdapter[T], *, not_found_is_none: bool = False
    ) -> Any:
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=self.backoff_s, max=1.0),
                retry=retry_if_exception_type(_Retryable),
                reraise=True,
            ):
                with attempt:
                    reply = await self._post(route, body)
        except _Retryable as exc:
            UNKNOWN_ANSWERS.labels(route).inc()
            log.warning("serving gave no answer", extra=log_fields(route=route, reason=exc.reason))
            return Unknown(exc.reason)
        if reply.status_code == 404 and not_found_is_none:
            return None
        if 400 <= reply.status_code < 500:
            raise ServingRequestError(f"{route}: HTTP {reply.status_code}: {reply.text[:300]}")
        try:
            return shape.validate_json(reply.content)
        except ValidationError as exc:
            # A reply we cannot read is no answer: count it and say so, never fill in defaults.
            UNKNOWN_ANSWERS.labels(route).inc()
            reason = (
                f"{route}: unreadable reply ({exc.error_count()} errors, first: {exc.errors()[0]['msg']})"
            )
            log.error("serving reply does not match its schema", extra=log_fields(route=route, reason=reason))
            return Unknown(reason)

    async def _post(self, route: str, body: dict[str, Any]) -> httpx.Response:
        try:
            reply = await self.http.post(route, json=body)
        except httpx.TransportError as exc:
            raise _Retryable(f"{route}: {type(exc).__name__}: {exc or 'no detail'}") from None
        if reply.status_code >= 500 or reply.status_code == 429:
            raise _Retryable(f"{route}: HTTP {reply.status_code}: {reply.text[:200]}")
        return reply
