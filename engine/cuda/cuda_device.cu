#include <cuda_runtime.h>

#include "engine/cuda/cuda_device.h"

namespace rwkv {

int CudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // Clear the sticky "no device" error so later probes start clean.
    return 0;
  }
  return n;
}

}  // namespace rwkv
