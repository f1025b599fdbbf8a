#!/usr/bin/env bash
# Prepares what cross-building the vision worker for the robot (arm64)
# needs, on Debian 12 amd64: the cross compilers, qemu-user-static (the
# arm64 test runs under it), and build/arm64/sysroot, a tree holding
# Debian 12's own arm64 OpenCV (the modules gocv links, headers included)
# and every library they load, unpacked from Debian's .debs with dpkg-deb -x.
#
# Why not `apt-get install libopencv-dev:arm64` (multiarch): on Debian 12 it
# cannot be installed beside the amd64 libopencv-dev that `make test`
# needs. Several of OpenCV's dependencies are not "Multi-Arch: same"
# (libgdal32, libvtk9.1, libopenexr-dev, libhdf4-0-alt, libopenmpi3, ...),
# so apt removes libopencv-dev:amd64 and 29 other packages to make room
# (checked with `apt-get install -s libopencv-dev:arm64`). Unpacking the
# same arm64 packages into a sysroot installs nothing and conflicts with
# nothing. Safe to run again: what is there is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/arm64
sysroot=$out/sysroot
debs=$out/debs
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

need=()
for p in gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user-static; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "arm64-sysroot: adding the arm64 architecture to dpkg (package lists only; nothing arm64 is installed)"
  $sudo dpkg --add-architecture arm64
  $sudo apt-get update -qq
elif ! apt-cache show libopencv-core406:arm64 >/dev/null 2>&1; then
  $sudo apt-get update -qq
fi
if ((${#need[@]})); then
  echo "arm64-sysroot: installing ${need[*]}"
  [ -n "$(apt-cache policy "${need[0]}" | grep Candidate: | grep -v none)" ] || $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The OpenCV modules gocv's core package links, and flann (features2d's).
modules="core imgproc imgcodecs objdetect features2d flann video dnn calib3d photo highgui videoio"
runtime=() dev=()
for m in $modules; do
  runtime+=("libopencv-$m"406:arm64)
  dev+=("libopencv-$m-dev:arm64")
done
# opencv2/opencv.hpp, which gocv includes, also wants these headers.
dev+=(libopencv-ml-dev:arm64 libopencv-stitching-dev:arm64)
stamp="${runtime[*]} ${dev[*]}"
if [ -f "$sysroot/.complete" ] && [ "$(cat "$sysroot/.complete")" = "$stamp" ]; then
  echo "arm64-sysroot: $sysroot is ready"
  exit 0
fi
mkdir -p "$debs"
# Every arm64 package the runtime libraries depend on, recursively (the
# dev packages alone: their headers and .so links, not their own
# dependencies). Virtual packages and architecture-independent data are
# left out: the loader needs libraries only.
mapfile -t closure < <(
  apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "${runtime[@]}" libc6:arm64 libstdc++6:arm64 |
    grep -E '^[a-z0-9.+-]+:arm64$' | sort -u
)
echo "arm64-sysroot: ${#closure[@]} arm64 packages + ${#dev[@]} headers packages into $debs (about 170 MiB once)"
(
  cd "$debs"
  missing=()
  for p in "${closure[@]}" "${dev[@]}"; do
    name=${p%:arm64}
    compgen -G "${name}_*_arm64.deb" >/dev/null || missing+=("$p")
  done
  if ((${#missing[@]})); then
    apt-get download -qq "${missing[@]}"
  fi
)
rm -rf "$sysroot"
mkdir -p "$sysroot"
for f in "$debs"/*.deb; do
  dpkg-deb -x "$f" "$sysroot"
done
# Debian's postinst makes these through update-alternatives; unpacking
# does not run it.
lib=$sysroot/usr/lib/aarch64-linux-gnu
for alt in blas/libblas.so.3 lapack/liblapack.so.3; do
  if [ -e "$lib/$alt" ] && [ ! -e "$lib/$(basename "$alt")" ]; then
    ln -s "$alt" "$lib/$(basename "$alt")"
  fi
done
echo "$stamp" > "$sysroot/.complete"
echo "arm64-sysroot: $sysroot is ready"
