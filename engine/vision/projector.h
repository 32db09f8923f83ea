// VisualRWKV's image-feature head: the tower features on their square grid average-pooled to the
// configured tokens per image (PyTorch's AdaptiveAvgPool2d windows), then projected to the language
// model's width: a linear map (`proj.weight`), or the gated MLP (`proj.gate`, `proj.o_proj`,
// `proj.ln_v`): ln_v(o_proj(x * sigmoid(gate(x)))). The rows it returns replace the embeddings of
// the image placeholder tokens (before blocks.0.ln0: docs/rwkv-spec.md section 20).
#ifndef RWKV_ENGINE_VISION_PROJECTOR_H_
#define RWKV_ENGINE_VISION_PROJECTOR_H_

#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tensor_file.h"
#include "engine/vision/layers.h"

namespace rwkv::vision {

// features: [grid * grid][channels], row-major over the grid. Returns [out * out][channels]: output
// cell (oy, ox) averages rows [floor(oy * grid / out), ceil((oy + 1) * grid / out)) and the same
// columns.
std::vector<float> AdaptiveAvgPool(std::span<const float> features, int grid, int channels, int out);

class Projector {
 public:
  // `prefix` + "weight" (linear) or `prefix` + "gate.weight", "o_proj.weight", "ln_v.weight/bias".
  static absl::StatusOr<Projector> Load(const TensorFile& file, const std::string& prefix);
  bool gated() const { return gate_.n > 0; }
  int in_dim() const { return proj_.k; }
  int out_dim() const { return proj_.n; }
  // x: [rows][in_dim] -> [rows][out_dim].
  std::vector<float> Forward(std::span<const float> x, int rows, int threads) const;

 private:
  Dense gate_, proj_;  // gate [in][in] (absent: linear), proj [out][in]; no biases.
  std::vector<float> ln_w_, ln_b_;
};

}  // namespace rwkv::vision

#endif  // RWKV_ENGINE_VISION_PROJECTOR_H_
