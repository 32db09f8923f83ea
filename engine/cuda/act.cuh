// The activations of ops.h's Act on one float32 value, for the kernels that apply them.
#ifndef RWKV_ENGINE_CUDA_ACT_CUH_
#define RWKV_ENGINE_CUDA_ACT_CUH_

#include "engine/cuda/ops.h"

namespace rwkv::cuda {

__device__ __forceinline__ float ApplyAct(float x, Act act) {
  switch (act) {
    case Act::kTanh:
      return tanhf(x);
    case Act::kSigmoid:
      return 1.0f / (1.0f + __expf(-x));
    case Act::kSilu:
      return x / (1.0f + __expf(-x));
    case Act::kReluSquare: {
      const float r = fmaxf(x, 0.0f);
      return r * r;
    }
    default:
      return x;
  }
}

}  // namespace rwkv::cuda

#endif  // RWKV_ENGINE_CUDA_ACT_CUH_
