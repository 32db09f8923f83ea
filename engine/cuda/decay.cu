#include "engine/cuda/ops.h"

namespace rwkv::cuda {
namespace {

__global__ void Rwkv6DecayKernel(float* d, const float* time_decay, int64_t n, int C) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    d[i] = expf(-expf(time_decay[i % C] + d[i]));
  }
}

}  // namespace

void Rwkv6Decay(float* d, const float* time_decay, int rows, int C, cudaStream_t s) {
  const int64_t n = int64_t{rows} * C;
  if (n == 0) return;
  Rwkv6DecayKernel<<<static_cast<int>(std::min<int64_t>((n + 255) / 256, 65535)), 256, 0, s>>>(d, time_decay, n, C);
}

}  // namespace rwkv::cuda
