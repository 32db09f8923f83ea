#include <cublas_v2.h>

#include "absl/strings/str_cat.h"
#include "engine/cuda/cublas_gemm.h"

namespace rwkv::cuda {
namespace {

absl::Status CublasError(cublasStatus_t s, const char* what) {
  return absl::InternalError(
      absl::StrCat("cuBLAS error in ", what, ": ", cublasGetStatusName(s), " (", cublasGetStatusString(s), ")"));
}

cudaDataType_t DataType(WeightType t) {
  switch (t) {
    case WeightType::kF16:
      return CUDA_R_16F;
    case WeightType::kBF16:
      return CUDA_R_16BF;
    default:
      return CUDA_R_32F;
  }
}

}  // namespace

Cublas::~Cublas() {
  if (handle_ != nullptr) cublasDestroy(static_cast<cublasHandle_t>(handle_));
}

absl::Status Cublas::Init(cudaStream_t stream) {
  cublasHandle_t h;
  if (cublasStatus_t s = cublasCreate(&h); s != CUBLAS_STATUS_SUCCESS) return CublasError(s, "cublasCreate");
  handle_ = h;
  if (cublasStatus_t s = cublasSetStream(h, stream); s != CUBLAS_STATUS_SUCCESS)
    return CublasError(s, "cublasSetStream");
  constexpr size_t kWorkspace = 32 << 20;
  if (absl::Status st = workspace_.Allocate(kWorkspace, "cuBLAS workspace"); !st.ok()) return st;
  if (cublasStatus_t s = cublasSetWorkspace(h, workspace_.get(), kWorkspace); s != CUBLAS_STATUS_SUCCESS) {
    return CublasError(s, "cublasSetWorkspace");
  }
  // float32 GEMMs stay float32 (no TF32): the fp32 parity target is 1e-4 against the CPU.
  if (cublasStatus_t s = cublasSetMathMode(h, CUBLAS_DEFAULT_MATH); s != CUBLAS_STATUS_SUCCESS) {
    return CublasError(s, "cublasSetMathMode");
  }
  return absl::OkStatus();
}

absl::Status Cublas::Gemm(const void* X, int rows, const DeviceMatrix& W, WeightType t, float* Y, int ldy,
                          bool accumulate, int ldx) {
  return GemmInto(X, rows, W, t, Y, CUDA_R_32F, ldy, accumulate, ldx);
}

absl::Status Cublas::GemmTyped(const void* X, int rows, const DeviceMatrix& W, WeightType t, void* Y, int ldy,
                               int ldx) {
  return GemmInto(X, rows, W, t, Y, DataType(t), ldy, false, ldx);
}

absl::Status Cublas::GemmInto(const void* X, int rows, const DeviceMatrix& W, WeightType t, void* Y, int y_type,
                              int ldy, bool accumulate, int ldx) {
  CountLaunch();
  if (rows == 0) return absl::OkStatus();
  // Column-major view: Y^T[n, rows] = W[n, k] (row-major = W^T col-major, so op T) x X^T[k, rows].
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  const cublasStatus_t s =
      cublasGemmEx(static_cast<cublasHandle_t>(handle_), CUBLAS_OP_T, CUBLAS_OP_N, W.n, rows, W.k, &alpha, W.data,
                   DataType(t), W.k, X, DataType(t), ldx > 0 ? ldx : W.k, &beta, Y, static_cast<cudaDataType_t>(y_type),
                   ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS) return CublasError(s, "cublasGemmEx");
  return absl::OkStatus();
}

absl::Status Cublas::GemmStrided(const void* X, int rows, const DeviceMatrix& W, int count, int64_t x_stride,
                                 int64_t w_stride, int64_t y_stride, WeightType t, float* Y, int ldy, bool accumulate,
                                 int ldx) {
  if (rows == 0) return absl::OkStatus();
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  const cublasStatus_t s =
      cublasGemmStridedBatchedEx(static_cast<cublasHandle_t>(handle_), CUBLAS_OP_T, CUBLAS_OP_N, W.n, rows, W.k, &alpha,
                                 W.data, DataType(t), W.k, w_stride, X, DataType(t), ldx > 0 ? ldx : W.k, x_stride,
                                 &beta, Y, CUDA_R_32F, ldy, y_stride, count, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (s == CUBLAS_STATUS_NOT_SUPPORTED)
    return absl::UnimplementedError("cublasGemmStridedBatchedEx: types not supported");
  if (s != CUBLAS_STATUS_SUCCESS) return CublasError(s, "cublasGemmStridedBatchedEx");
  CountLaunch();
  return absl::OkStatus();
}

}  // namespace rwkv::cuda
