// VisualRWKV-7's image encoder on the CPU (docs/rwkv-spec.md section 20): an image resized and
// normalised for each tower (DINOv2 and SigLIP bicubic to their size, SAM bicubic to its size with
// DINOv2's normalisation), the three towers' patch features concatenated along channels (DINOv2,
// SigLIP, SAM), average-pooled to `tokens_per_image`, and projected to the language model's width.
// The rows replace the embeddings of the image placeholder tokens.
#ifndef RWKV_ENGINE_VISION_ENCODER_H_
#define RWKV_ENGINE_VISION_ENCODER_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tensor_file.h"
#include "engine/vision/image.h"
#include "engine/vision/projector.h"
#include "engine/vision/sam.h"
#include "engine/vision/vit.h"

namespace rwkv::vision {

struct VisionEncoderOptions {
  int dino_heads = 16;            // ViT-L.
  int siglip_heads = 16;          // so400m: 1152 = 16 x 72.
  bool siglip_gelu_tanh = false;  // timm 1.0.9's so400m uses the exact GELU.
  int tokens_per_image = 16;      // A square; VisualRWKV's evaluate.py default.
  std::string prefix;             // Before "vit." and "proj.".
};

class VisionEncoder {
 public:
  // The towers under prefix + "vit.{dino,siglip,sam}_featurizer.", the projector under prefix +
  // "proj.". INVALID_ARGUMENT naming what is missing or inconsistent (towers on different grids,
  // a token count that is not a square no larger than the grid).
  static absl::StatusOr<VisionEncoder> Load(const TensorFile& file, const VisionEncoderOptions& options);
  // Whether `file` carries a VisualRWKV-7 encoder (vit.* towers) under `prefix`: a text-only
  // checkpoint does not.
  static bool Present(const TensorFile& file, const std::string& prefix = "");

  int tokens() const { return pooled_ * pooled_; }
  int width() const { return proj_->out_dim(); }

  struct Timings {  // Seconds per stage of the last Encode.
    double preprocess = 0, dino = 0, siglip = 0, sam = 0, project = 0;
  };
  // [tokens()][width()].
  absl::StatusOr<std::vector<float>> Encode(const Image& image, int threads, Timings* timings = nullptr) const;

 private:
  std::optional<VitTower> dino_, siglip_;
  std::optional<SamTower> sam_;
  std::optional<Projector> proj_;
  int grid_ = 0, pooled_ = 0;
};

}  // namespace rwkv::vision

#endif  // RWKV_ENGINE_VISION_ENCODER_H_
