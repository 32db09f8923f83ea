#include "engine/cuda/cuda_state_pool.h"
#include "engine/status.h"

namespace rwkv::cuda {

absl::StatusOr<std::unique_ptr<CudaStatePool>> CudaStatePool::Create(int capacity, int64_t slot_floats,
                                                                     cudaStream_t s) {
  std::unique_ptr<CudaStatePool> p(new CudaStatePool(capacity, slot_floats, s));
  RWKV_RETURN_IF_ERROR(p->data_.Allocate(static_cast<size_t>(capacity + 1) * slot_floats * 4, "state pool"));
  RWKV_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(p->data_.get(), 0, p->data_.bytes(), s));
  RWKV_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s));
  return p;
}

absl::Status CudaStatePool::DoReset(int slot) {
  RWKV_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(device_data() + slot * slot_floats(), 0, slot_bytes(), stream_));
  return absl::OkStatus();
}

absl::Status CudaStatePool::DoCopy(int src, int dst) {
  RWKV_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(device_data() + dst * slot_floats(), device_data() + src * slot_floats(),
                                            slot_bytes(), cudaMemcpyDeviceToDevice, stream_));
  return absl::OkStatus();
}

absl::Status CudaStatePool::DoRead(int slot, float* out) const {
  RWKV_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(out, device_data() + slot * slot_floats(), slot_bytes(), cudaMemcpyDeviceToHost, stream_));
  RWKV_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::Status CudaStatePool::DoWrite(int slot, const float* in) {
  RWKV_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(device_data() + slot * slot_floats(), in, slot_bytes(), cudaMemcpyHostToDevice, stream_));
  RWKV_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

}  // namespace rwkv::cuda
