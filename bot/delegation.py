"""Is our delegate registered for a follower's wallet? Read from the Avantis trading contract's
`delegations(trader)` on chain (what `setDelegate` writes and `delegatedAction` checks), so a
real-money profile is only enabled once the chain says our key may trade for that wallet."""

from __future__ import annotations

import eth_abi

from data.protocol.abi import encode_call
from data.sources.chain.rpc import ChainRpc


async def registered_delegate(rpc: ChainRpc, trading_address: str, wallet: str) -> str:
    """The delegate the wallet registered (the zero address if none)."""
    raw = await rpc.eth_call(trading_address, encode_call("delegations", ["address"], [wallet]))
    (delegate,) = eth_abi.decode(["address"], raw)
    return str(delegate)


async def is_registered(rpc: ChainRpc, trading_address: str, wallet: str, ours: str) -> bool:
    return (await registered_delegate(rpc, trading_address, wallet)).lower() == ours.lower()
