// An RWKV-7 model's weights on the device, in one allocation carved into tensors: matrices and
// the embedding in the chosen WeightType (row-major [out, in]), vectors in float32.
//
// Immutable after construction; used by one CudaBackend.
#ifndef RWKV_ENGINE_CUDA_CUDA_WEIGHTS_H_
#define RWKV_ENGINE_CUDA_CUDA_WEIGHTS_H_

#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/cuda/cublas_gemm.h"
#include "engine/cuda/cuda_util.h"
#include "engine/model.h"

namespace rwkv::cuda {

struct CudaLayer {
  const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;                               // [C]
  const float *x_r, *x_w, *x_k, *x_v, *x_a, *x_g;                           // [C]
  const float *w0, *a0, *v0, *k_k, *k_a, *r_k, *ln_x_w, *ln_x_b, *ffn_x_k;  // [C]; v0 null in layer 0
  DeviceMatrix w1, w2, a1, a2, v1, v2, g1, g2;                              // LoRA, [out, in]
  DeviceMatrix receptance, key, value, output, ffn_key, ffn_value;
};

class CudaWeights {
 public:
  // Converts a loaded model (float32 on the host) to `type` on the device.
  static absl::StatusOr<std::unique_ptr<CudaWeights>> Upload(const Model& model, WeightType type, cudaStream_t s);
  // Random weights of the given shape made on the device (benchmarks: nothing crosses PCIe).
  // REQUIRES: config.arch == kRwkv7.
  static absl::StatusOr<std::unique_ptr<CudaWeights>> Random(const ModelConfig& config, WeightType type, uint64_t seed,
                                                             cudaStream_t s);

  const ModelConfig& config() const { return config_; }
  WeightType type() const { return type_; }
  const void* emb() const { return emb_; }  // [V, C] in type(); ln0 already applied.
  const float* ln_out_w() const { return ln_out_w_; }
  const float* ln_out_b() const { return ln_out_b_; }
  const DeviceMatrix& head() const { return head_; }
  const CudaLayer& layer(int l) const { return layers_[l]; }
  size_t bytes() const { return arena_.bytes(); }
  // Bytes a decode step reads: every matrix and vector, not the embedding table.
  size_t step_bytes() const { return step_bytes_; }
  int64_t parameters() const { return parameters_; }

  struct Plan;  // The layout of every tensor in the arena (cuda_weights.cu).

 private:
  explicit CudaWeights(const ModelConfig& c, WeightType t) : config_(c), type_(t) {}
  absl::Status Allocate(Plan* plan);

  ModelConfig config_;
  WeightType type_;
  DeviceBuffer arena_;
  const void* emb_ = nullptr;
  const float *ln_out_w_ = nullptr, *ln_out_b_ = nullptr;
  DeviceMatrix head_;
  std::vector<CudaLayer> layers_;
  size_t step_bytes_ = 0;
  int64_t parameters_ = 0;
};

}  // namespace rwkv::cuda

#endif  // RWKV_ENGINE_CUDA_CUDA_WEIGHTS_H_
