#!/usr/bin/env bash
# Rebuild the local-chain contracts' ABI and bytecode with the npm solc compiler (offline).
# Output is committed: infra/chain/build/{MockUSDC,AvantisMock}.{abi,bin}.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$here/build"
tmp="$(mktemp -d)"
"$root/node_modules/.bin/solcjs" --optimize --abi --bin --base-path "$here/contracts" -o "$tmp" "$here/contracts/AvantisMock.sol"
mkdir -p "$out"
for name in MockUSDC AvantisMock; do
  cp "$tmp"/*_"$name".abi "$out/$name.abi"
  cp "$tmp"/*_"$name".bin "$out/$name.bin"
done
rm -rf "$tmp"
echo "built: $(ls "$out")"
