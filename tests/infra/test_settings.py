import pytest

from infra.settings import SettingsError, load_settings


def test_defaults_are_the_products_existing_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LEADER_ACTIVE_HOURS", "LEADER_MIN_TRADES_30D", "COPY_EXECUTION_MAX_DELAY_MS"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings(_env_file=None)
    assert (s.leader_active_hours, s.leader_min_trades_30d, s.leader_min_volume_30d_usd) == (
        72,
        300,
        10_000_000,
    )
    assert s.copy_execution_max_delay_ms == 500
    assert s.event_backfill_blocks == 1000


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADER_MIN_TRADES_30D", "12")
    monkeypatch.setenv("PYTH_PRICE_FEED_IDS_JSON", '{"BTC/USD": "0xabc"}')
    s = load_settings(_env_file=None)
    assert s.leader_min_trades_30d == 12
    assert s.pyth_price_feed_ids == {"BTC/USD": "0xabc"}


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("COPY_EXECUTION_MAX_DELAY_MS", "soon"),
        ("COPY_EXECUTION_MAX_DELAY_MS", "-5"),
        ("PYTH_PRICE_FEED_IDS_JSON", "[1, 2]"),
        ("PYTH_PRICE_FEED_IDS_JSON", "{not json"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_invalid_value_fails_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError, match=var):
        load_settings(_env_file=None)


def test_error_message_never_echoes_a_secret_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456789:AAsecretsecretsecretsecretsecret")
    monkeypatch.setenv("COPY_EXECUTION_MAX_DELAY_MS", "123456789:AAsecretsecretsecretsecretsecret")
    with pytest.raises(SettingsError) as err:
        load_settings(_env_file=None)
    assert "AAsecret" not in str(err.value)


def test_dotenv_file_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADER_ACTIVE_HOURS", raising=False)
    env = tmp_path / ".env"
    env.write_text("LEADER_ACTIVE_HOURS=24\n")
    assert load_settings(_env_file=env).leader_active_hours == 24


def test_env_example_documents_every_setting() -> None:
    from pathlib import Path

    from infra.settings import Settings

    text = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in text]
    assert missing == []
