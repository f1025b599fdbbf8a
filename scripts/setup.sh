#!/usr/bin/env bash
# Installs what the build and the tests need on Debian 12, and nothing that is
# already there. Safe to run again.
set -euo pipefail
# systemd: systemd-analyze checks the unit (packaging/unit_test.go). tzdata:
# the zones the tests and make test-zones name (the daemon carries its own).
packages=(libopencv-dev opencv-data mosquitto mosquitto-clients systemd tzdata)
command -v npm >/dev/null || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian package enables a system-wide broker on port 1883; tests and
# `make run` start their own on other ports and do not need it.
go mod download

# Face nets (issue 10): the tfjs weights of @vladmandic/face-api (MIT), from
# the npm registry at a pinned version and checksum, converted to ONNX by
# our own generator (tools/onnxgen) into build/models. Nothing is downloaded
# at run time, and nothing here is committed (build/ is git-ignored). A
# second run only checks the tarball and the timestamps.
faceapi_version=1.7.15
faceapi_sha256=0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031
nets=(tiny_face_detector_model face_landmark_68_model face_expression_model face_recognition_model)
src=build/face-api
out=build/models
tgz=$src/vladmandic-face-api-$faceapi_version.tgz
sum() { sha256sum "$1" | cut -d' ' -f1; }
mkdir -p "$src" "$out"
if [ ! -f "$tgz" ] || [ "$(sum "$tgz")" != "$faceapi_sha256" ]; then
  echo "setup: fetching @vladmandic/face-api@$faceapi_version with npm pack"
  rm -f "$tgz"
  (cd "$src" && npm pack --silent "@vladmandic/face-api@$faceapi_version" >/dev/null)
  got=$(sum "$tgz")
  if [ "$got" != "$faceapi_sha256" ]; then
    rm -f "$tgz"
    echo "setup: $tgz has sha256 $got, want $faceapi_sha256" >&2
    exit 1
  fi
fi
members=(package/LICENSE)
for n in "${nets[@]}"; do members+=("package/model/$n-weights_manifest.json" "package/model/$n.bin"); done
stale=0
for m in "${members[@]}"; do
  f=$src/${m#package/}
  [ -f "$f" ] && [ "$f" -nt "$tgz" ] || stale=1
done
if ((stale)); then
  tar -xzf "$tgz" -C "$src" --strip-components=1 --touch "${members[@]}"
fi
# Convert again when a model is missing or older than the weights (face-api's
# or our proposal net's, internal/headnet) or the
# generator's code.
newest=$(ls -t "$src"/model/* tools/onnxgen/*.go internal/tfjs/*.go internal/headnet/*.go internal/headnet/model.bin | head -1)
if [ ! -f "$out/SHA256SUMS" ] || [ "$newest" -nt "$out/SHA256SUMS" ]; then
  echo "setup: converting the face nets into $out"
  go run ./tools/onnxgen -in "$src/model" -out "$out"
fi
