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

int CudaComputeCapabilityMajor(int device) {
  int major = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return major;
}

}  // namespace rwkv
