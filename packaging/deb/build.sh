#!/usr/bin/env bash
# Builds pkg/splitwan_VERSION_ARCH.deb from this checkout's build (npm run deb
# runs `npm run build` first). Usage: packaging/deb/build.sh [--arch amd64|arm64]
# (default: this machine's). Needs dpkg-deb; runs as any user.
#
# The tree is what install.sh installs (install.sh --destdir, so the two
# cannot drift apart), with splitwan's own Node.js for ARCH
# (packaging/node/runtime.txt) because Debian 12 and Ubuntu 24.04 cannot
# satisfy "nodejs (>= 20.11)", laid out the Debian way:
#   /usr/lib/splitwan/          bin dist node_modules config/schema.json node/bin/node
#   /usr/bin/splitwan           -> ../lib/splitwan/bin/splitwan (#! the package's node)
#   /lib/systemd/system/splitwan.service
#   /etc/splitwan/config.yaml   conffile, 0600 in a 0700 directory
#   /usr/share/doc/splitwan/    the docs and examples, copyright, changelog
# The maintainer scripts (postinst, prerm, postrm here) are explained in
# packaging/deb/README.md, and so are the lintian overrides.
set -euo pipefail
umask 022

HERE="$(cd "$(dirname "$0")" && pwd -P)"
REPO="$(cd "$HERE/../.." && pwd -P)"
OUT="$REPO/pkg"
MAINTAINER="${DEB_MAINTAINER:-splitwan maintainers <maintainers@users.noreply.h-seed-8b24b0a8.example>}"

die() { printf 'deb: %s\n' "$*" >&2; exit 1; }

ARCH=""
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) [ $# -ge 2 ] || die "--arch needs amd64 or arm64"; ARCH="$2"; shift 2 ;;
    --arch=*) ARCH="${1#*=}"; shift ;;
    -h|--help) sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option \"$1\"" ;;
  esac
done
command -v dpkg-deb >/dev/null 2>&1 || die "needs dpkg-deb (apt-get install dpkg)"
[ -n "$ARCH" ] || ARCH="$(dpkg --print-architecture)"
case "$ARCH" in
  amd64) NODE_ARCH=x64; KOFFI=linux_x64 ;;
  arm64) NODE_ARCH=arm64; KOFFI=linux_arm64 ;;
  *) die "architecture \"$ARCH\": the package is built for amd64 and arm64 (splitwan's own Node.js exists for those)" ;;
esac
[ -f "$REPO/dist/daemon/cli.js" ] && [ -d "$REPO/node_modules" ] || die "no build: run npm ci (and npm run build) first"

VERSION="$(node -p 'require(process.argv[1]).version' "$REPO/package.json")"
[[ "$VERSION" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || die "package.json's version \"$VERSION\" is not a Debian version"
NODE_VERSION="$(awk -v n="node-linux-$NODE_ARCH" '$1 == n { print $2; exit }' "$REPO/packaging/node/runtime.txt")"
# Reproducible: every file dated at the last commit (or now, outside git).
EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)}"

mkdir -p "$OUT"
WORK="$(mktemp -d "$OUT/.build.XXXXXX")"
trap 'rm -rf -- "$WORK"' EXIT
ROOT="$WORK/root"
LIB="$ROOT/usr/lib/splitwan"

# The install tree, with splitwan's own Node.js for ARCH (tarballs kept in pkg/.cache).
SPLITWAN_RUNTIME_CACHE="${SPLITWAN_RUNTIME_CACHE:-$OUT/.cache}" \
  bash "$REPO/install.sh" --destdir "$ROOT" --prefix /usr/lib/splitwan --etc /etc/splitwan \
  --node-arch "$NODE_ARCH" --no-build >"$WORK/install.log" 2>&1 ||
  { cat "$WORK/install.log" >&2; die "install.sh --destdir failed"; }

# The unit: where Debian keeps packages' units, its header saying who installed it.
mkdir -p "$ROOT/lib/systemd/system"
sed -e 's|^# Installed by splitwan.s install.sh, which renders .*|# Installed by the splitwan Debian package (rendered from packaging/systemd/splitwan.service).|' \
  -e '/^# rewrites this file on the next install and removes it on --uninstall\.$/d' \
  -e 's|file:///usr/lib/splitwan/docs/|file:///usr/share/doc/splitwan/|' \
  "$LIB/packaging/splitwan.service" >"$ROOT/lib/systemd/system/splitwan.service"
grep -q '^ExecStart=/usr/lib/splitwan/node/bin/node ' "$ROOT/lib/systemd/system/splitwan.service" ||
  die "the rendered unit does not start the package's node"

# Not part of the package: install.sh's marker and rendered service files (the
# unit is above; OpenWrt's procd script is no use here), npm's links.
rm -rf "$LIB/packaging" "$LIB/.splitwan-install" "$LIB/node_modules/.bin"
# koffi's builds for other systems and architectures.
for d in "$LIB"/node_modules/koffi/build/koffi/*/; do
  [ "$(basename "$d")" = "$KOFFI" ] || rm -rf "$d"
done
[ -d "$LIB/node_modules/koffi/build/koffi/$KOFFI" ] || die "koffi has no $KOFFI build"
# npm packages as published carry their docs, tests, sources, tool configs and
# helper scripts; the package keeps what runs (and every licence file).
NM="$LIB/node_modules"
rm -rf "$NM/koffi/src" "$NM/koffi/vendor" "$NM/koffi/lib" "$NM/koffi/doc"
for pkg in "$NM"/[!@]*/ "$NM"/@*/*/; do
  [ -d "$pkg" ] || continue
  for d in test tests __tests__ docs doc example examples benchmark benchmarks .github .husky; do
    rm -rf "${pkg}$d"
  done
done
find "$NM" -type f \( \( -iname '*.md' ! -iname 'licen[cs]e*' \) -o -name '*.html' -o -name '.eslintrc*' \
  -o -name '.npmignore' -o -name '.gitignore' -o -name '.gitattributes' -o -name '.editorconfig' \
  -o -name '.travis.yml' -o -name '.prettierrc*' -o -name '.taprc' -o -name '.nycrc' -o -name 'inc-version.sh' \) -delete

# Documentation where Debian keeps it.
DOC="$ROOT/usr/share/doc/splitwan"
mkdir -p "$ROOT/usr/share/doc"
mv "$LIB/docs" "$DOC"
cp "$HERE/copyright" "$DOC/copyright"
{
  printf 'splitwan (%s) unstable; urgency=medium\n\n' "$VERSION"
  printf '  * Built from %s.\n\n' "$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo 'a source tree')"
  printf ' -- %s  %s\n' "$MAINTAINER" "$(LC_ALL=C date -u -R -d "@$EPOCH")"
} | gzip -9n >"$DOC/changelog.gz"
mkdir -p "$ROOT/usr/share/man/man1" "$ROOT/usr/share/lintian/overrides" "$ROOT/usr/bin"
gzip -9n <"$HERE/splitwan.1" >"$ROOT/usr/share/man/man1/splitwan.1.gz"
cp "$HERE/lintian-overrides" "$ROOT/usr/share/lintian/overrides/splitwan"
ln -s ../lib/splitwan/bin/splitwan "$ROOT/usr/bin/splitwan"

# What was left out must not be missed: the package's own node runs the command and loads koffi.
if [ "$NODE_ARCH" = "$(bash "$REPO/packaging/node/runtime.sh" arch 2>/dev/null || true)" ]; then
  "$LIB/node/bin/node" "$LIB/bin/splitwan" version >/dev/null || die "the package tree does not run: splitwan version failed"
  (cd / && "$LIB/node/bin/node" -e 'require(process.argv[1])' "$NM/koffi") || die "the package tree does not load koffi"
  "$LIB/node/bin/node" "$LIB/bin/splitwan" check --config "$DOC/examples/laptop.yaml" >/dev/null 2>&1 ||
    die "the package tree does not pass splitwan check on docs/examples/laptop.yaml"
fi

# Modes: everything root's and readable, the config private.
chmod -R u+rwX,go+rX,go-w "$ROOT"
# npm keeps the modes packages were published with (some ship plain .js
# files as 0755): in node_modules only scripts (#!) and ELF objects stay executable.
find "$NM" -type f -perm /111 -print0 | while IFS= read -r -d '' f; do
  magic="$(head -c 4 "$f" | od -An -tx1 | tr -d ' \n')"
  case "$magic" in 2321*|7f454c46) ;; *) chmod a-x "$f" ;; esac
done
chmod 0700 "$ROOT/etc/splitwan"
chmod 0600 "$ROOT/etc/splitwan/config.yaml"

mkdir -p "$ROOT/DEBIAN"
for f in postinst prerm postrm; do install -m 0755 "$HERE/$f" "$ROOT/DEBIAN/$f"; done
printf '/etc/splitwan/config.yaml\n' >"$ROOT/DEBIAN/conffiles"
SIZE="$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)"
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@MAINTAINER@|$MAINTAINER|" \
  -e "s|@SIZE@|$SIZE|" -e "s|@NODE_VERSION@|$NODE_VERSION|" "$HERE/control.in" >"$ROOT/DEBIAN/control"
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum | sed 's|  \./|  |') >"$ROOT/DEBIAN/md5sums"
chmod 0644 "$ROOT/DEBIAN/control" "$ROOT/DEBIAN/conffiles" "$ROOT/DEBIAN/md5sums"
find "$ROOT" -newermt "@$EPOCH" -print0 | xargs -0r touch --no-dereference --date="@$EPOCH"

DEB="$OUT/splitwan_${VERSION}_${ARCH}.deb"
# xz level 1: 6 s and 38 MB; the default level 6 takes two minutes here for 33 MB (DEB_XZ_LEVEL=6).
SOURCE_DATE_EPOCH="$EPOCH" dpkg-deb --root-owner-group -Zxz "-z${DEB_XZ_LEVEL:-1}" --build "$ROOT" "$DEB.tmp" >/dev/null
mv "$DEB.tmp" "$DEB"
printf 'deb: %s (%s KB, installed %s KB; Node.js %s inside)\n' "$DEB" "$(($(stat -c %s "$DEB") / 1024))" "$SIZE" "$NODE_VERSION"
