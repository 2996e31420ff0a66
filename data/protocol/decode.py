"""Decode raw logs by topic0 into named fields, with no ABI library in the hot path.

Every field of these events is a static 32-byte word, so decoding is slicing: `_WORD[type]`
turns one word into a Python value. Unknown topic0s are reported, never guessed at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from data.protocol.abi import EVENTS, TRADE_FIELDS, EventAbi


class DecodeError(ValueError):
    pass


def _uint(word: bytes) -> int:
    return int.from_bytes(word, "big")


def _int(word: bytes) -> int:
    return int.from_bytes(word, "big", signed=True)


def _bool(word: bytes) -> bool:
    return word[-1] != 0


def _address(word: bytes) -> str:
    return "0x" + word[12:].hex()


_WORD: dict[str, Callable[[bytes], Any]] = {"address": _address, "bool": _bool}


def _word_decoder(type_: str) -> Callable[[bytes], Any]:
    if type_ in _WORD:
        return _WORD[type_]
    if type_.startswith("uint"):
        return _uint
    if type_.startswith("int"):
        return _int
    raise DecodeError(f"unsupported static type {type_}")


@dataclass(frozen=True)
class DecodedLog:
    name: str
    version: str
    emitter: str
    fields: dict[str, Any]


class _Plan:
    """Precomputed word layout of one event."""

    def __init__(self, abi: EventAbi):
        self.abi = abi
        self.indexed = [(p.name, _word_decoder(p.type)) for p in abi.params if p.indexed]
        self.data: list[tuple[str, Callable[[bytes], Any] | None]] = []
        for p in abi.params:
            if p.indexed:
                continue
            if p.type == "Trade":
                self.data.append((p.name, None))
            else:
                self.data.append((p.name, _word_decoder(p.type)))
        self.words = sum(len(TRADE_FIELDS) if dec is None else 1 for _, dec in self.data)
        self.trade_decoders = [(name, _word_decoder(t)) for name, t in TRADE_FIELDS]

    def decode(self, topics: list[bytes], data: bytes) -> dict[str, Any]:
        if len(topics) != 1 + len(self.indexed):
            raise DecodeError(f"{self.abi.name}: expected {1 + len(self.indexed)} topics, got {len(topics)}")
        if len(data) != 32 * self.words:
            raise DecodeError(
                f"{self.abi.name} v{self.abi.version}: expected {32 * self.words} data bytes, got {len(data)}"
            )
        out: dict[str, Any] = {name: dec(topics[i + 1]) for i, (name, dec) in enumerate(self.indexed)}
        pos = 0
        for name, dec in self.data:
            if dec is None:
                out[name] = {
                    f: d(data[pos + 32 * k : pos + 32 * (k + 1)])
                    for k, (f, d) in enumerate(self.trade_decoders)
                }
                pos += 32 * len(TRADE_FIELDS)
            else:
                out[name] = dec(data[pos : pos + 32])
                pos += 32
        return out


class Registry:
    """Decoders by topic0. Add an `EventAbi` to support a new contract version."""

    def __init__(self, events: Iterable[EventAbi] = EVENTS):
        self._plans: dict[bytes, _Plan] = {}
        for abi in events:
            key = bytes.fromhex(abi.topic0[2:])
            if key in self._plans:
                raise ValueError(f"two ABIs share topic0 {abi.topic0}: {abi.canonical}")
            self._plans[key] = _Plan(abi)

    def topics(self) -> list[str]:
        return ["0x" + k.hex() for k in self._plans]

    def decode(self, topics: list[bytes], data: bytes) -> DecodedLog:
        if not topics:
            raise DecodeError("anonymous log (no topic0)")
        plan = self._plans.get(topics[0])
        if plan is None:
            raise DecodeError(f"unknown topic0 0x{topics[0].hex()}")
        return DecodedLog(plan.abi.name, plan.abi.version, plan.abi.emitter, plan.decode(topics, data))
