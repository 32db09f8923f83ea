#include <atomic>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_format.h"
#include "engine/cuda/cuda_util.h"

namespace rwkv::cuda {

const char* WeightTypeName(WeightType t) {
  switch (t) {
    case WeightType::kF32:
      return "f32";
    case WeightType::kF16:
      return "f16";
    case WeightType::kBF16:
      return "bf16";
  }
  return "?";
}

size_t WeightTypeBytes(WeightType t) { return t == WeightType::kF32 ? 4 : 2; }

namespace {
std::atomic<int64_t> launches{0};
std::atomic<bool> programmatic{false};
}  // namespace

void SetProgrammaticLaunch(bool on) { programmatic.store(on, std::memory_order_relaxed); }
bool ProgrammaticLaunch() { return programmatic.load(std::memory_order_relaxed); }

int64_t KernelLaunches() { return launches.load(std::memory_order_relaxed); }
void CountLaunch() { launches.fetch_add(1, std::memory_order_relaxed); }

bool IsStickyError(cudaError_t e) {
  switch (e) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorECCUncorrectable:
    case cudaErrorUnknown:
      return true;
    default:
      return false;
  }
}

absl::Status CudaError(cudaError_t e, const char* what) {
  const std::string message =
      absl::StrCat("CUDA error in ", what, ": ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
  if (!IsStickyError(e)) return absl::InternalError(message);
  absl::Status s = absl::UnavailableError(absl::StrCat(message, "; the device is unusable until the server restarts"));
  s.SetPayload(kStickyPayload, absl::Cord(cudaGetErrorName(e)));
  return s;
}

bool IsStickyStatus(const absl::Status& s) { return s.GetPayload(kStickyPayload).has_value(); }

absl::Status DeviceBuffer::Allocate(size_t bytes, const char* what) {
  Reset();
  if (bytes == 0) return absl::OkStatus();
  const cudaError_t e = cudaMalloc(&ptr_, bytes);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    ptr_ = nullptr;
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    return absl::ResourceExhaustedError(absl::StrFormat(
        "device out of memory allocating %s: %d bytes wanted, %d free of %d", what, bytes, free_b, total_b));
  }
  if (e != cudaSuccess) {
    ptr_ = nullptr;
    return CudaError(e, what);
  }
  bytes_ = bytes;
  return absl::OkStatus();
}

void DeviceBuffer::Reset() {
  if (ptr_ != nullptr) cudaFree(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
}

}  // namespace rwkv::cuda
