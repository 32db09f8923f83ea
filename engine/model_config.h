// What a checkpoint is: architecture and every dimension, read from tensor names and shapes alone
// (docs/rwkv-spec.md section 2). Nothing here is hard-coded per model size.
#ifndef RWKV_ENGINE_MODEL_CONFIG_H_
#define RWKV_ENGINE_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/tensor_file.h"

namespace rwkv {

enum class Architecture { kRwkv4, kRwkv5_0, kRwkv5_1, kRwkv5_2, kRwkv6, kRwkv7 };

const char* ArchitectureName(Architecture a);  // "rwkv7", "rwkv5.2", ...

struct ModelConfig {
  Architecture arch = Architecture::kRwkv7;
  int n_layer = 0;
  int n_embd = 0;     // C: residual width.
  int n_att = 0;      // C_att: attention width (= C in released models).
  int n_head = 0;     // H (v5+).
  int head_size = 0;  // N (v5+); H * N = C_att.
  int ffn_dim = 0;    // F.
  int vocab = 0;      // Rows of emb.weight.
  // LoRA ranks. v7: decay (Dw), in-context learning rate (Da), value residual (Dv), gate (Dg).
  // v6: token-shift mix (Dm) and decay (Dd).
  int lora_decay = 0, lora_iclr = 0, lora_value = 0, lora_gate = 0, lora_mix = 0;
  int64_t parameter_count = 0;  // Elements of every tensor in the file.

  // Floats in one session's recurrent state (spec section 7).
  int64_t StateFloats() const;
  int64_t StateBytes() const { return StateFloats() * 4; }
  // One line: "rwkv7 L3 C64 H4x16 F192 V256 lora 8/6/4/10".
  std::string Describe() const;
};

// Detects the architecture and dimensions of a checkpoint whose tensors carry official names.
// Fails with INVALID_ARGUMENT naming the file and what was found when no architecture fits, or
// when the file is a converted/experimental variant rather than an official checkpoint.
absl::StatusOr<ModelConfig> DetectModelConfig(const TensorFile& file);

}  // namespace rwkv

#endif  // RWKV_ENGINE_MODEL_CONFIG_H_
