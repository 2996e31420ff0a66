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
    assert "postgresql://vanta:***@db:5432/x" in line
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
