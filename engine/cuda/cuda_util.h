// Host-side helpers of the CUDA backend: CUDA errors as absl::Status, device buffers, the weight
// element type. Include only from .cu files and CUDA-only sources.
#ifndef RWKV_ENGINE_CUDA_CUDA_UTIL_H_
#define RWKV_ENGINE_CUDA_CUDA_UTIL_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace rwkv::cuda {

// Element type of weight matrices and of the activations fed to GEMMs. Accumulation and the
// recurrent state are float32 whatever this is.
enum class WeightType { kF32, kF16, kBF16 };
const char* WeightTypeName(WeightType t);
size_t WeightTypeBytes(WeightType t);

// A Status naming `what` and CUDA's description: INTERNAL, or for an error that poisons the
// context (illegal address, launch failure...; "sticky": every later call fails too) UNAVAILABLE,
// the request's to retry on another replica, with the kStickyPayload payload (the error's name).
absl::Status CudaError(cudaError_t e, const char* what);
bool IsStickyError(cudaError_t e);
inline constexpr char kStickyPayload[] = "type.rwkv-serve/cuda-sticky-error";
// Whether `s` carries a sticky device error (its payload, not its text).
bool IsStickyStatus(const absl::Status& s);

#define RWKV_CUDA_RETURN_IF_ERROR(expr)                                                       \
  do {                                                                                        \
    const cudaError_t rwkv_cuda_err_ = (expr);                                                \
    if (rwkv_cuda_err_ != cudaSuccess) return ::rwkv::cuda::CudaError(rwkv_cuda_err_, #expr); \
  } while (0)

// Kernel launches (and cuBLAS calls, one each) issued by this process so far: the benchmark's
// launches per step. Captured launches count once, at capture; graph replays add nothing.
int64_t KernelLaunches();
void CountLaunch();

// Whether the decode path's kernels launch programmatically dependent on the previous kernel
// (engine/cuda/launch.cuh): on by default, off for devices before compute capability 9.0 (set by
// CudaBackend::Create for its device) or by option. Process-wide.
void SetProgrammaticLaunch(bool on);
bool ProgrammaticLaunch();

// Runs a kernel launcher (engine/cuda/ops.h) and checks its launch at once: INTERNAL naming the
// op, so a bad configuration or a poisoned context is reported at the kernel that met it.
#define RWKV_CUDA_LAUNCH(op, ...)                                                                         \
  do {                                                                                                    \
    ::rwkv::cuda::CountLaunch();                                                                          \
    op(__VA_ARGS__);                                                                                      \
    const cudaError_t rwkv_launch_err_ = cudaGetLastError();                                              \
    if (rwkv_launch_err_ != cudaSuccess) return ::rwkv::cuda::CudaError(rwkv_launch_err_, "kernel " #op); \
  } while (0)

// One cudaMalloc'd region; freed on destruction. Move-only.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { Reset(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      Reset();
      ptr_ = std::exchange(o.ptr_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  // RESOURCE_EXHAUSTED naming the size when the device is out of memory.
  absl::Status Allocate(size_t bytes, const char* what);
  void Reset();
  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace rwkv::cuda

#endif  // RWKV_ENGINE_CUDA_CUDA_UTIL_H_
