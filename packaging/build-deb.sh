#!/usr/bin/env bash
# make deb: the Debian packages of the agent into build/deb/:
#   aibo-privacyd_VERSION_{amd64,arm64}.deb: the daemon, aiboctl, the vision
#     worker, the systemd unit, the default configuration (a conffile), the
#     system account (sysusers.d) and the camera's spool (tmpfiles.d);
#   aibo-privacyd-models_VERSION_all.deb: the face nets the worker runs
#     (27 MB of architecture-independent data, one package for every
#     robot; the agent depends on exactly its version).
# Every installed path comes from internal/paths (tools/paths prints them),
# the place the daemon's defaults come from too.
#
# Built with dpkg-deb from staged trees rather than debhelper or nfpm:
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

eval "$(go run ./tools/paths)"
if [ ! -s build/models/SHA256SUMS ]; then
  echo "deb: no face nets in build/models: run make setup" >&2
  exit 1
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

# docs installs the copyright and the changelog of a package into its
# staged tree.
docs() { # root package copyright
  local doc=$1/usr/share/doc/$2
  install -D -m 0644 "$3" "$doc/copyright"
  sed -e "s|@VERSION@|$VERSION|; s|@COMMIT@|$commit|; s|@DATE@|$date|" packaging/debian/changelog.in | gzip -9n > "$doc/changelog.gz"
  chmod 0644 "$doc/changelog.gz"
}

# control writes DEBIAN/control and DEBIAN/md5sums of a staged tree.
control() { # root template arch [shlibs]
  local root=$1 size
  size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
  sed -e "s|@VERSION@|$VERSION|g; s|@ARCH@|$3|; s|@SIZE@|$size|; s|@SHLIBS@|${4:-}|; s|@MODELS@|$AIBO_MODELS_PACKAGE|" \
    "$2" > "$root/DEBIAN/control"
  (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
  find "$root/DEBIAN" -type f ! -perm -u+x -exec chmod 0644 {} +
  find "$root" -type d -exec chmod 0755 {} +
}

stage() { # arch
  local arch=$1 bin=build/$1/bin root=build/$1/pkg
  rm -rf "$root"
  install -d "$root/DEBIAN"
  install -D -m 0755 "$bin/aibo-privacyd" "$root$AIBO_DAEMON"
  install -D -m 0755 "$bin/aiboctl" "$root$AIBO_CTL"
  install -D -m 0755 "$bin/aibo-vision" "$root$AIBO_WORKER"
  # What the C++ compiler leaves behind that nothing reads.
  local objcopy=objcopy
  [ "$arch" = arm64 ] && [ "$(dpkg --print-architecture)" != arm64 ] && objcopy=aarch64-linux-gnu-objcopy
  "$objcopy" --remove-section=.comment "$root$AIBO_WORKER"
  install -D -m 0644 configs/aibo-privacyd.service "$root$AIBO_UNIT"
  install -D -m 0644 packaging/config.yaml "$root$AIBO_CONFIG_FILE"
  install -D -m 0644 packaging/debian/tmpfiles.conf "$root$AIBO_TMPFILES"
  install -D -m 0644 packaging/debian/sysusers.conf "$root$AIBO_SYSUSERS"
  install -D -m 0644 packaging/debian/lintian-overrides "$root$AIBO_LINTIAN_OVERRIDES"
  docs "$root" "$AIBO_PACKAGE" packaging/debian/copyright
  [ "$root/usr/share/doc/$AIBO_PACKAGE" = "$root$AIBO_DOC_DIR" ]
  gzip -9n < README.md > "$root$AIBO_DOC_DIR/README.md.gz"
  install -d "$root/usr/share/man/man8" "$root/usr/share/man/man1"
  gzip -9n < packaging/man/aibo-privacyd.8 > "$root/usr/share/man/man8/aibo-privacyd.8.gz"
  gzip -9n < packaging/man/aiboctl.1 > "$root/usr/share/man/man1/aiboctl.1.gz"
  chmod 0644 "$root$AIBO_DOC_DIR"/*.gz "$root"/usr/share/man/man*/*.gz

  install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
  echo "$AIBO_CONFIG_FILE" > "$root/DEBIAN/conffiles"
  control "$root" packaging/debian/control.in "$arch" "$(depends "$arch" "$bin/aibo-vision")"
}

# stage_models lays out the face nets' package: the nets and their
# SHA256SUMS as make setup converted them, and the license they come with.
stage_models() {
  local root=build/all/models-pkg
  rm -rf "$root"
  install -d "$root/DEBIAN" "$root$AIBO_FACE_MODELS_DIR"
  local sum f
  while read -r sum f; do
    install -m 0644 "build/models/$f" "$root$AIBO_FACE_MODELS_DIR/$f"
  done < build/models/SHA256SUMS
  install -m 0644 build/models/SHA256SUMS "$root$AIBO_FACE_MODELS_DIR/SHA256SUMS"
  local copyright=build/all/copyright
  { cat packaging/debian/copyright-models; sed -e 's/^$/./; s/^/ /' build/face-api/LICENSE; cat packaging/debian/copyright-models-proposals; } > "$copyright"
  docs "$root" "$AIBO_MODELS_PACKAGE" "$copyright"
  control "$root" packaging/debian/control-models.in all
}

# check runs lintian on a package: clean, or each override explained
# (packaging/debian/lintian-overrides).
check() { # deb
  local status=0 report
  echo "deb: $1"
  report=$(lintian --display-info --pedantic --fail-on error,warning,info,pedantic "$1" 2>&1) || status=$?
  grep -v 'running with root privileges' <<<"$report" || true
  if [ "$status" -ne 0 ]; then
    echo "deb: lintian is not clean" >&2
    exit 1
  fi
}

mkdir -p build/all
stage_models
models="$out/${AIBO_MODELS_PACKAGE}_${VERSION}_all.deb"
dpkg-deb --root-owner-group -Zxz --build build/all/models-pkg "$models" >/dev/null
check "$models"
for arch in $ARCHES; do
  if [ -z "${REUSE_BINARIES:-}" ] || [ ! -x "build/$arch/bin/aibo-vision" ]; then
    build_binaries "$arch"
  fi
  stage "$arch"
  deb="$out/${AIBO_PACKAGE}_${VERSION}_${arch}.deb"
  dpkg-deb --root-owner-group -Zxz --build "build/$arch/pkg" "$deb" >/dev/null
  check "$deb"
done
