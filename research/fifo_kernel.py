"""The FIFO matcher compiled with numba, for bulk loads and the benchmark.

It computes exactly what `FifoLedger.apply_arrays` computes, on int64 columns. A matched
quantity times a price difference needs up to 126 bits, so realized PnL is accumulated as a
two's-complement 128-bit integer in two uint64 words; fees are summed in two 32-bit halves. The
caller checks the inputs fit (`fits_int64`) and otherwise uses the pure-Python ledger: both paths
give the same integers, which a test asserts.
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64

_MASK32 = uint64(0xFFFFFFFF)
_SH32 = uint64(32)
_ONE = uint64(1)
_ZERO = uint64(0)
LIMIT = 2**62


@njit(cache=True)
def _add_product(hi: np.uint64, lo: np.uint64, a: np.int64, b: np.int64) -> tuple[np.uint64, np.uint64]:
    """(hi, lo) + a * b, all in 128-bit two's complement; |a|, |b| < 2**63."""
    neg = (a < 0) != (b < 0)
    ua = uint64(-a) if a < 0 else uint64(a)
    ub = uint64(-b) if b < 0 else uint64(b)
    a_lo = ua & _MASK32
    a_hi = ua >> _SH32
    b_lo = ub & _MASK32
    b_hi = ub >> _SH32
    p0 = a_lo * b_lo
    p1 = a_lo * b_hi
    p2 = a_hi * b_lo
    p3 = a_hi * b_hi
    mid = (p0 >> _SH32) + (p1 & _MASK32) + (p2 & _MASK32)
    plo = (p0 & _MASK32) | ((mid & _MASK32) << _SH32)
    phi = p3 + (p1 >> _SH32) + (p2 >> _SH32) + (mid >> _SH32)
    if neg:  # two's complement negation of (phi, plo)
        plo = ~plo + _ONE
        phi = ~phi + (_ONE if plo == _ZERO else _ZERO)
    new_lo = lo + plo
    carry = _ONE if new_lo < lo else _ZERO
    return hi + phi + carry, new_lo


@njit(cache=True)
def match_sorted(book: np.ndarray, qty: np.ndarray, price: np.ndarray, fee: np.ndarray, n_books: int):
    """Fills sorted by book (stable: time order kept within a book). Returns per-book realized
    (hi, lo words), fee halves, closed qty, and the open lots left (scratch arrays + head/tail)."""
    n = len(qty)
    r_hi = np.zeros(n_books, dtype=np.uint64)
    r_lo = np.zeros(n_books, dtype=np.uint64)
    fee_hi = np.zeros(n_books, dtype=np.int64)
    fee_lo = np.zeros(n_books, dtype=np.int64)
    closed = np.zeros(n_books, dtype=np.int64)
    head = np.zeros(n_books, dtype=np.int64)
    tail = np.zeros(n_books, dtype=np.int64)
    lot_q = np.empty(n, dtype=np.int64)
    lot_p = np.empty(n, dtype=np.int64)
    i = 0
    while i < n:
        b = book[i]
        h = i  # this book's lots live in lot_q[h:t]; never more lots than fills
        t = i
        hi = uint64(0)
        lo = uint64(0)
        c = 0
        while i < n and book[i] == b:
            q = qty[i]
            p = price[i]
            f = fee[i]
            fee_hi[b] += f >> 32
            fee_lo[b] += f & 0xFFFFFFFF
            while q != 0 and h < t and (lot_q[h] > 0) != (q > 0):
                lq = lot_q[h]
                if lq > 0:
                    take = lq if lq < -q else -q
                    hi, lo = _add_product(hi, lo, take, p - lot_p[h])
                    if take == lq:
                        h += 1
                    else:
                        lot_q[h] = lq - take
                    q += take
                else:
                    take = -lq if -lq < q else q
                    hi, lo = _add_product(hi, lo, take, lot_p[h] - p)
                    if take == -lq:
                        h += 1
                    else:
                        lot_q[h] = lq + take
                    q -= take
                c += take
            if q != 0:
                lot_q[t] = q
                lot_p[t] = p
                t += 1
            i += 1
        r_hi[b] = hi
        r_lo[b] = lo
        closed[b] = c
        head[b] = h
        tail[b] = t
    return r_hi, r_lo, fee_hi, fee_lo, closed, head, tail, lot_q, lot_p


def to_int128(hi: int, lo: int) -> int:
    value = (int(hi) << 64) | int(lo)
    return value - (1 << 128) if value >= 1 << 127 else value


def fits_int64(qty: np.ndarray, price: np.ndarray, fee: np.ndarray) -> bool:
    """Whether the kernel can take these columns without overflow (else use the Python ledger)."""
    if len(qty) == 0:
        return True
    return bool(
        int(np.abs(qty).max()) < LIMIT
        and int(price.max()) < LIMIT
        and int(price.min()) > 0
        and int(fee.max()) < LIMIT
        and int(fee.min()) >= 0
        # closed quantity per book is bounded by the total quantity traded
        and int(np.abs(qty).astype(np.float64).sum()) < LIMIT
    )
