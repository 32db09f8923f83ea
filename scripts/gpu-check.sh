#!/usr/bin/env bash
# The GPU check, for a machine with a CUDA device and CUDA 13 but none of our Debian libraries.
# Uses the binaries packed by `make gpu-bundle` (build/gpu-bundle, carried to the machine), then:
#   1. the device and toolkit,
#   2. the GPU parity tests (cuda_backend_test; compute-sanitizer memcheck on the op and sampling tests when
#      the toolkit has it),
#   3. the engine benchmark (cuda_bench: 0.1B / 1.5B / 7.2B shapes, decode batch 1..1024, prefill),
#      whose table is printed last.
# Logs and JSON go to $OUT (or build/gpu-check). Budget: well under 8 minutes on an H200; its
# timeouts add up to 590 s (the benchmark's rerun on its plainest path included), under one
# 600 s device call.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUNDLE=${BUNDLE:-build/gpu-bundle}
OUT=${OUT:-build/gpu-check}
mkdir -p "$OUT"
CUDA_LIB=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && CUDA_LIB="$CUDA_LIB:$d"
done
export LD_LIBRARY_PATH="$ROOT/$BUNDLE/lib$CUDA_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RWKV_SOURCE_DIR="$ROOT"
status=0

echo "== device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/device.txt"
(nvcc --version 2>/dev/null | tail -1) | tee -a "$OUT/device.txt"
if [ ! -x "$BUNDLE/bin/cuda_backend_test" ]; then
  echo "gpu-check: $BUNDLE is missing; run 'make gpu-bundle' where the project builds and carry it" >&2
  exit 2
fi
if ldd "$BUNDLE/bin/cuda_bench" | grep "not found"; then
  echo "gpu-check: libraries missing (above); the GPU machine needs CUDA 13's cudart and cuBLAS" >&2
  exit 2
fi

echo; echo "== GPU tests"
timeout 150 "$BUNDLE/bin/cuda_backend_test" --gtest_color=no 2>&1 | tee "$OUT/cuda_backend_test.log" | grep -E "^\[ *(OK|FAILED|SKIPPED|PASSED) *\]|Failure|error" 
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
if command -v compute-sanitizer >/dev/null; then
  echo; echo "== compute-sanitizer memcheck (op and sampling tests)"
  timeout 90 compute-sanitizer --tool memcheck --error-exitcode 3 "$BUNDLE/bin/cuda_backend_test" \
    --gtest_filter='CudaOps.*:CudaPool.*:CudaSampling.*' > "$OUT/memcheck.log" 2>&1
  rc=$?
  tail -3 "$OUT/memcheck.log"
  [ $rc -eq 0 ] || status=1
fi

echo; echo "== benchmark"
timeout 220 "$BUNDLE/bin/cuda_bench" --seconds 1 --json "$OUT/cuda_bench.json" 2>&1 | tee "$OUT/cuda_bench.log"
if [ "${PIPESTATUS[0]}" -ne 0 ]; then
  status=1
  # The first device run of this code: rather than no table, one on the plainest path (cuBLAS for
  # every projection, no programmatic dependent launch), the failure above kept in the log.
  echo; echo "== benchmark again without the GEMV and programmatic launch"
  timeout 130 "$BUNDLE/bin/cuda_bench" --seconds 1 --pdl 0 --gemv-rows 0 --json "$OUT/cuda_bench_plain.json" 2>&1 |
    tee -a "$OUT/cuda_bench.log"
fi

echo; echo "== summary"
grep -E "^\[  (PASSED|FAILED)" "$OUT/cuda_backend_test.log"
cat "$OUT/cuda_bench.log"
exit $status
