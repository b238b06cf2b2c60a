#!/usr/bin/env bash
# splitwan installer. The full installer (packages, systemd/procd service,
# /etc/splitwan) comes with the operations work; until then this builds in
# place and links the CLI, which is all a checkout needs.
set -euo pipefail
cd "$(dirname "$0")"
prefix=/usr/local
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    *) echo "usage: $0 [--prefix DIR]" >&2; exit 2 ;;
  esac
done
node -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<20||(a===20&&b<18)) process.exit(1)' \
  || { echo "splitwan needs Node.js >= 20.18 (found $(node --version 2>/dev/null || echo none))" >&2; exit 1; }
npm ci --no-audit --no-fund
mkdir -p "$prefix/bin"
ln -sfn "$(pwd)/bin/splitwan" "$prefix/bin/splitwan"
echo "installed: $prefix/bin/splitwan -> $(pwd)/bin/splitwan"
