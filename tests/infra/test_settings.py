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
        ("COPY_DELEGATE_KEY", "0x1234"),
        ("COPY_DELEGATE_KEY", "not-a-key-" + "z" * 54),
        ("COPY_DELEGATE_KEY", "0x" + "0" * 64),
        ("COPY_DELEGATE_KEY", "0x" + "f" * 64),
        ("BASE_RPC_URL", "base-mainnet.g.alchemy.com/v2/key"),
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


def test_a_bad_delegate_key_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = "0x" + "ab" * 31 + "zz"
    monkeypatch.setenv("COPY_DELEGATE_KEY", bad)
    with pytest.raises(SettingsError) as err:
        load_settings(_env_file=None)
    assert str(err.value).count("\n") == 0 and "COPY_DELEGATE_KEY" in str(err.value)
    assert "abab" not in str(err.value)


def test_a_good_delegate_key_is_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "COPY_DELEGATE_KEY", "AC0974BEC39A17E36BA4A6B4D238FF944BACB478CBED5EFCAE784D7BF4F2FF80"
    )
    key = load_settings(_env_file=None).copy_delegate_key
    assert (
        key is not None
        and key.get_secret_value()
        == "0x" + "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
    )
