"""`vanta pnl fifo` as a user runs it: each malformed row named by line, one line each, never a
traceback or a hang; the good rows still counted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

VANTA = str(Path(sys.executable).parent / "vanta")
HEADER = b"trader,pair,ts,side,qty,price,fee\n"
GOOD = [b"a,BTC,1704067200,buy,2,100,0.5", b"a,BTC,1704067300,sell,1,110,0.25"]

# (row bytes, the message its line gets)
BAD_ROWS = [
    (b"a,BTC,NaN,buy,1,100,0", "ts 'NaN' is not epoch seconds between 1970 and 2100"),
    (b"a,BTC,inf,buy,1,100,0", "ts 'inf' is not epoch seconds between 1970 and 2100"),
    (b"a,BTC,1e999999999,buy,1,100,0", "ts '1e999999999' is not epoch seconds between 1970 and 2100"),
    (b"a,BTC,-5,buy,1,100,0", "ts '-5' is not epoch seconds between 1970 and 2100"),
    (b"a,BTC,2200-01-01T00:00:00Z,buy,1,100,0", "ts '2200-01-01T00:00:00Z' is not between 1970 and 2100"),
    (b"a,BTC,yesterday,buy,1,100,0", "ts is neither epoch seconds nor ISO-8601: 'yesterday'"),
    (b"x" * 131_072 + b",BTC,1704067200,buy,1,100,0", "trader is longer than 256 characters"),
    (b"a,BTC,1704067200,buy," + b"1" * 131_072 + b",100,0", "qty is longer than 256 characters"),
    (b"a,BTC,1704067200,buy,1e999999999,100,0", "qty '1e999999999' is too large (at most 1e15)"),
    (b"a,BTC,1704067200,buy,NaN,100,0", "qty is not finite: 'NaN'"),
    (b"a,BTC,1704067200,buy,0,100,0", "qty must be positive"),
    (b"a,BTC,1704067200,buy,1.123456789,100,0", "qty 1.123456789 has more than 8 decimals"),
    (b"a,BTC,1704067200,buy,1,-100,0", "price must be positive"),
    (b"a,BTC,1704067200,buy,1,abc,0", "price is not a number: 'abc'"),
    (b"a,BTC,1704067200,buy,1,100,-1", "fee must not be negative"),
    # A sign under the point: the fast path once read these as positive.
    (b"a,BTC,1704067200,buy,1,100,-0.5", "fee must not be negative"),
    (b"a,BTC,1704067200,sell,-0.5,100,0", "qty must be positive"),
    (b",,,,,,", "missing trader, pair, ts, side, qty, price, fee"),
    (b"a,BTC,1704067200,sideways,1,100,0", "side must be buy or sell, not 'sideways'"),
    (b"a,,1704067200,buy,1,100,0", "missing pair"),
    (b"a,BTC,1704067200", "missing side, qty, price, fee"),
    (b"a\x01b,BTC,1704067200,buy,1,100,0", "trader contains control characters: 'a\\x01b'"),
    (b"a,BTC\xff\xfe,1704067200,buy,1,100,0", "not UTF-8 (byte 0xff at column 6)"),
]


def run(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VANTA, "pnl", "fifo", str(path)], capture_output=True, text=True, timeout=120)


def test_every_bad_row_is_named_by_line_and_the_rest_counted(tmp_path: Path) -> None:
    rows = [GOOD[0], *(r for r, _ in BAD_ROWS), GOOD[1]]
    path = tmp_path / "fills.csv"
    path.write_bytes(HEADER + b"\n".join(rows) + b"\n")
    done = run(path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == f"{len(BAD_ROWS)} malformed row(s) skipped, 2 counted"
    for i, ((_row, message), line) in enumerate(zip(BAD_ROWS, lines, strict=False)):
        assert line == f"{path}:{i + 3}: rejected: {message}", line
    assert done.stdout.splitlines() == [
        "trader,pair,realized_pnl,fees_paid,closed_qty,open_qty,open_avg_price",
        "a,BTC,10,0.75,1,1,100",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "header must contain trader,pair,ts,side,qty,price,fee"),
        (b"trader,pair,ts\na,b,1\n", "header must contain trader,pair,ts,side,qty,price,fee"),
        (b"\xff\xfetrader,pair\n", "the header line is not UTF-8"),
    ],
    ids=["empty", "header", "header-bytes"],
)
def test_files_that_are_not_fills_get_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "fills.csv"
    path.write_bytes(content)
    done = run(path)
    assert done.returncode == 2
    assert done.stderr.strip() == f"vanta: {path}: {message}"


def test_a_byte_order_mark_and_quoted_fields_are_fine(tmp_path: Path) -> None:
    plain = tmp_path / "plain.csv"
    plain.write_bytes(HEADER + b"\n".join(GOOD) + b"\n")
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    quoted = tmp_path / "quoted.csv"  # quotes take the row reader; line numbers stay exact
    quoted.write_bytes(
        HEADER + b'"a",BTC,1704067200,buy,2,100,0.5\n"multi\nline",BTC,x,buy,1,1,0\n' + GOOD[1] + b"\n"
    )
    expected = run(plain)
    assert expected.returncode == 0 and expected.stderr == ""
    assert run(bom).stdout == expected.stdout
    done = run(quoted)
    assert done.stdout == expected.stdout
    assert (
        done.stderr.splitlines()[0]
        == f"{quoted}:4: rejected: trader contains control characters: 'multi\\nline'"
    )
