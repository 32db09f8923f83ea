#include "engine/cuda/launch.cuh"
#include "engine/cuda/ops.h"
#include "engine/cuda/type_cast.cuh"

namespace rwkv::cuda {
namespace {

template <typename T>
__global__ void EmbedKernel(const T* emb, const int32_t* tokens, int C, float* x) {
  AfterPrevious();
  const int r = blockIdx.x;
  const T* src = emb + static_cast<int64_t>(tokens[r]) * C;
  float* dst = x + static_cast<int64_t>(r) * C;
  for (int i = threadIdx.x; i < C; i += blockDim.x) dst[i] = ToFloat(src[i]);
}

}  // namespace

void Embed(const void* emb, WeightType t, const int32_t* tokens, int rows, int C, float* x, cudaStream_t s) {
  if (rows == 0) return;
  DispatchType(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    LaunchAfterPrevious(EmbedKernel<T>, rows, 256, s, static_cast<const T*>(emb), tokens, C, x);
  });
}

}  // namespace rwkv::cuda
