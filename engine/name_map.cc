#include "engine/name_map.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace rwkv {
namespace {

bool IsFlaHub(const std::vector<TensorInfo>& tensors) {
  for (const TensorInfo& t : tensors) {
    if (absl::StartsWith(t.name, "model.layers.") || absl::StartsWith(t.name, "model.embeddings.")) return true;
  }
  return false;
}

// Returns the official name, or "" when `name` is not a fla-hub RWKV-7 name. Sets *transpose for
// the LoRA matrices, which fla stores as nn.Linear weights ([out, in]).
std::string FlaToOfficial(const std::string& name, bool* transpose) {
  *transpose = false;
  static const std::map<std::string, std::string> kTop = {{"model.embeddings.weight", "emb.weight"},
                                                          {"model.norm.weight", "ln_out.weight"},
                                                          {"model.norm.bias", "ln_out.bias"},
                                                          {"lm_head.weight", "head.weight"}};
  if (auto it = kTop.find(name); it != kTop.end()) return it->second;
  if (!absl::StartsWith(name, "model.layers.")) return "";
  std::vector<std::string> parts = absl::StrSplit(name.substr(13), '.');
  int layer;
  if (parts.size() < 3 || !absl::SimpleAtoi(parts[0], &layer) || layer < 0) return "";
  const std::string block = absl::StrCat("blocks.", layer, ".");
  const std::string& group = parts[1];
  static const std::map<std::string, std::string> kNorms = {
      {"pre_norm", "ln0"}, {"attn_norm", "ln1"}, {"ffn_norm", "ln2"}};
  if (auto it = kNorms.find(group); it != kNorms.end() && parts.size() == 3) {
    return block + it->second + "." + parts[2];
  }
  if (group == "ffn" && parts.size() >= 3) {
    const std::string rest = name.substr(name.find(".ffn.") + 5);
    if (rest == "x_k" || rest == "key.weight" || rest == "value.weight") return block + "ffn." + rest;
    return "";
  }
  if (group != "attn") return "";
  static const std::map<std::string, std::string> kProj = {
      {"r_proj", "receptance"}, {"k_proj", "key"}, {"v_proj", "value"}, {"o_proj", "output"}};
  if (parts.size() == 4 && parts[3] == "weight") {
    if (auto it = kProj.find(parts[2]); it != kProj.end()) return block + "att." + it->second + ".weight";
  }
  if (parts.size() == 4 && parts[2] == "g_norm") return block + "att.ln_x." + parts[3];
  if (parts.size() == 3) {
    static const char* kKeep[] = {"x_r", "x_w", "x_k", "x_v", "x_a", "x_g", "k_k", "k_a", "r_k"};
    for (const char* k : kKeep) {
      if (parts[2] == k) return block + "att." + k;
    }
  }
  // {w,a,v,g}_lora.lora.{0.weight -> X1, 2.weight -> X2, 2.bias -> X0}
  if (parts.size() == 6 && parts[2].size() == 6 && absl::EndsWith(parts[2], "_lora") && parts[3] == "lora") {
    const char x = parts[2][0];
    if (x != 'w' && x != 'a' && x != 'v' && x != 'g') return "";
    const std::string base = block + "att." + std::string(1, x);
    if (parts[4] == "0" && parts[5] == "weight") {
      *transpose = true;
      return base + "1";
    }
    if (parts[4] == "2" && parts[5] == "weight") {
      *transpose = true;
      return base + "2";
    }
    if (parts[4] == "2" && parts[5] == "bias" && x != 'g') return base + "0";
  }
  return "";
}

}  // namespace

absl::Status MapToOfficialNames(const std::string& path, std::vector<TensorInfo>* tensors) {
  // A VisualRWKV checkpoint: the language model under "rwkv.", beside its vision encoder (vit.*,
  // proj.*), which engine/vision reads from the file itself: the language model's view keeps the
  // "rwkv." tensors alone, without the prefix.
  const auto has = [&](const char* name) {
    return std::any_of(tensors->begin(), tensors->end(), [&](const TensorInfo& t) { return t.name == name; });
  };
  if (has("rwkv.emb.weight") && !has("emb.weight")) {
    std::vector<TensorInfo> lm;
    for (TensorInfo& t : *tensors) {
      if (!absl::StartsWith(t.name, "rwkv.")) continue;
      t.name = t.name.substr(5);
      lm.push_back(std::move(t));
    }
    *tensors = std::move(lm);
    return absl::OkStatus();
  }
  if (!IsFlaHub(*tensors)) return absl::OkStatus();
  for (TensorInfo& t : *tensors) {
    bool transpose;
    std::string official = FlaToOfficial(t.name, &transpose);
    if (official.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor ", t.name, " is not a known Hugging Face fla-hub RWKV-7 name"));
    }
    if (transpose) {
      if (t.shape.size() != 2) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor ", t.name, " has shape ", t.ShapeString(), ", expected a 2-D LoRA matrix"));
      }
      std::swap(t.shape[0], t.shape[1]);
      std::swap(t.strides[0], t.strides[1]);
    }
    t.name = std::move(official);
  }
  return absl::OkStatus();
}

}  // namespace rwkv
