#!/usr/bin/env bash
# make install-test [ARCH=amd64|arm64]: the packages built from this tree,
# installed with apt into a fresh Debian 12 root, the story played by the
# installed daemon, then purged (test/install says what is checked).
#
# As root. Installs debootstrap (and, for a foreign ARCH, qemu-user-static,
# with binfmt_misc mounted and Debian's qemu-aarch64 entry registered),
# builds the packages for ARCH (packaging/build-deb.sh), makes the base
# root once with debootstrap from Debian's mirror (MIRROR, default
# http://deb.debian.org/debian) and keeps it as build/install-test/
# bookworm-ARCH.tar, with apt's downloads in build/install-test/apt-ARCH.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${ARCH:-$(dpkg --print-architecture)}
mirror=${MIRROR:-http://deb.debian.org/debian}
work=build/install-test
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test: run as root (debootstrap, mounts, pivot_root into the test root)" >&2
  exit 1
fi
foreign=0
[ "$arch" = "$(dpkg --print-architecture)" ] || foreign=1

need=(debootstrap)
((foreign)) && need+=(qemu-user-static)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-test: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}" >/dev/null
fi
if ((foreign)); then
  if [ "$arch" != arm64 ]; then
    echo "install-test: no recipe for $arch (amd64 natively, arm64 under qemu-user)" >&2
    exit 2
  fi
  binfmt=/proc/sys/fs/binfmt_misc
  mountpoint -q "$binfmt" || mount -t binfmt_misc binfmt_misc "$binfmt"
  if [ ! -e "$binfmt/qemu-aarch64" ]; then
    # Debian's entry has the F flag: the interpreter is opened now, so it
    # works inside the test root too.
    grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf > "$binfmt/register"
  fi
fi

start=$(date +%s)
ARCHES=$arch packaging/build-deb.sh
built=$(date +%s)

mkdir -p "$work"
base=$work/bookworm-$arch.tar
if [ ! -s "$base" ]; then
  echo "install-test: debootstrap --variant=minbase --arch=$arch bookworm from $mirror"
  tmp=$work/debootstrap-$arch
  rm -rf "$tmp"
  debootstrap --variant=minbase --arch="$arch" bookworm "$tmp" "$mirror" >"$work/debootstrap-$arch.log" 2>&1 || {
    tail -20 "$work/debootstrap-$arch.log" >&2
    exit 1
  }
  tar -C "$tmp" -cf "$base.part" .
  mv "$base.part" "$base"
  rm -rf "$tmp"
fi
rooted=$(date +%s)

status=0
go test -tags installtest -count=1 -timeout 60m -v ./test/install/ \
  -args -arch "$arch" -base "$PWD/$base" -debs "$PWD/build/deb" -apt-cache "$PWD/$work/apt-$arch" 2>&1 |
  tee "$work/last-$arch.log" || status=$?
echo "install-test: $arch: packages $((built - start)) s, base root $((rooted - built)) s, test $(($(date +%s) - rooted)) s, $(($(date +%s) - start)) s in all"
exit "$status"
