"""Deploy and drive Vanta's Avantis mock on a local node (web3 7)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD

BUILD = Path(__file__).parent / "build"


def artifact(name: str) -> tuple[list[dict[str, Any]], str]:
    abi = json.loads((BUILD / f"{name}.abi").read_text())
    return abi, "0x" + (BUILD / f"{name}.bin").read_text().strip()


@dataclass
class LocalAvantis:
    w3: Web3
    usdc: Contract
    trading: Contract
    keeper: str

    def transact(self, fn: Any, key: str, value: int = 0) -> dict[str, Any]:
        """Sign with `key`, send, wait for the receipt. Gas is estimated first, so a call that would
        revert raises `ContractLogicError` with the contract's reason and is never sent."""
        acct = Account.from_key(key)
        params = {"from": acct.address, "value": value}
        # Nested calls (delegatedAction -> delegatecall -> transferFrom) need headroom over the estimate.
        gas = fn.estimate_gas(params) * 13 // 10
        tx = fn.build_transaction(
            {**params, "gas": gas, "nonce": self.w3.eth.get_transaction_count(acct.address)}
        )
        signed = acct.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
        if receipt["status"] != 1:
            raise RuntimeError(f"transaction reverted: {tx_hash.hex()}")
        return dict(receipt)

    def rpc(self, method: str, params: list[Any]) -> Any:
        reply = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result")

    def impersonate(self, address: str) -> str:
        """Let anvil send as `address` (no key needed) and give it gas money; returns it checksummed."""
        addr = self.w3.to_checksum_address(address)
        self.rpc("anvil_impersonateAccount", [addr])
        self.rpc("anvil_setBalance", [addr, hex(10**20)])
        return addr

    def funded_trader(self, label: str, usdc: int) -> str:
        """A keyless trader whose address is derived from `label`, impersonated, holding `usdc`
        micro-USDC and an unlimited allowance to the trading contract; returns its address."""
        addr = self.impersonate("0x" + hashlib.sha256(label.encode()).hexdigest()[:40])
        self.send_as(self.usdc.functions.mint(addr, usdc), self.keeper)
        self.send_as(self.usdc.functions.approve(self.trading.address, 2**255), addr)
        return addr

    def send_as(self, fn: Any, sender: str, value: int = 0) -> dict[str, Any]:
        """Send from an impersonated or unlocked account and wait for the receipt. A fixed gas
        limit skips anvil's gas estimation (a binary search of EVM runs, most of a send's time);
        a revert still shows as a failed receipt."""
        # Fee caps given, so web3 does not ask the node for fee history before every send.
        tx_hash = fn.transact(
            {
                "from": sender,
                "gas": 1_500_000,
                "value": value,
                "maxFeePerGas": 10**11,
                "maxPriorityFeePerGas": 0,
            }
        )
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
        if receipt["status"] != 1:
            raise RuntimeError(f"transaction reverted: {tx_hash.hex()}")
        return dict(receipt)

    def order_id(self, receipt: dict[str, Any]) -> int:
        """The order id `openTrade`/`closeTradeMarket` announced in this receipt (other logs, such
        as USDC transfers, are skipped)."""
        logs = self.trading.events.MarketOrderInitiated().process_receipt(receipt, errors=DISCARD)
        return int(logs[0]["args"]["orderId"])


def deploy(rpc_url: str, deployer_key: str) -> LocalAvantis:
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    acct = Account.from_key(deployer_key)

    def _deploy(name: str, *args: Any) -> Contract:
        abi, bytecode = artifact(name)
        factory = w3.eth.contract(abi=abi, bytecode=bytecode)
        tx = factory.constructor(*args).build_transaction(
            {"from": acct.address, "nonce": w3.eth.get_transaction_count(acct.address), "gas": 6_000_000}
        )
        receipt = w3.eth.wait_for_transaction_receipt(
            w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction), timeout=30
        )
        return w3.eth.contract(address=receipt["contractAddress"], abi=abi)

    usdc = _deploy("MockUSDC")
    trading = _deploy("AvantisMock", usdc.address)
    return LocalAvantis(w3, usdc, trading, acct.address)
