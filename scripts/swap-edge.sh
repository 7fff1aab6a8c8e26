#!/usr/bin/env bash
# Rebuild the Rust core and swap it in atomically (rename), so servers already running keep the
# old mapping instead of crashing on a rewritten file. For development while benchmarks run.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
maturin build --release -q -o "$out" >/dev/null
unzip -q -o "$out"/livechat-*.whl 'livechat/_edge*.so' -d "$out/x"
so=$(cd "$out/x" && ls livechat/_edge*.so)
cp "$out/x/$so" "python/$so.new"
mv "python/$so.new" "python/$so"
rm -rf "$out"
echo "swapped python/$so"
