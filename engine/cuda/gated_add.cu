#include "engine/cuda/ops.h"

namespace rwkv::cuda {
namespace {

__global__ void AddGatedKernel(float* x, const float* r, const float* y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    x[i] += y[i] / (1.0f + expf(-r[i]));
  }
}

}  // namespace

void AddGated(float* x, const float* r, const float* y, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  AddGatedKernel<<<static_cast<int>(std::min<int64_t>((n + 255) / 256, 65535)), 256, 0, s>>>(x, r, y, n);
}

}  // namespace rwkv::cuda
