#include "engine/cuda/act.cuh"
#include "engine/cuda/launch.cuh"
#include "engine/cuda/ops.h"
#include "engine/cuda/type_cast.cuh"

namespace rwkv::cuda {
namespace {

template <typename T>
__global__ void ActivateKernel(const float* in, int64_t n, Act act, T* out) {
  AfterPrevious();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = FromFloat<T>(ApplyAct(in[i], act));
  }
}

int Blocks(int64_t n) { return static_cast<int>(std::min<int64_t>((n + 255) / 256, 65535)); }

}  // namespace

void Activate(const float* in, int64_t n, Act act, void* out, WeightType wt, cudaStream_t s) {
  if (n == 0) return;
  DispatchType(wt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    LaunchAfterPrevious(ActivateKernel<T>, Blocks(n), 256, s, in, n, act, static_cast<T*>(out));
  });
}

void ActivateInPlace(float* x, int64_t n, Act act, cudaStream_t s) {
  if (n == 0) return;
  LaunchAfterPrevious(ActivateKernel<float>, Blocks(n), 256, s, static_cast<const float*>(x), n, act, x);
}

}  // namespace rwkv::cuda
