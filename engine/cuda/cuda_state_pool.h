// The state pool in device memory: one allocation of capacity x slot_floats float32. Kernels read
// and write slots in place through slot indices; host transfers are only for Read/Write (session
// tiers, export) and are synchronous on the backend's stream.
#ifndef RWKV_ENGINE_CUDA_CUDA_STATE_POOL_H_
#define RWKV_ENGINE_CUDA_CUDA_STATE_POOL_H_

#include <cuda_runtime.h>

#include <memory>

#include "absl/status/statusor.h"
#include "engine/cuda/cuda_util.h"
#include "engine/state_pool.h"

namespace rwkv::cuda {

class CudaStatePool final : public StatePool {
 public:
  // RESOURCE_EXHAUSTED when the device cannot hold `capacity` slots and the scratch slot.
  static absl::StatusOr<std::unique_ptr<CudaStatePool>> Create(int capacity, int64_t slot_floats, cudaStream_t s);
  float* device_data() const { return data_.as<float>(); }
  // One slot past the capacity that is never acquired: the padding rows of a decode step that
  // runs a larger graph than its batch write their garbage there.
  int scratch_slot() const { return capacity(); }

 private:
  CudaStatePool(int capacity, int64_t slot_floats, cudaStream_t s) : StatePool(capacity, slot_floats), stream_(s) {}
  absl::Status DoReset(int slot) override;
  absl::Status DoCopy(int src, int dst) override;
  absl::Status DoRead(int slot, float* out) const override;
  absl::Status DoWrite(int slot, const float* in) override;

  cudaStream_t stream_;
  DeviceBuffer data_;
};

}  // namespace rwkv::cuda

#endif  // RWKV_ENGINE_CUDA_CUDA_STATE_POOL_H_
