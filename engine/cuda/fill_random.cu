#include "engine/cuda/ops.h"
#include "engine/cuda/type_cast.cuh"

namespace rwkv::cuda {
namespace {

__device__ __forceinline__ uint64_t Mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

template <typename T>
__global__ void FillRandomKernel(T* out, int64_t n, float lo, float hi, uint64_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float u = static_cast<float>(Mix(seed ^ (static_cast<uint64_t>(i) * 0x2545f4914f6cdd1dULL)) >> 40) * 0x1p-24f;
    out[i] = FromFloat<T>(lo + (hi - lo) * u);
  }
}

}  // namespace

void FillRandom(void* out, WeightType wt, int64_t n, float lo, float hi, uint64_t seed, cudaStream_t s) {
  if (n == 0) return;
  const int blocks = static_cast<int>(std::min<int64_t>((n + 255) / 256, 65535));
  DispatchType(wt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    FillRandomKernel<T><<<blocks, 256, 0, s>>>(static_cast<T*>(out), n, lo, hi, seed);
  });
}

}  // namespace rwkv::cuda
