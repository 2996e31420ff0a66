"""Runtime configuration, read once from the environment and an optional `.env` file.

Every variable is documented in `.env.example`. A bad value stops the program at start with a
message naming the variable, rather than surfacing later as a confusing failure mid-trade.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SHARED_DATA_DEFAULT = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


_HEX = frozenset("0123456789abcdefABCDEF")
_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class SettingsError(RuntimeError):
    """Raised when the environment holds a value the program cannot run with."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # Where embedded services (PostgreSQL, Redis, BentoML's store, anvil) keep their files.
    vanta_home: Path = Path(".vanta")

    # External servers; when unset, embedded ones are started under VANTA_HOME.
    database_url: SecretStr | None = None
    redis_url: SecretStr | None = None

    # Leader eligibility (the product's existing thresholds).
    leader_active_hours: int = Field(72, gt=0)
    leader_min_trades_30d: int = Field(300, ge=0)
    leader_min_volume_30d_usd: int = Field(10_000_000, ge=0)

    # Chain access. RPC and websocket URLs often carry an API key: they are masked in every log line.
    base_rpc_url: str = "https://mainnet.base.org"
    base_ws_url: str = "wss://mainnet.base.org"
    chain_id: int = Field(8453, gt=0)
    event_backfill_blocks: int = Field(1000, gt=0)
    event_monitoring_interval: float = Field(5, gt=0)
    confirmation_depth: int = Field(3, ge=0)
    # Contracts whose logs the indexer reads, comma-separated; empty means Avantis on Base mainnet.
    avantis_addresses: str = ""

    # Pyth feed ids by pair symbol, e.g. {"BTC/USD": "0xe62d..."}, and the Hermes service serving them.
    pyth_price_feed_ids_json: str = "{}"
    pyth_hermes_url: str = "https://hermes.pyth.network"

    # Models and execution.
    ai_model_update_interval: int = Field(3600, gt=0)
    # Where the BentoML service (`vanta serve`) listens; clients (engine, bot) ask it there.
    serving_url: str = "http://127.0.0.1:3000"
    # How long the service's Redis cache keeps features and trader cards; data changes are noticed
    # at this pace too.
    serving_cache_ttl_s: float = Field(30, gt=0)
    # Days of candles the regime model is fitted on (the latest ones; 0: all the history there is).
    regime_train_days: int = Field(0, ge=0)
    copy_execution_max_delay_ms: int = Field(500, gt=0)
    copy_open_wait_s: float = Field(120, gt=0)  # a close waits this long for its open's copy
    # The on-chain venue: the contract orders go to, and the caps on each delegate transaction.
    avantis_trading_address: str = "0x44914408af82bC9983bbb330e3578E1105e11d4e"
    # USDC on Base: leaders' wallet balances for proportional sizing.
    usdc_address: str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
    copy_gas_limit: int = Field(1_500_000, gt=21_000)
    copy_max_fee_per_gas_wei: int = Field(50 * 10**9, gt=0)
    copy_priority_fee_wei: int = Field(10**6, ge=0)
    copy_execution_fee_wei: int | None = Field(None, ge=0)  # unset: the contract's executionFee()
    copy_fill_timeout_s: float = Field(30, gt=0)

    # Secrets: never logged, never echoed.
    telegram_bot_token: SecretStr | None = None
    key_encryption_secret: SecretStr | None = None
    # Our delegate's private key: followers `setDelegate` to its address; it trades, never withdraws.
    copy_delegate_key: SecretStr | None = None

    # Telegram: the Bot API server (a local one in tests), the admins allowed /kill and /health
    # (comma-separated user ids), commands per user per minute, and the notices' sending pace,
    # kept under Telegram's limits (about 30 messages/s overall, 1 per second per chat).
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    telegram_admin_ids: str = ""
    telegram_commands_per_minute: int = Field(30, gt=0)
    telegram_max_msgs_per_s: float = Field(25, gt=0, le=30)
    telegram_chat_interval_s: float = Field(1.1, ge=1)

    # Real data files that ship beside the project (read in place, never copied in).
    shared_data_dir: Path = SHARED_DATA_DEFAULT

    metrics_port: int = Field(9108, ge=0, le=65535)
    log_level: str = "INFO"

    @field_validator("pyth_price_feed_ids_json")
    @classmethod
    def _feed_ids_are_a_json_object(cls, value: str) -> str:
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg}") from exc
        if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
            raise ValueError('must be a JSON object of symbol to feed id, e.g. {"BTC/USD": "0x..."}')
        return value

    @field_validator("avantis_addresses", "avantis_trading_address", "usdc_address")
    @classmethod
    def _addresses_are_hex(cls, value: str) -> str:
        for item in filter(None, (v.strip() for v in value.split(","))):
            if not (item.startswith("0x") and len(item) == 42 and all(c in _HEX for c in item[2:])):
                raise ValueError(f"not a 0x-prefixed 20-byte address: {item!r}")
        return value

    @field_validator("telegram_admin_ids")
    @classmethod
    def _admin_ids_are_integers(cls, value: str) -> str:
        for item in filter(None, (v.strip() for v in value.split(","))):
            if not item.lstrip("-").isdigit():
                raise ValueError(f"not a Telegram user id: {item!r} (comma-separated integers)")
        return value

    @field_validator("telegram_api_base_url")
    @classmethod
    def _base_url_is_http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL such as https://api.telegram.org/bot")
        return value

    @field_validator("copy_delegate_key")
    @classmethod
    def _delegate_key_is_a_private_key(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here so a bad key stops every command at start, naming the variable, instead of
        # a traceback from the signer when the first copy is sent. The value is never echoed.
        if value is None:
            return None
        raw = value.get_secret_value().strip()
        digits = raw[2:] if raw[:2].lower() == "0x" else raw
        if len(digits) != 64 or not all(c in _HEX for c in digits):
            raise ValueError("must be a private key: 64 hex digits, optionally 0x-prefixed")
        if not 0 < int(digits, 16) < _SECP256K1_ORDER:
            raise ValueError("is not a valid secp256k1 private key (zero or past the curve order)")
        return SecretStr("0x" + digits.lower())

    @field_validator("base_rpc_url", "base_ws_url")
    @classmethod
    def _urls_have_a_scheme(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("must be a URL such as https://host/path (or wss:// for the websocket)")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return upper

    @property
    def pyth_price_feed_ids(self) -> dict[str, str]:
        return json.loads(self.pyth_price_feed_ids_json)

    @property
    def telegram_admins(self) -> frozenset[int]:
        return frozenset(int(v) for v in self.telegram_admin_ids.split(",") if v.strip())

    def secret_values(self) -> list[str]:
        """Every secret in force, so the log filter can mask them wherever they appear."""
        secrets = [
            self.telegram_bot_token,
            self.key_encryption_secret,
            self.copy_delegate_key,
            self.database_url,
            self.redis_url,
        ]
        values = [s.get_secret_value() for s in secrets if s is not None]
        # RPC providers put API keys in the URL's path or query: mask those parts wherever they
        # show up, even without the scheme and host (log lines mask whole URLs anyway).
        for url in (self.base_rpc_url, self.base_ws_url):
            parts = urlsplit(url)
            values += [parts.path.rstrip("/"), parts.query, parts.password or ""]
        return [v for v in values if len(v) >= 6]


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning pydantic's validation error into one naming each bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]).upper() if err["loc"] else "?"
            problems.append(f"{name}: {err['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
