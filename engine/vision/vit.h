// A ViT image tower on the CPU, as timm's VisionTransformer computes it, up to an intermediate
// block: the patch embedding (a convolution with stride = kernel, as one GEMM over the patches),
// class and register tokens, absolute position embeddings (on the patches only, or on every token),
// pre-norm blocks (LayerNorm, multi-head attention, optional layer scale, MLP with GELU), and the
// patch tokens after `output_block` (prefix tokens dropped, no final norm): timm's
// get_intermediate_layers(n={output_block}), what VisualRWKV's DINOv2 and SigLIP towers give.
// Everything in float32 through the packed GEMM (engine/cpu/gemm.h).
#ifndef RWKV_ENGINE_VISION_VIT_H_
#define RWKV_ENGINE_VISION_VIT_H_

#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tensor_file.h"
#include "engine/vision/layers.h"

namespace rwkv::vision {

struct VitOptions {
  int heads = 0;             // Not in the weights' shapes: the architecture's (16 for ViT-L, SigLIP so400m).
  int output_block = -1;     // Features after this block (0-based); -1: the second-to-last.
  bool gelu_tanh = false;    // GELU's tanh approximation instead of the exact erf form.
  float ln_eps = 1e-6f;
};

class VitTower {
 public:
  // Reads `prefix` + timm's names (patch_embed.proj.*, cls_token, reg_token, pos_embed,
  // blocks.N.{norm1,attn.qkv,attn.proj,ls1,norm2,mlp.fc1,mlp.fc2,ls2}.*) from `file`; dimensions
  // from their shapes. INVALID_ARGUMENT naming the tensor for anything missing or inconsistent.
  static absl::StatusOr<VitTower> Load(const TensorFile& file, const std::string& prefix, const VitOptions& options);

  int image_size() const { return grid_ * patch_; }
  int patches() const { return grid_ * grid_; }
  int dim() const { return dim_; }
  int prefix_tokens() const { return prefix_; }

  // pixels: [3][image_size][image_size], normalised. Returns [patches][dim].
  absl::StatusOr<std::vector<float>> Forward(std::span<const float> pixels, int threads) const;

 private:
  using Linear = Dense;
  struct Block {
    std::vector<float> norm1_w, norm1_b, norm2_w, norm2_b, ls1, ls2;  // ls*: empty without layer scale.
    Linear qkv, proj, fc1, fc2;
  };

  VitOptions options_;
  int patch_ = 0, grid_ = 0, dim_ = 0, prefix_ = 0, mlp_ = 0;
  bool pos_on_prefix_ = false;
  Linear patch_embed_;
  std::vector<float> cls_, reg_, pos_;  // cls_: [dim] or empty; reg_: [regs][dim]; pos_: [rows][dim].
  std::vector<Block> blocks_;           // Blocks 0..output_block only.
};

}  // namespace rwkv::vision

#endif  // RWKV_ENGINE_VISION_VIT_H_
