"""The ledger formula against real closed Avantis trades (../shared/data/avantis/trades)."""

import json
import subprocess
import sys
from pathlib import Path

from data.sources.veranta_history.records import load_file, parse_trade
from research.reconcile import check_trade, summarize
from tests.conftest import shared_data_or_skip


def real_trades():
    folder = shared_data_or_skip("avantis", "trades")
    out = []
    for path in sorted(folder.glob("*.json")):
        trader, records = load_file(path)
        out += [parse_trade(trader, r) for r in records]
    return out


def test_every_real_close_reproduces_and_is_explained() -> None:
    checks = [check_trade(t) for t in real_trades()]
    summary = summarize(checks)
    assert summary["trades"] == 373
    assert summary["usdc_sent_exact"] == 373
    assert summary["unexplained"] == 0
    assert summary["price_exact"] + summary["loss_protected"] + summary["liquidated"] == 373
    assert summary["loss_protected"] > 0 and summary["liquidated"] >= 1
    assert summary["closing_fee_rate_median"] == "0.0004500"  # 0.045 % on crypto


def test_a_tampered_trade_is_caught() -> None:
    from dataclasses import replace
    from decimal import Decimal

    t = real_trades()[0]
    assert check_trade(t).usdc_sent_exact
    bad = replace(t, usdc_sent=t.usdc_sent + Decimal("0.000001"))
    assert not check_trade(bad).usdc_sent_exact
    wrong_price = replace(t, close_price=t.close_price * 2)
    assert check_trade(wrong_price).classification == "unexplained"


def test_cli_exits_zero_on_the_real_files_and_one_on_a_bad_one(tmp_path: Path) -> None:
    folder = shared_data_or_skip("avantis", "trades")
    vanta = str(Path(sys.executable).parent / "vanta")
    ok = subprocess.run(
        [vanta, "pnl", "reconcile", *map(str, sorted(folder.glob("*.json")))], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["usdc_sent_exact"] == 373
    doc = json.loads((folder / "dce95.json").read_text())
    doc["trades"][0]["usdcSent"] += 1
    doc["trades"][1] = {"gross": "oops"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    result = subprocess.run([vanta, "pnl", "reconcile", str(bad)], capture_output=True, text=True)
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["rejected"] == 1 and summary["usdc_sent_exact"] == summary["trades"] - 1
    assert "missing" in result.stderr


UNREADABLE = [
    (b"", "not JSON: Expecting value at line 1 column 1"),
    (b"\xff\xfe", "not UTF-8 (byte 0"),
    (b"[" * 100_000, "JSON nested too deeply"),
    (b'{"address": "0x12", "trades": []}', "address is not a 0x address of 40 hex digits: '0x12'"),
    (b'{"trades": {}}', "expected an object with 'address' and a 'trades' list"),
]


def test_each_unreadable_file_is_one_line_naming_it(tmp_path: Path) -> None:
    vanta = str(Path(sys.executable).parent / "vanta")
    paths = []
    for i, (content, _) in enumerate(UNREADABLE):
        paths.append(tmp_path / f"bad{i}.json")
        paths[-1].write_bytes(content)
    result = subprocess.run([vanta, "pnl", "reconcile", *map(str, paths)], capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(UNREADABLE)
    for path, (_, message), line in zip(paths, UNREADABLE, lines, strict=True):
        assert line.startswith(f"rejected: {path}: ") and message in line, line
    assert json.loads(result.stdout)["rejected"] == len(UNREADABLE)
