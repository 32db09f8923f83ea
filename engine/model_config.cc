#include "engine/model_config.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace rwkv {

const char* ArchitectureName(Architecture a) {
  switch (a) {
    case Architecture::kRwkv4:
      return "rwkv4";
    case Architecture::kRwkv5_0:
      return "rwkv5.0";
    case Architecture::kRwkv5_1:
      return "rwkv5.1";
    case Architecture::kRwkv5_2:
      return "rwkv5.2";
    case Architecture::kRwkv6:
      return "rwkv6";
    case Architecture::kRwkv7:
      return "rwkv7";
  }
  return "?";
}

int64_t ModelConfig::StateFloats() const {
  if (arch == Architecture::kRwkv4) return int64_t{n_layer} * (2 * n_embd + 3 * n_att);
  return int64_t{n_layer} * (2 * int64_t{n_embd} + int64_t{n_head} * head_size * head_size);
}

std::string ModelConfig::Describe() const {
  std::string s = absl::StrCat(ArchitectureName(arch), " L", n_layer, " C", n_embd);
  if (arch != Architecture::kRwkv4) absl::StrAppend(&s, " H", n_head, "x", head_size);
  absl::StrAppend(&s, " F", ffn_dim, " V", vocab);
  if (arch == Architecture::kRwkv7) {
    absl::StrAppend(&s, " lora ", lora_decay, "/", lora_iclr, "/", lora_value, "/", lora_gate);
  } else if (arch == Architecture::kRwkv6) {
    absl::StrAppend(&s, " lora ", lora_mix, "/", lora_decay);
  }
  return s;
}

namespace {

// Dimension `dim` of tensor `name`, or an error naming both.
absl::StatusOr<int> Dim(const TensorFile& f, const std::string& name, size_t dim, size_t rank) {
  const TensorInfo* t = f.Find(name);
  if (!t) return absl::InvalidArgumentError(absl::StrCat(f.path(), ": missing tensor ", name));
  if (t->shape.size() != rank) {
    return absl::InvalidArgumentError(
        absl::StrCat(f.path(), ": tensor ", name, " has shape ", t->ShapeString(), ", expected ", rank, " dimensions"));
  }
  if (t->shape[dim] <= 0 || t->shape[dim] > (1 << 24)) {
    return absl::InvalidArgumentError(absl::StrCat(f.path(), ": tensor ", name, " has shape ", t->ShapeString()));
  }
  return static_cast<int>(t->shape[dim]);
}

#define RWKV_DIM(var, ...)                    \
  do {                                        \
    auto dim_or = Dim(__VA_ARGS__);           \
    if (!dim_or.ok()) return dim_or.status(); \
    var = *dim_or;                            \
  } while (0)

}  // namespace

absl::StatusOr<ModelConfig> DetectModelConfig(const TensorFile& f) {
  const std::string& path = f.path();
  bool any_r_k = false, any_maa_x = false, any_ln_x = false, any_gate = false, any_time_first = false;
  std::set<int> layers;
  for (const TensorInfo& t : f.tensors()) {
    const std::string& n = t.name;
    static const char* kNotPlain[] = {"_strategy", "_version", "_rescale_layer"};
    for (const char* k : kNotPlain) {
      if (n == k) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": holds '", k, "': a ChatRWKV pre-converted file ",
                                                       "(transposed, possibly int8); load the original checkpoint"));
      }
    }
    if (absl::StrContains(n, "ffn.s_emb") || absl::EndsWith(n, "ffn.s0") || absl::EndsWith(n, "ffn.s1") ||
        absl::EndsWith(n, "ffn.s2") || absl::StartsWith(n, "pos_emb") || absl::StartsWith(n, "head_q.")) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor ", n, " belongs to an experimental variant that is not supported"));
    }
    if (absl::StartsWith(n, "blocks.")) {
      int layer;
      const size_t dot = n.find('.', 7);
      if (dot == std::string::npos || !absl::SimpleAtoi(n.substr(7, dot - 7), &layer) || layer < 0 || layer > 100000) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": tensor name ", n, " has no valid layer number"));
      }
      layers.insert(layer);
    }
    any_r_k |= absl::EndsWith(n, "att.r_k");
    any_maa_x |= absl::StrContains(n, "att.time_maa_x");
    any_ln_x |= absl::StrContains(n, "att.ln_x");
    any_gate |= absl::EndsWith(n, "att.gate.weight");
    any_time_first |= absl::EndsWith(n, "att.time_first");
  }
  const TensorInfo* emb = f.Find("emb.weight");
  // Each generation has a marker tensor (spec section 2); RWKV-4's is att.time_first.
  if (!emb || layers.empty() || !(any_r_k || any_maa_x || any_ln_x || any_time_first)) {
    std::string seen;
    for (size_t i = 0; i < f.tensors().size() && i < 5; ++i) absl::StrAppend(&seen, i ? ", " : "", f.tensors()[i].name);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": unknown architecture: expected RWKV-4/5/6/7 tensors (emb.weight, blocks.N.att.r_k | ",
                     "time_maa_x | ln_x | time_first), found ", f.tensors().size(),
                     " tensors starting with: ", seen.empty() ? "(none)" : seen));
  }
  ModelConfig c;
  c.n_layer = *layers.rbegin() + 1;
  if (static_cast<int>(layers.size()) != c.n_layer) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": blocks are not numbered 0..", c.n_layer - 1, " (",
                                                   layers.size(), " distinct layers found)"));
  }
  RWKV_DIM(c.vocab, f, "emb.weight", 0, 2);
  RWKV_DIM(c.n_embd, f, "emb.weight", 1, 2);
  RWKV_DIM(c.n_att, f, "blocks.0.att.key.weight", 0, 2);
  RWKV_DIM(c.ffn_dim, f, "blocks.0.ffn.key.weight", 0, 2);

  if (any_r_k) {
    c.arch = Architecture::kRwkv7;
    RWKV_DIM(c.n_head, f, "blocks.0.att.r_k", 0, 2);
    RWKV_DIM(c.head_size, f, "blocks.0.att.r_k", 1, 2);
    RWKV_DIM(c.lora_decay, f, "blocks.0.att.w1", 1, 2);
    RWKV_DIM(c.lora_iclr, f, "blocks.0.att.a1", 1, 2);
    RWKV_DIM(c.lora_gate, f, "blocks.0.att.g1", 1, 2);
    // Layer 0's value-residual LoRA is unused (and absent from fla-hub files): read layer 1's.
    if (c.n_layer > 1) RWKV_DIM(c.lora_value, f, "blocks.1.att.v1", 1, 2);
  } else if (any_maa_x) {
    if (f.Find("blocks.0.att.time_maa_rkvw_w1") || f.Find("blocks.0.att.gate_w1")) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": an unreleased RWKV-6 research variant (x060a/b)"));
    }
    c.arch = Architecture::kRwkv6;
    RWKV_DIM(c.n_head, f, "blocks.0.att.time_faaaa", 0, 2);
    RWKV_DIM(c.head_size, f, "blocks.0.att.time_faaaa", 1, 2);
    int mix5;
    RWKV_DIM(mix5, f, "blocks.0.att.time_maa_w1", 1, 2);
    c.lora_mix = mix5 / 5;
    RWKV_DIM(c.lora_decay, f, "blocks.0.att.time_decay_w1", 1, 2);
  } else if (any_ln_x) {
    const TensorInfo* decay = f.Find("blocks.0.att.time_decay");
    if (!decay) return absl::InvalidArgumentError(absl::StrCat(path, ": missing tensor blocks.0.att.time_decay"));
    const bool per_channel = decay->shape.size() == 2 && decay->shape[1] > 1;
    c.arch = !any_gate ? Architecture::kRwkv5_0 : per_channel ? Architecture::kRwkv5_2 : Architecture::kRwkv5_1;
    if (decay->shape.empty() || decay->shape[0] <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor blocks.0.att.time_decay has shape ", decay->ShapeString()));
    }
    c.n_head = static_cast<int>(decay->shape[0]);
    c.head_size = c.n_att / c.n_head;
  } else {
    c.arch = Architecture::kRwkv4;
  }
  if (c.arch != Architecture::kRwkv4 && (c.n_head <= 0 || int64_t{c.n_head} * c.head_size != c.n_att)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", c.n_head, " heads of size ", c.head_size,
                                                   " do not make the attention width ", c.n_att));
  }
  for (const TensorInfo& t : f.tensors()) c.parameter_count += t.numel();
  return c;
}

}  // namespace rwkv
