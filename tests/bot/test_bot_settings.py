"""The bot's settings: admins, the Bot API URL and the sending pace, refused when unusable."""

from __future__ import annotations

import pytest

from infra.settings import SettingsError, load_settings


def test_admins_and_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_ADMIN_IDS", " 11, 22 ,")
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", "http://127.0.0.1:8081/bot")
    s = load_settings(_env_file=None)
    assert s.telegram_admins == frozenset({11, 22})
    assert s.telegram_api_base_url == "http://127.0.0.1:8081/bot"
    assert load_settings(_env_file=None, telegram_admin_ids="").telegram_admins == frozenset()


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("TELEGRAM_ADMIN_IDS", "11,bob"),
        ("TELEGRAM_API_BASE_URL", "api.telegram.org/bot"),
        ("TELEGRAM_MAX_MSGS_PER_S", "45"),  # over Telegram's 30/s
        ("TELEGRAM_CHAT_INTERVAL_S", "0.2"),  # under Telegram's 1/s per chat
        ("TELEGRAM_COMMANDS_PER_MINUTE", "0"),
    ],
)
def test_unusable_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError, match=var):
        load_settings(_env_file=None)
