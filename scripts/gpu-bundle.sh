#!/usr/bin/env bash
# Packs the GPU-side binaries built here (cuda_backend_test, cuda_bench, rwkv-cli) with the
# shared libraries they need that a bare CUDA machine lacks (Abseil, OpenMP, ...) into
# $BUILD/gpu-bundle, for scripts/gpu-check.sh on a machine with a GPU. CUDA's own libraries
# (cudart, cuBLAS) are not packed: the GPU machine's CUDA 13 provides them.
set -euo pipefail
BUILD=${1:-build}
OUT=$BUILD/gpu-bundle
rm -rf "$OUT" && mkdir -p "$OUT/bin" "$OUT/lib"
for b in tests/cuda_backend_test bench/cuda_bench tools/rwkv-cli; do
  cp "$BUILD/$b" "$OUT/bin/"
done
for b in "$OUT"/bin/*; do
  ldd "$b" | awk '/=> \// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;  # every Linux has them
    libcuda.so*|libcudart.so*|libcublas.so*|libcublasLt.so*|libnvidia*) ;;                       # the GPU machine's CUDA
    *) cp -L "$lib" "$OUT/lib/" ;;
  esac
done
# libstdc++ too, in case the GPU machine's is older than Debian 12's.
cp -L "$(ldd "$OUT/bin/cuda_bench" | awk '/libstdc\+\+/ {print $3}')" "$OUT/lib/"
du -sh "$OUT"
