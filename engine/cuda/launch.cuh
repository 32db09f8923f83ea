// Kernel launches with programmatic dependent launch (Hopper and later): a kernel may be scheduled
// while the one before it on the stream finishes, hiding the launch and ramp-up between the short
// kernels of a decode step (a batch-1 step is ~200 of them). A kernel launched this way must call
// AfterPrevious() before it touches global memory: it returns once the previous kernel has
// finished and its writes are visible, then lets the next kernel be scheduled.
#ifndef RWKV_ENGINE_CUDA_LAUNCH_CUH_
#define RWKV_ENGINE_CUDA_LAUNCH_CUH_

#include <cuda_runtime.h>

#include <utility>

#include "engine/cuda/cuda_util.h"

namespace rwkv::cuda {

__device__ __forceinline__ void AfterPrevious() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Launches `kernel` (whose first act is AfterPrevious()) on `s`, programmatically dependent on
// the stream's previous kernel where ProgrammaticLaunch() is on; errors surface through
// cudaGetLastError like a <<<>>> launch.
template <typename... Params, typename... Args>
void LaunchAfterPrevious(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t s, Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = 0;
  config.stream = s;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attribute;
  config.numAttrs = ProgrammaticLaunch() ? 1 : 0;
  const cudaError_t e = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
  (void)e;  // Also left for cudaGetLastError, which the caller checks.
}

}  // namespace rwkv::cuda

#endif  // RWKV_ENGINE_CUDA_LAUNCH_CUH_
