// A model's weights on the device (any generation), in one allocation carved into tensors:
// matrices and the embedding in the chosen WeightType (row-major [out, in]), vectors in float32.
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

// One layer; a field a generation does not have stays null / empty.
struct CudaLayer {
  // Every generation.
  const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;  // [C]
  DeviceMatrix receptance, key, value, output, ffn_key, ffn_value;
  const float *ln_x_w = nullptr, *ln_x_b = nullptr;  // [C]; RWKV-5/6/7 group norm
  // RWKV-7.
  const float *x_r, *x_w, *x_k, *x_v, *x_a, *x_g;         // [C]
  const float *w0, *a0, *v0, *k_k, *k_a, *r_k, *ffn_x_k;  // [C]; v0 null in layer 0
  DeviceMatrix w1, w2, a1, a2, v1, v2, g1, g2;            // LoRA, [out, in]
  // RWKV-4/5/6: token-shift mixes as the weight of the previous token (1 - mu for RWKV-4/5, whose
  // files weight the current one; RWKV-6's maa as is); mix_g null without a gate.
  const float *mix_k = nullptr, *mix_v = nullptr, *mix_r = nullptr, *mix_g = nullptr;  // [C]
  const float *ffn_mix_k = nullptr, *ffn_mix_r = nullptr;                              // [C]
  // Per channel [C]. decay: RWKV-4 w = -exp(time_decay), RWKV-5 d = exp(-exp(time_decay)),
  // RWKV-6 time_decay as stored (the step adds its LoRA). bonus: RWKV-4 time_first, RWKV-5/6 u.
  const float *decay = nullptr, *bonus = nullptr;
  DeviceMatrix gate, ffn_receptance;  // gate empty in RWKV-4 and 5.0
  // RWKV-6 data-dependent token shift and decay LoRA.
  const float *maa_x = nullptr, *maa_w = nullptr;      // [C]
  DeviceMatrix maa_w1, maa_w2[5], decay_w1, decay_w2;  // maa_w2 order: w k v r g
};

class CudaWeights {
 public:
  // Converts a loaded model (float32 on the host) to `type` on the device.
  static absl::StatusOr<std::unique_ptr<CudaWeights>> Upload(const Model& model, WeightType type, cudaStream_t s);
  // Random weights of the given shape made on the device (benchmarks: nothing crosses PCIe).
  // RWKV-7 only (UNIMPLEMENTED otherwise; Upload a Model::Random for the other generations).
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
