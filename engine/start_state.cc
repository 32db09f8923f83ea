#include "engine/start_state.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "engine/status.h"
#include "engine/tensor_file.h"

namespace rwkv {

absl::StatusOr<std::vector<float>> LoadStateTuning(const std::string& path, const ModelConfig& c) {
  if (c.arch != Architecture::kRwkv6 && c.arch != Architecture::kRwkv7) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": state-tuning files exist for rwkv6 and rwkv7; this model is ", ArchitectureName(c.arch)));
  }
  RWKV_ASSIGN_OR_RETURN(std::unique_ptr<TensorFile> file, TensorFile::Open(path));
  const int H = c.n_head, N = c.head_size, C = c.n_embd;
  const int64_t per_layer = c.StateFloats() / c.n_layer, matrix = int64_t{N} * N;
  std::vector<float> state(c.StateFloats(), 0.0f);
  std::vector<float> S(int64_t{H} * matrix);
  std::set<std::string> used;
  for (int l = 0; l < c.n_layer; ++l) {
    const std::string name = absl::StrCat("blocks.", l, ".att.time_state");
    const TensorInfo* t = file->Find(name);
    if (t == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", name, " is missing (", c.Describe(), ")"));
    }
    if (!IsFloat(t->dtype)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor ", name, " has dtype ", DTypeName(t->dtype), ", expected f32, f16 or bf16"));
    }
    if (t->shape != std::vector<int64_t>{H, N, N}) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", name, " has shape ", t->ShapeString(),
                                                     ", expected [", H, ", ", N, ", ", N, "] (", c.Describe(), ")"));
    }
    CopyToFloat(*t, S.data());
    float* dst = state.data() + l * per_layer + C;
    for (int h = 0; h < H; ++h) {
      const float* src = S.data() + h * matrix;  // [value][key]
      float* out = dst + h * matrix;
      for (int v = 0; v < N; ++v) {
        for (int k = 0; k < N; ++k) {
          if (c.arch == Architecture::kRwkv7) {
            out[v * N + k] = src[v * N + k];
          } else {
            out[k * N + v] = src[v * N + k];
          }
        }
      }
    }
    used.insert(name);
  }
  for (const TensorInfo& t : file->tensors()) {
    if (!used.count(t.name)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": unexpected tensor ", t.name, " ", t.ShapeString(),
                                                     " in a state-tuning file (only blocks.N.att.time_state for ",
                                                     c.n_layer, " layers)"));
    }
  }
  return state;
}

}  // namespace rwkv
