import io
import json
import logging

from infra.logs import SecretMasker, configure_logging, log_fields


def test_masks_configured_secrets_tokens_keys_and_url_passwords() -> None:
    key = "0x" + "ab" * 32
    mask = SecretMasker(["hunter2-fernet-key", key])
    tx_hash = "0x" + "cd" * 32
    line = mask(
        "key=hunter2-fernet-key tok=123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw "
        f"pk={key} tx={tx_hash} url=postgresql://vanta:pa55word@db:5432/x"
    )
    assert "hunter2" not in line and "AAHdq" not in line and key not in line and "pa55word" not in line
    assert "postgresql://vanta:***@db:5432/***" in line
    assert tx_hash in line  # hashes are not secrets: they must stay readable in indexer logs


def test_json_lines_carry_fields_and_mask_exceptions() -> None:
    out = io.StringIO()
    configure_logging("INFO", ["s3cr3t-value"], stream=out)
    log = logging.getLogger("vanta.test")
    log.info("indexed", extra=log_fields(block=12, trader="0xabc"))
    try:
        raise RuntimeError("connect failed with password s3cr3t-value")
    except RuntimeError:
        log.exception("boom")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["msg"] == "indexed" and first["block"] == 12 and first["trader"] == "0xabc"
    assert "s3cr3t-value" not in second["exc"] and "***" in second["exc"]


def test_rpc_and_websocket_urls_keep_only_their_host() -> None:
    """Providers put API keys in the path, the query or the credentials of the URL."""
    mask = SecretMasker()
    cases = {
        "https://base-mainnet.g.alchemy.com/v2/AbCdEf0123456789": "https://base-mainnet.g.alchemy.com/***",
        "wss://base.example.pro/9f8e7d6c5b4a/": "wss://base.example.pro/***",
        "https://rpc.example.com/?apikey=s3cr3tkey": "https://rpc.example.com/***",
        "https://user:pw123456@rpc.example.com:8545/x": "https://user:***@rpc.example.com:8545/***",
        "http://127.0.0.1:8545": "http://127.0.0.1:8545",
    }
    for url, masked in cases.items():
        line = mask(f'{{"msg": "rpc call failed", "error": "ClientError: 401 for url {url} while polling"}}')
        assert masked in line, line
        for part in ("AbCdEf", "9f8e7d", "s3cr3t", "pw123456"):
            assert part not in line


def test_configured_rpc_key_is_masked_even_without_its_url(monkeypatch) -> None:
    from infra.settings import load_settings

    settings = load_settings(
        _env_file=None, base_rpc_url="https://base-mainnet.g.alchemy.com/v2/AbCdEf0123456789"
    )
    out = io.StringIO()
    configure_logging("INFO", settings.secret_values(), stream=out)
    logging.getLogger("vanta.test").warning("node said: bad key /v2/AbCdEf0123456789 (quota)")
    assert "AbCdEf" not in out.getvalue() and "***" in out.getvalue()
