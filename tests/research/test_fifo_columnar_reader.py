"""The columnar fills reader decides every row's fate as the row parser does: the same fills
(values, signs, time order) and the same errors on the same lines, whatever the text. Its fast
path only takes rows it can read without cleaning; these cases aim at its edges (signs, points,
exponents, spaces, digits other than ASCII, values near 64 bits, names that need trimming)."""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from research.fifo import read_fills
from research.fifo_columnar import read_fills_csv

HEADER = "trader,pair,ts,side,qty,price,fee"

AMOUNTS = [
    "1", "2.5", "0.5", "-0.5", "+3", "+.5", "-.5", ".5", "5.", ".", "-0", "-0.0", "0", "0.0",
    "00012.50", "1e2", "1E-3", "1.5e3", "1e-11", "nan", "inf", "-inf", " 1", "1 ", "1_000", "١٢",
    "0.12345678", "0.123456789", "1.1234567890", "1.12345678900", "0.00000000001",
    "9223372036854775807", "999999999.99999999", "99999999.9999999999", "1000000000000000",
    "123456789012.5", "0x10", "1,5", "abc", "",
]  # fmt: skip
TIMES = [
    "1704067200", "1704067200.9", "+1704067200", "-5", "0", "4102444799", "4102444800", "1e9",
    " 1704067200", "2024-01-01T00:00:00Z", "2024-01-01 00:00:00", "yesterday", "NaN", "",
]  # fmt: skip
SIDES = ["buy", "sell", "BUY", " sell", "sideways", ""]
NAMES = ["a", "b", "BTC/USD", "ETH-PERP", " a", "a ", "a b", "", "é", "x" * 300, "a\tb"]


def row(draw: st.DrawFn) -> str:
    fields = [
        draw(st.sampled_from(NAMES)),
        draw(st.sampled_from(NAMES[:4])),
        draw(st.sampled_from(TIMES)),
        draw(st.sampled_from(SIDES)),
        draw(st.sampled_from(AMOUNTS)),
        draw(st.sampled_from(AMOUNTS)),
        draw(st.sampled_from(AMOUNTS)),
    ]
    shape = draw(st.sampled_from(["full", "full", "full", "short", "long", "blank", "commas"]))
    if shape == "short":
        fields = fields[: draw(st.integers(1, 6))]
    elif shape == "long":
        fields = [*fields, "extra"]
    elif shape == "blank":
        return ""
    elif shape == "commas":
        return ",,,,,,"
    return ",".join(fields)


@st.composite
def files(draw: st.DrawFn) -> str:
    good = st.builds(
        lambda t, p, ts, side, q: f"{t},{p},{ts},{side},{q},100.5,0.25",
        st.sampled_from(["a", "b"]),
        st.sampled_from(["BTC", "ETH"]),
        st.integers(1_704_067_200, 1_704_067_300).map(str),
        st.sampled_from(["buy", "sell"]),
        st.sampled_from(["1", "0.5", "2.25"]),
    )
    lines = draw(st.lists(st.one_of(good, st.composite(row)()), max_size=30))
    return HEADER + "\n" + "\n".join(lines) + ("\n" if draw(st.booleans()) else "")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files())
def test_columnar_reader_equals_the_row_reader(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fills.csv"
    path.write_text(text, encoding="utf-8")
    expected_fills, expected_errors = read_fills(io.StringIO(text))
    frame, errors = read_fills_csv(path)
    assert errors == expected_errors
    got = [
        (r["trader"], r["pair"], r["ts"], r["qty"], r["price"], r["fee"]) for r in frame.iter_rows(named=True)
    ]
    assert got == [(f.trader, f.pair, f.ts, f.qty, f.price, f.fee) for f in expected_fills]
