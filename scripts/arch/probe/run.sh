#!/bin/sh
# Builds scripts/arch/probe/qemu-limits.c static for x86-64, armhf, arm64 and
# s390x (Debian's gcc-*-linux-gnu cross compilers) and runs each: natively,
# then under qemu-ARCH-static. Its output is recorded in
# docs/design/architectures.md ("What qemu-user cannot do").
set -eu
src=$(dirname "$0")/qemu-limits.c
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "== x86-64 (native)"
gcc -static -O1 -o "$out/probe-x86_64" "$src" && "$out/probe-x86_64"
for pair in arm-linux-gnueabihf:arm aarch64-linux-gnu:aarch64 s390x-linux-gnu:s390x; do
  triplet=${pair%%:*}
  q=${pair##*:}
  if ! command -v "$triplet-gcc" >/dev/null; then echo "== $q: SKIPPED: no $triplet-gcc (apt-get install gcc-$triplet)"; continue; fi
  "$triplet-gcc" -static -O1 -o "$out/probe-$q" "$src"
  echo "== $q under $(qemu-$q-static --version | head -1)"
  "qemu-$q-static" "$out/probe-$q"
done
