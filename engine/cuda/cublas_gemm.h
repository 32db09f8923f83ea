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

 private:
  void* handle_ = nullptr;  // cublasHandle_t
  DeviceBuffer workspace_;  // Set explicitly so that GEMMs can be captured into CUDA graphs.
};

}  // namespace rwkv::cuda

#endif  // RWKV_ENGINE_CUDA_CUBLAS_GEMM_H_
