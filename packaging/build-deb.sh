#!/usr/bin/env bash
# make deb: the Debian package of the agent (aibo-privacyd) for amd64 and
# arm64, into build/deb/. One package holds the daemon, aiboctl, the vision
# worker, the systemd unit, the default configuration (a conffile), the
# system account (sysusers.d) and the camera's spool (tmpfiles.d).
#
# Built with dpkg-deb from a staged tree rather than debhelper or nfpm:
# dpkg-deb is already on every Debian machine, conffiles and maintainer
# scripts are dpkg's own, and lintian checks the result. The cost is the
# few lines debhelper would write (maintainer scripts, md5sums, shlibs).
#
#   ARCHES="amd64 arm64" (default both)   VERSION=... (default from git)
#   REUSE_BINARIES=1: package build/ARCH/bin as it is (no go build)
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHES=${ARCHES:-"amd64 arm64"}
out=build/deb
mkdir -p build "$out"
# build/ holds a Debian sysroot and staged trees: keep it out of ./...
[ -f build/go.mod ] || printf 'module build.invalid/ignored\n' > build/go.mod

if ! command -v lintian >/dev/null; then
  echo "deb: installing lintian"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends lintian >/dev/null
fi

commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ -z "${VERSION:-}" ]; then
  # Later commits sort higher, so an install of a newer build upgrades.
  VERSION="0.$(git log -1 --format=%cd --date=format:%Y%m%d.%H%M%S 2>/dev/null || date -u +%Y%m%d.%H%M%S)+g$commit"
  git diff --quiet HEAD 2>/dev/null || VERSION="$VERSION~dirty"
fi
date=$(git log -1 --format=%cd --date=rfc 2>/dev/null || date -R)

gobuild() { # arch out pkg [extra env...]
  local arch=$1 dst=$2 pkg=$3
  shift 3
  env GOOS=linux GOARCH="$arch" "$@" go build -trimpath -buildvcs=auto -buildmode=pie \
    -ldflags "-s -w" -o "$dst" "$pkg"
}

hardening=(CGO_CFLAGS="-O2 -fstack-protector-strong -D_FORTIFY_SOURCE=2"
  CGO_CXXFLAGS="-O2 -fstack-protector-strong -D_FORTIFY_SOURCE=2")

build_binaries() { # arch
  local arch=$1 bin=build/$1/bin
  mkdir -p "$bin"
  echo "deb: $arch: daemon and aiboctl (pure Go)"
  gobuild "$arch" "$bin/aibo-privacyd" ./cmd/aibo-privacyd CGO_ENABLED=0
  gobuild "$arch" "$bin/aiboctl" ./cmd/aiboctl CGO_ENABLED=0
  echo "deb: $arch: vision worker (links Debian's OpenCV)"
  if [ "$arch" = "$(dpkg --print-architecture)" ]; then
    gobuild "$arch" "$bin/aibo-vision" ./cmd/aibo-vision CGO_ENABLED=1 "${hardening[@]}" \
      CGO_LDFLAGS="-Wl,-z,relro -Wl,-z,now"
  elif [ "$arch" = arm64 ]; then
    packaging/arm64-sysroot.sh
    local sys=$PWD/build/arm64/sysroot
    mkdir -p build/arm64/pkgconfig
    # The OpenCV modules gocv links, from the sysroot (Debian's opencv4.pc
    # names every contrib module too).
    cat > build/arm64/pkgconfig/opencv4.pc <<PC
prefix=$sys/usr
Name: OpenCV
Description: Debian 12 arm64 OpenCV, the modules gocv links
Version: 4.6.0
Cflags: -I\${prefix}/include/opencv4 -I\${prefix}/include/aarch64-linux-gnu/opencv4
Libs: -L\${prefix}/lib/aarch64-linux-gnu -lopencv_core -lopencv_imgproc -lopencv_imgcodecs -lopencv_objdetect -lopencv_features2d -lopencv_flann -lopencv_video -lopencv_dnn -lopencv_calib3d -lopencv_photo -lopencv_highgui -lopencv_videoio
PC
    local lib=$sys/usr/lib/aarch64-linux-gnu
    gobuild arm64 "$bin/aibo-vision" ./cmd/aibo-vision CGO_ENABLED=1 "${hardening[@]}" \
      CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ PKG_CONFIG_LIBDIR="$PWD/build/arm64/pkgconfig" \
      CGO_LDFLAGS="-Wl,-z,relro -Wl,-z,now -Wl,-rpath-link,$lib:$sys/lib/aarch64-linux-gnu:$sys/usr/lib:$lib/blas:$lib/lapack"
  else
    echo "deb: no recipe for a $arch vision worker" >&2
    exit 1
  fi
}

# shlibs_db prints "library version dependency" lines for arch: dpkg's own
# database for the build machine's architecture, the control files of the
# sysroot's packages for arm64.
shlibs_db() {
  if [ "$1" = "$(dpkg --print-architecture)" ]; then
    # Multi-Arch: same packages first; never a cross toolchain's.
    cat /var/lib/dpkg/info/*:"$1".shlibs
    find /var/lib/dpkg/info -name '*.shlibs' ! -name '*:*' ! -name '*-cross.shlibs' -exec cat {} +
  else
    local cache=build/$1/shlibs
    if [ ! -s "$cache" ]; then
      for d in build/"$1"/debs/*.deb; do dpkg-deb -I "$d" shlibs 2>/dev/null || true; done > "$cache"
    fi
    cat "$cache"
  fi
}

# depends: the packages providing the libraries the worker needs (what
# dpkg-shlibdeps computes from shlibs files).
depends() { # arch binary
  local db needed so name ver dep deps=()
  db=$(shlibs_db "$1" | grep -v '^udeb:' || true)
  needed=$(readelf -d "$2" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  for so in $needed; do
    name=${so%%.so*}
    ver=${so#*.so.}
    dep=$(awk -v n="$name" -v v="$ver" '$1 == n && $2 == v { $1 = ""; $2 = ""; sub(/^ +/, ""); print; exit }' <<<"$db")
    if [ -z "$dep" ]; then
      echo "deb: no package provides $so for $1" >&2
      exit 1
    fi
    deps+=("$dep")
  done
  printf '%s\n' "${deps[@]}" | sort -u | paste -sd, | sed 's/,/, /g'
}

stage() { # arch
  local arch=$1 bin=build/$1/bin root=build/$1/pkg
  rm -rf "$root"
  install -d "$root/DEBIAN"
  install -D -m 0755 "$bin/aibo-privacyd" "$root/usr/sbin/aibo-privacyd"
  install -D -m 0755 "$bin/aiboctl" "$root/usr/bin/aiboctl"
  install -D -m 0755 "$bin/aibo-vision" "$root/usr/libexec/aibo-privacy/aibo-vision"
  # What the C++ compiler leaves behind that nothing reads.
  local objcopy=objcopy
  [ "$arch" = arm64 ] && [ "$(dpkg --print-architecture)" != arm64 ] && objcopy=aarch64-linux-gnu-objcopy
  "$objcopy" --remove-section=.comment "$root/usr/libexec/aibo-privacy/aibo-vision"
  # Debian 12 ships units under /lib (usrmerge moves are not done in bookworm).
  install -D -m 0644 configs/aibo-privacyd.service "$root/lib/systemd/system/aibo-privacyd.service"
  install -D -m 0644 packaging/config.yaml "$root/etc/aibo-privacy/config.yaml"
  install -D -m 0644 packaging/debian/tmpfiles.conf "$root/usr/lib/tmpfiles.d/aibo-privacy.conf"
  install -D -m 0644 packaging/debian/sysusers.conf "$root/usr/lib/sysusers.d/aibo-privacy.conf"
  install -D -m 0644 packaging/debian/lintian-overrides "$root/usr/share/lintian/overrides/aibo-privacyd"
  local doc=$root/usr/share/doc/aibo-privacyd
  install -D -m 0644 packaging/debian/copyright "$doc/copyright"
  sed -e "s|@VERSION@|$VERSION|; s|@COMMIT@|$commit|; s|@DATE@|$date|" packaging/debian/changelog.in | gzip -9n > "$doc/changelog.gz"
  gzip -9n < README.md > "$doc/README.md.gz"
  install -d "$root/usr/share/man/man8" "$root/usr/share/man/man1"
  gzip -9n < packaging/man/aibo-privacyd.8 > "$root/usr/share/man/man8/aibo-privacyd.8.gz"
  gzip -9n < packaging/man/aiboctl.1 > "$root/usr/share/man/man1/aiboctl.1.gz"
  chmod 0644 "$doc"/*.gz "$root"/usr/share/man/man*/*.gz

  # MODELS (filled at merge): the learned face models are generated at
  # build time into build/models/ on another branch. Whatever is there is
  # installed into /usr/share/aibo-privacy/models/, where the worker
  # reads them; nothing is shipped while the folder is empty.
  if [ -d build/models ] && [ -n "$(ls -A build/models)" ]; then
    install -d "$root/usr/share/aibo-privacy/models"
    cp -r build/models/. "$root/usr/share/aibo-privacy/models/"
    find "$root/usr/share/aibo-privacy" -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +
  fi

  install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
  echo /etc/aibo-privacy/config.yaml > "$root/DEBIAN/conffiles"
  local shlibs size
  shlibs=$(depends "$arch" "$bin/aibo-vision")
  size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
  sed -e "s|@VERSION@|$VERSION|; s|@ARCH@|$arch|; s|@SIZE@|$size|; s|@SHLIBS@|$shlibs|" \
    packaging/debian/control.in > "$root/DEBIAN/control"
  (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
  chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"
  find "$root" -type d -exec chmod 0755 {} +
}

for arch in $ARCHES; do
  if [ -z "${REUSE_BINARIES:-}" ] || [ ! -x "build/$arch/bin/aibo-vision" ]; then
    build_binaries "$arch"
  fi
  stage "$arch"
  deb="$out/aibo-privacyd_${VERSION}_${arch}.deb"
  dpkg-deb --root-owner-group -Zxz --build "build/$arch/pkg" "$deb" >/dev/null
  echo "deb: $deb"
  # Clean or each override explained (packaging/debian/lintian-overrides).
  status=0
  report=$(lintian --display-info --pedantic --fail-on error,warning,info,pedantic "$deb" 2>&1) || status=$?
  grep -v 'running with root privileges' <<<"$report" || true
  if [ "$status" -ne 0 ]; then
    echo "deb: lintian is not clean" >&2
    exit 1
  fi
done
