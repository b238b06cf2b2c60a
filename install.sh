#!/usr/bin/env bash
# splitwan installer for Debian/Ubuntu (apt) and OpenWrt (opkg; needs bash:
# opkg install bash). Installs missing system packages, builds the checkout,
# installs a self-contained copy to a prefix, links the CLI into PATH, writes
# a config from the example only if there is none, and installs the service
# (systemd or procd), enabled only once `splitwan check` passes.
# Running it again changes nothing that is already right. ./install.sh --help
set -euo pipefail
umask 022

SRC="$(cd "$(dirname "$0")" && pwd -P)"
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

usage() {
  cat <<EOF
Usage: sudo ./install.sh [options]

Installs splitwan: missing system packages (Node.js >= 20.11, wireguard-tools,
wireguard-go when the kernel has no WireGuard, nftables, iproute2, conntrack),
a build of this checkout in PREFIX, the command in BINDIR, ETC/config.yaml
(from docs/examples/config.yaml, only when there is none) and the service
(systemd unit or OpenWrt procd script), which is enabled and started only
when 'splitwan check --config ETC/config.yaml' passes.

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
  -h, --help     this text

Root is needed unless every path given is writable and --no-service is used.
EOF
}

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
LINK="$BINDIR/splitwan"
TARGET="$PREFIX/bin/splitwan"
CONFIG="$ETC/config.yaml"

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
  writable "$(dirname "$PREFIX")" && { [ ! -e "$PREFIX" ] || [ -w "$PREFIX" ]; } || denied+=("$PREFIX")
  writable "$BINDIR" || denied+=("$BINDIR")
  [ "$UNINSTALL" = 1 ] || writable "$ETC" || denied+=("$ETC")
  if [ "$DO_SERVICE" = 1 ]; then
    die "installing or removing the service needs root: run sudo ./install.sh (or add --no-service)"
  fi
  if [ "${#denied[@]}" -gt 0 ]; then
    die "needs root to write ${denied[*]}: run sudo ./install.sh, or give --prefix, --bindir and --etc you can write (with --no-service and --no-deps)"
  fi
}

# Refuse to replace or delete a directory that is not one of our installs.
guard_prefix() {
  if [ -e "$PREFIX" ] || [ -L "$PREFIX" ]; then
    [ -d "$PREFIX" ] && [ ! -L "$PREFIX" ] || die "$PREFIX exists and is not a directory; choose another --prefix"
    if [ ! -f "$PREFIX/$MARKER" ] && [ -n "$(ls -A "$PREFIX")" ]; then
      die "$PREFIX is not empty and is not a splitwan install (no $MARKER); choose another --prefix or remove it yourself"
    fi
  fi
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
  if [ -d "$PREFIX" ]; then rm -rf "$PREFIX"; say "removed $PREFIX"; fi
  say "kept $ETC (your config) and /var/lib/splitwan (list caches, if any); remove them yourself if you want"
  exit 0
fi

# ---------------------------------------------------------------- install

check_privileges
guard_prefix

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
  node_ok || missing+=(nodejs)
  [ "${#missing[@]}" -gt 0 ] || { say "system packages: nothing missing"; return 0; }
  need_root_for_packages "${missing[@]}"
  say "apt-get update (to install: ${missing[*]})"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2; exit }' || true; }
  if [[ " ${missing[*]} " == *" nodejs "* ]]; then
    cand="$(candidate nodejs)"
    version_ok "$cand" || { printf 'install.sh: apt offers nodejs %s, too old.\n' "${cand:-(none)}" >&2; node_help; }
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
  if ! command -v npm >/dev/null 2>&1; then
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
node_ok || node_help
command -v npm >/dev/null 2>&1 || node_help
NODE="$(command -v node)"
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
    as_owner npm ci --no-audit --no-fund
  elif [ ! -f "$SRC/dist/daemon/cli.js" ] ||
    [ -n "$(cd "$SRC" && find config dns proxy daemon sys lib lab -name '*.ts' -newer dist/daemon/cli.js 2>/dev/null | head -n 1 || true)" ]; then
    say "npm run build in $SRC"
    as_owner npm run build
  else
    say "the build in $SRC is up to date"
  fi
fi
[ -f "$SRC/dist/daemon/cli.js" ] && [ -d "$SRC/node_modules" ] ||
  die "no build in $SRC (dist/daemon/cli.js, node_modules/): run npm ci there, or drop --no-build"

# ---------------------------------------------------------------- stage

STAGE=""
OLD=""
TMPFILE=""
cleanup() {
  [ -z "$STAGE" ] || rm -rf "$STAGE"
  [ -z "$OLD" ] || rm -rf "$OLD"
  [ -z "$TMPFILE" ] || rm -f "$TMPFILE"
}
trap cleanup EXIT

mkdir -p "$(dirname "$PREFIX")"
STAGE="$(mktemp -d "$PREFIX.new.XXXXXX")"
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
(cd "$STAGE" && "$NODE" -e 'require("koffi")' >/dev/null 2>&1) ||
  warn "koffi has no build for this machine ($(uname -m)): splitwan check works, splitwan run will not"

render() {
  sed -e "s|@NODE@|$NODE|g" -e "s|@PREFIX@|$PREFIX|g" -e "s|@ETC@|$ETC|g" "$1" >"$2"
}
render "$SRC/packaging/systemd/splitwan.service" "$STAGE/packaging/splitwan.service"
render "$SRC/packaging/openwrt/splitwan.init" "$STAGE/packaging/splitwan.init"
chmod 0644 "$STAGE/packaging/splitwan.service"
chmod 0755 "$STAGE/packaging/splitwan.init"
VERSION="$(cd / && "$NODE" "$STAGE/bin/splitwan" version)" || die "the staged install does not run: $STAGE/bin/splitwan version failed"
printf '%s, installed by install.sh; install.sh --uninstall removes this directory\n' "$VERSION" >"$STAGE/$MARKER"

# ---------------------------------------------------------------- install the tree

PREFIX_CHANGED=0
if [ -d "$PREFIX" ] && diff -r -q "$PREFIX" "$STAGE" >/dev/null 2>&1; then
  say "$PREFIX is up to date ($VERSION)"
else
  if [ -d "$PREFIX" ]; then
    OLD="$PREFIX.old.$$"
    mv "$PREFIX" "$OLD"
  fi
  mv "$STAGE" "$PREFIX"
  STAGE=""
  [ -z "$OLD" ] || { rm -rf "$OLD"; OLD=""; }
  PREFIX_CHANGED=1
  say "installed $VERSION in $PREFIX"
fi

mkdir -p "$BINDIR"
if [ -L "$LINK" ] && [ "$(readlink "$LINK")" = "$TARGET" ]; then
  :
elif [ -e "$LINK" ] && [ ! -L "$LINK" ]; then
  die "$LINK exists and is not a link; remove it or use another --bindir"
else
  ln -sfn "$TARGET" "$LINK"
  say "linked $LINK -> $TARGET"
fi

# ---------------------------------------------------------------- config

if [ ! -d "$ETC" ]; then
  mkdir -p -m 0700 "$ETC"
  say "created $ETC (mode 0700)"
elif case "$(stat -c %a "$ETC")" in *00) false ;; *) true ;; esac; then
  warn "$ETC is readable by other users; configs and wg-quick files may hold private keys (chmod 0700 $ETC)"
fi
if [ -e "$CONFIG" ] || [ -L "$CONFIG" ]; then
  say "kept $CONFIG"
else
  TMPFILE="$ETC/.config.yaml.new.$$"
  # The example's schema reference points into the checkout; point it at the install.
  (umask 077 && sed -e '1s|\$schema=\.\./\.\./config/schema\.json|$schema='"$PREFIX"'/config/schema.json|' \
    "$SRC/docs/examples/config.yaml" >"$TMPFILE")
  chmod 0600 "$TMPFILE"
  mv "$TMPFILE" "$CONFIG"
  TMPFILE=""
  say "wrote $CONFIG from docs/examples/config.yaml (mode 0600): edit it for this machine"
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

if [ "$DO_SERVICE" = 0 ]; then
  say "service not installed (--no-service)"
else
  case "$(service_kind)" in
    systemd)
      case "$NODE" in /home/*|/root/*|/run/user/*)
        die "node is at $NODE, under a home directory the service cannot see (ProtectHome=yes): install Node.js system-wide, or use --no-service" ;;
      esac
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
say "done: $LINK ($VERSION)"
