// A loaded RWKV model: its config and its weights, float32 but for the matrices, which may be
// 16-bit (ModelOptions), in two host allocations.
//
// Owned by whoever loads it (a backend keeps a shared_ptr to read-only weights). Immutable after
// Load; any thread may read it.
#ifndef RWKV_ENGINE_MODEL_H_
#define RWKV_ENGINE_MODEL_H_

#include <memory>
#include <optional>
#include <string_view>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "engine/packed_matrix.h"

namespace rwkv {

namespace model_internal {
struct Slot;  // One tensor of the load plan (model.cc).
}  // namespace model_internal

// Views into Model's arena. Vectors are squeezed to [C]. Matrices are PackedMatrix (n output
// rows x k inputs, used as W x); the LoRA matrices, [in, out] in the files (spec 6.1), are
// transposed at load so that one kernel serves every product.
struct Rwkv7Layer {
  const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;      // [C]
  const float *x_r, *x_w, *x_k, *x_v, *x_a, *x_g;  // [C] token-shift mixes
  const float *w0, *a0, *v0;                       // [C] LoRA biases; v0 null in layer 0
  PackedMatrix w1, w2, a1, a2, v1, v2, g1, g2;     // w1: Dw x C, w2: C x Dw, ...; v* empty in layer 0
  const float *k_k, *k_a;                          // [C]
  const float* r_k;                                // [H * N]
  PackedMatrix receptance, key, value, output;     // C x C
  const float *ln_x_w, *ln_x_b;                    // [C]
  const float* ffn_x_k;                            // [C]
  PackedMatrix ffn_key, ffn_value;                 // F x C, C x F
};

// RWKV-6 (Finch), spec 5.1. LoRA matrices are transposed at load, as for RWKV-7.
struct Rwkv6Layer {
  const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;                       // [C]
  const float *maa_x, *maa_w, *maa_k, *maa_v, *maa_r, *maa_g;       // [C] token-shift mixes
  PackedMatrix maa_w1;                                              // 5Dm x C
  PackedMatrix maa_w2[5];                                           // C x Dm each, order w k v r g
  const float* time_decay;                                          // [C]
  PackedMatrix decay_w1, decay_w2;                                  // Dd x C, C x Dd
  const float* faaaa;                                               // [H * N] bonus u
  PackedMatrix receptance, key, value, gate, output;                // C x C
  const float *ln_x_w, *ln_x_b;                                     // [C]
  const float *ffn_maa_k, *ffn_maa_r;                               // [C]
  PackedMatrix ffn_key, ffn_receptance, ffn_value;                  // F x C, C x C, C x F
};

// RWKV-5 (Eagle), spec 4.1: v5.0 (no gate, per-head decay), v5.1 (gate, per-head decay), v5.2
// (gate, per-channel decay). Decay and bonus are kept as in the file ([H] or [H, N]); mixes weight
// the current token (z * mu + s * (1 - mu)).
struct Rwkv5Layer {
  const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;        // [C]
  const float *mix_k, *mix_v, *mix_r, *mix_g;        // [C]; mix_g null in v5.0
  const float *time_decay, *bonus;                   // [H] or [H * N]; bonus = time_faaaa, or time_first
  bool bonus_is_log = false;                         // time_first: u = exp(time_first)
  PackedMatrix receptance, key, value, gate, output; // gate empty in v5.0
  const float *ln_x_w, *ln_x_b;                      // [C]
  const float *ffn_mix_k, *ffn_mix_r;                // [C]
  PackedMatrix ffn_key, ffn_receptance, ffn_value;
};

// RWKV-4, spec 3.1. Mixes weight the current token; decay and bonus per channel.
struct Rwkv4Layer {
  const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;   // [C]
  const float *mix_k, *mix_v, *mix_r;           // [C]
  const float *time_decay, *time_first;         // [C]: w = -exp(time_decay), u = time_first
  PackedMatrix receptance, key, value, output;  // C x C
  const float *ffn_mix_k, *ffn_mix_r;           // [C]
  PackedMatrix ffn_key, ffn_receptance, ffn_value;
};

// RWKV-4 and RWKV-5 per-layer vectors in the backends' convention, [kKrvVectors][C] (spec 3.2,
// 4.2): the decay (RWKV-4 w = -exp(time_decay), log space; RWKV-5 d = exp(-exp(time_decay))), the
// bonus (RWKV-4 time_first; RWKV-5 u = time_faaaa or exp(time_first)), each broadcast over a head
// when the file has one per head; then the token-shift mixes as the weight of the previous token,
// 1 - mu (the files weight the current one), zero for a mix the model lacks (RWKV-4's and
// RWKV-5.0's gate). REQUIRES: an RWKV-4 or RWKV-5 model.
enum KrvVector { kKrvDecay, kKrvBonus, kKrvMixK, kKrvMixV, kKrvMixR, kKrvMixG, kKrvFfnMixK, kKrvFfnMixR, kKrvVectors };
class Model;
std::vector<float> KrvLayerVectors(const Model& model, int layer);

struct ModelOptions {
  // Element type of the weight matrices (nn.Linear weights and the head; not the embedding, the
  // vectors or the LoRA factors, which stay float32). nullopt = as stored: a bf16 or f16
  // checkpoint keeps its matrices 16-bit, exactly; a float32 one stays float32. kInt8 / kInt4
  // quantize group-wise as they load (engine/packed_matrix.h); int4 keeps the head int8.
  std::optional<MatrixType> matrices;
};

// "auto" (nullopt), "f32", "bf16", "f16", "int8", "int4"; INVALID_ARGUMENT naming `flag` otherwise.
absl::StatusOr<std::optional<MatrixType>> ParseMatrixType(std::string_view value, std::string_view flag);

// blocks.0.ln0 (LayerNorm, eps 1e-5, in double) on one row of C floats: how the embedding table is
// folded, and how a backend feeds embedding rows (BatchEntry::rows) through ln0.
void ApplyLn0Row(const float* ln0_w, const float* ln0_b, int C, const float* row, float* out);

class Model {
 public:
  // Opens a checkpoint (.pth or .safetensors, official or fla-hub names), detects its config and
  // converts every tensor to float32, the matrices to `options.matrices`. Runs every generation
  // (RWKV-4, 5.x, 6, 7). Fails, naming the file and the tensor, on a missing tensor, a wrong shape
  // or dtype, an unexpected tensor, or an architecture this build does not run. Never returns a
  // partly loaded model. Converts tensor by tensor from the mapped file: besides the result it
  // holds one tensor in float32 at a time.
  static absl::StatusOr<std::unique_ptr<Model>> Load(const std::string& path, const ModelOptions& options = {});

  // A model with random weights of the given shape (benchmarks); any generation (RWKV-5 with
  // time_faaaa bonuses), matrices rounded to `matrices`.
  static std::unique_ptr<Model> Random(const ModelConfig& config, uint64_t seed,
                                       MatrixType matrices = MatrixType::kF32);

  const ModelConfig& config() const { return config_; }
  const std::string& source() const { return source_; }
  const float* emb() const { return emb_; }  // [V, C], ln0 already applied.
  // blocks.0.ln0 on one row of C floats, as the embedding table was folded with it (bit for bit):
  // rows from outside the table (image features) enter the model through it.
  void ApplyLn0(const float* row, float* out) const;
  // blocks.0.ln0's weight and bias, C floats each (for backends that apply it to rows themselves).
  const float* ln0_w() const { return ln0_w_; }
  const float* ln0_b() const { return ln0_b_; }
  const float* ln_out_w() const { return ln_out_w_; }
  const float* ln_out_b() const { return ln_out_b_; }
  const PackedMatrix& head() const { return head_; }  // V x C
  const Rwkv7Layer& layer(int i) const { return layers_[i]; }    // REQUIRES: arch kRwkv7.
  const Rwkv6Layer& layer6(int i) const { return layers6_[i]; }  // REQUIRES: arch kRwkv6.
  const Rwkv5Layer& layer5(int i) const { return layers5_[i]; }  // REQUIRES: an RWKV-5 arch.
  const Rwkv4Layer& layer4(int i) const { return layers4_[i]; }  // REQUIRES: arch kRwkv4.
  size_t weight_bytes() const {
    return arena_.size() * sizeof(float) + half_arena_.size() * sizeof(uint16_t) + code_arena_.size();
  }
  // The element type of the layers' matrices (int4 keeps the head at int8).
  MatrixType matrix_type() const { return matrices_; }

 private:
  Model() = default;
  // Lays out `plan` in the arenas. fill(slot, row0, count, out) writes values row-major: a
  // vector's all (count -1), a matrix's rows [row0, row0 + count) of [out, in], called panel by
  // panel in order, each then packed.
  template <typename Fill>
  absl::Status Store(const std::vector<model_internal::Slot>& plan, Fill fill);
  void FoldLn0(const float* ln0_w, const float* ln0_b);
  // The load plan of config_.arch, pointing this model's views at their arena slots.
  std::vector<model_internal::Slot> Plan(bool time_first, const float** ln0_w, const float** ln0_b);

  ModelConfig config_;
  std::string source_;
  std::vector<float> arena_;
  std::vector<uint16_t> half_arena_;  // 16-bit matrices, quantized matrices' scales.
  std::vector<uint8_t> code_arena_;   // Quantized matrices' codes.
  MatrixType matrices_ = MatrixType::kF32;
  const float *emb_ = nullptr, *ln_out_w_ = nullptr, *ln_out_b_ = nullptr;
  const float *ln0_w_ = nullptr, *ln0_b_ = nullptr;  // In the arena; kept after the fold.
  PackedMatrix head_;
  std::vector<Rwkv7Layer> layers_;
  std::vector<Rwkv6Layer> layers6_;
  std::vector<Rwkv5Layer> layers5_;
  std::vector<Rwkv4Layer> layers4_;
};

}  // namespace rwkv

#endif  // RWKV_ENGINE_MODEL_H_
