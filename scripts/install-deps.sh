#!/usr/bin/env bash
# Installs the Debian 12 packages that building and testing rwkv-serve need. Packages already
# present are left alone, so a second run installs nothing and needs no network.
# CUDA is optional and not installed here: the build uses it when nvcc is on PATH.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config
  libopenblas-dev nlohmann-json3-dev libabsl-dev
  libgrpc++-dev libgrpc-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
  prometheus-cpp-dev zlib1g-dev libre2-dev libutf8proc-dev
  libgtest-dev libgmock-dev
  python3 python3-numpy
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
