// The SAM ViT image encoder on the CPU, as VisualRWKV-7's SAM tower computes it (docs/rwkv-spec.md
// section 20): patch embedding and absolute positions on a G x G grid, pre-norm blocks whose
// attention runs in zero-padded windows (or over the whole grid) with decomposed relative position
// terms, the neck (1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d), then the lossless 2x
// space-to-depth: [(G/2)^2][4 * neck channels], row-major over the half grid. Window sizes and
// head counts come from the relative-position tables' shapes.
#ifndef RWKV_ENGINE_VISION_SAM_H_
#define RWKV_ENGINE_VISION_SAM_H_

#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tensor_file.h"
#include "engine/vision/layers.h"

namespace rwkv::vision {

class SamTower {
 public:
  // `prefix` + sam.py's names: patch_embed.proj.*, pos_embed, blocks.N.{norm1, attn.qkv,
  // attn.proj, attn.rel_pos_h, attn.rel_pos_w, norm2, mlp.lin1, mlp.lin2}.*, neck.{0,1,2,3}.*.
  static absl::StatusOr<SamTower> Load(const TensorFile& file, const std::string& prefix);

  int image_size() const { return grid_ * patch_; }
  int tokens() const { return (grid_ / 2) * (grid_ / 2); }
  int out_dim() const { return 4 * neck_; }

  // pixels: [3][image_size][image_size], normalised. Returns [tokens][out_dim].
  absl::StatusOr<std::vector<float>> Forward(std::span<const float> pixels, int threads) const;

 private:
  using Linear = Dense;
  struct Block {
    std::vector<float> norm1_w, norm1_b, norm2_w, norm2_b, rel_h, rel_w;  // rel_*: [2S - 1][head_dim].
    Linear qkv, proj, lin1, lin2;
    int window = 0;  // S: the attention's square (the whole grid for global blocks).
  };
  // One window of S x S tokens (rows of `in`, zero rows for padding) through the attention.
  void Attend(const Block& b, const float* in, int S, float* out, int threads) const;

  int patch_ = 0, grid_ = 0, dim_ = 0, heads_ = 0, neck_ = 0;
  Linear patch_embed_, neck0_, neck2_;
  std::vector<float> pos_, ln_a_w_, ln_a_b_, ln_b_w_, ln_b_b_;
  std::vector<Block> blocks_;
};

}  // namespace rwkv::vision

#endif  // RWKV_ENGINE_VISION_SAM_H_
