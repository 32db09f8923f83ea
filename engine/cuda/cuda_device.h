// The CUDA seam: device discovery. Compiled only when RWKV_WITH_CUDA is on.
#ifndef RWKV_ENGINE_CUDA_CUDA_DEVICE_H_
#define RWKV_ENGINE_CUDA_CUDA_DEVICE_H_

namespace rwkv {

// Number of CUDA devices visible to this process; 0 when there is none or no driver.
int CudaDeviceCount();
// The device's compute capability major number (9 for Hopper); 0 when it cannot be read.
int CudaComputeCapabilityMajor(int device);

}  // namespace rwkv

#endif  // RWKV_ENGINE_CUDA_CUDA_DEVICE_H_
