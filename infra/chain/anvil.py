"""Start and stop a real EVM node (Foundry's anvil from npm) on a free local port."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Keys of anvil's default funded accounts #0, #1, #3, #4 (public test keys, never used anywhere real).
DEFAULT_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
)


class AnvilError(RuntimeError):
    pass


@dataclass(frozen=True)
class Anvil:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def rpc(self, method: str, params: list[object] | None = None) -> object:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
        req = urllib.request.Request(self.http_url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            reply = json.loads(resp.read())
        if "error" in reply:
            raise AnvilError(f"{method}: {reply['error']}")
        return reply["result"]


def anvil_binary() -> str:
    local = ROOT / "node_modules" / ".bin" / "anvil"
    if local.exists():
        return str(local)
    found = shutil.which("anvil")
    if found is None:
        raise AnvilError("anvil not found: run `make setup` (it installs the npm package @foundry-rs/anvil)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def run_anvil(
    *, block_time: float | None = None, chain_id: int = 31337, genesis_timestamp: int | None = None
) -> Iterator[Anvil]:
    """A fresh node; with `block_time` None it mines one block per transaction. `genesis_timestamp`
    starts its clock in the past, e.g. to replay simulated history."""
    port = _free_port()
    args = [
        anvil_binary(),
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--chain-id",
        str(chain_id),
        "--silent",
    ]
    if block_time is not None:
        args += ["--block-time", str(block_time)]
    if genesis_timestamp is not None:
        args += ["--timestamp", str(genesis_timestamp)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    node = Anvil(port, proc)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise AnvilError(f"anvil exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            try:
                node.rpc("eth_chainId")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AnvilError("anvil did not answer within 20 s") from None
                time.sleep(0.05)
        yield node
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
