// Every cuBLAS call of the CUDA backend lives here (one file for the library seam).
#ifndef RWKV_ENGINE_CUDA_CUBLAS_GEMM_H_
#define RWKV_ENGINE_CUDA_CUBLAS_GEMM_H_

#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "engine/cuda/cuda_util.h"

namespace rwkv::cuda {

// A weight matrix on the device: n output rows by k inputs, row-major ([out, in], used as W x).
struct DeviceMatrix {
  const void* data = nullptr;
  int n = 0, k = 0;
};

class Cublas {
 public:
  Cublas() = default;
  ~Cublas();
  Cublas(const Cublas&) = delete;
  Cublas& operator=(const Cublas&) = delete;

  absl::Status Init(cudaStream_t stream);
  // Y[rows, n] (+)= X[rows, k] W^T, X and W of type `t`, Y float32 with leading dimension ldy,
  // float32 accumulation. X's leading dimension is ldx (0: k).
  absl::Status Gemm(const void* X, int rows, const DeviceMatrix& W, WeightType t, float* Y, int ldy, bool accumulate,
                    int ldx = 0);
  // The same with Y in type t (float32 sums rounded once): no cast kernel after it.
  absl::Status GemmTyped(const void* X, int rows, const DeviceMatrix& W, WeightType t, void* Y, int ldy, int ldx = 0);
  // `count` GEMMs of W's shape in one call: the i-th reads X + i * x_stride and W.data + i *
  // w_stride (elements of type t) and writes Y + i * y_stride (floats). UNIMPLEMENTED when this
  // cuBLAS does not take the types batched (the caller then runs them one by one).
  absl::Status GemmStrided(const void* X, int rows, const DeviceMatrix& W, int count, int64_t x_stride,
                           int64_t w_stride, int64_t y_stride, WeightType t, float* Y, int ldy, bool accumulate,
                           int ldx);

 private:
  // Y's type is a cudaDataType_t.
  absl::Status GemmInto(const void* X, int rows, const DeviceMatrix& W, WeightType t, void* Y, int y_type, int ldy,
                        bool accumulate, int ldx);

  void* handle_ = nullptr;  // cublasHandle_t
  DeviceBuffer workspace_;  // Set explicitly so that GEMMs can be captured into CUDA graphs.
};

}  // namespace rwkv::cuda

#endif  // RWKV_ENGINE_CUDA_CUBLAS_GEMM_H_
