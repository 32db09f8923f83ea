#include "engine/vision/encoder.h"

#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/status.h"
#include "engine/vision/preprocess.h"

namespace rwkv::vision {
namespace {

constexpr std::array<float, 3> kImageNetMean = {0.485f, 0.456f, 0.406f}, kImageNetStd = {0.229f, 0.224f, 0.225f};
constexpr std::array<float, 3> kHalf = {0.5f, 0.5f, 0.5f};

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

bool VisionEncoder::Present(const TensorFile& file, const std::string& prefix) {
  return file.Find(prefix + "vit.dino_featurizer.patch_embed.proj.weight") != nullptr;
}

absl::StatusOr<VisionEncoder> VisionEncoder::Load(const TensorFile& f, const VisionEncoderOptions& o) {
  VisionEncoder e;
  VitOptions dino;
  dino.heads = o.dino_heads;
  RWKV_ASSIGN_OR_RETURN(e.dino_, VitTower::Load(f, o.prefix + "vit.dino_featurizer.", dino));
  VitOptions siglip;
  siglip.heads = o.siglip_heads;
  siglip.gelu_tanh = o.siglip_gelu_tanh;
  RWKV_ASSIGN_OR_RETURN(e.siglip_, VitTower::Load(f, o.prefix + "vit.siglip_featurizer.", siglip));
  RWKV_ASSIGN_OR_RETURN(e.sam_, SamTower::Load(f, o.prefix + "vit.sam_featurizer."));
  RWKV_ASSIGN_OR_RETURN(e.proj_, Projector::Load(f, o.prefix + "proj."));
  const int patches = e.dino_->patches();
  if (e.siglip_->patches() != patches || e.sam_->tokens() != patches) {
    return absl::InvalidArgumentError(absl::StrCat("vision encoder: the towers' patch grids differ (DINOv2 ", patches,
                                                   ", SigLIP ", e.siglip_->patches(), ", SAM ", e.sam_->tokens(),
                                                   " tokens)"));
  }
  const int channels = e.dino_->dim() + e.siglip_->dim() + e.sam_->out_dim();
  if (e.proj_->in_dim() != channels) {
    return absl::InvalidArgumentError(absl::StrCat("vision encoder: the projector takes ", e.proj_->in_dim(),
                                                   " channels; the towers give ", channels));
  }
  e.grid_ = static_cast<int>(std::lround(std::sqrt(patches)));
  e.pooled_ = static_cast<int>(std::lround(std::sqrt(o.tokens_per_image)));
  if (e.pooled_ < 1 || e.pooled_ * e.pooled_ != o.tokens_per_image || e.pooled_ > e.grid_) {
    return absl::InvalidArgumentError(absl::StrCat("vision encoder: tokens_per_image is ", o.tokens_per_image,
                                                   "; it must be a square of at most ", patches));
  }
  return e;
}

absl::StatusOr<std::vector<float>> VisionEncoder::Encode(const Image& image, int threads, Timings* timings) const {
  Timings t;
  auto t0 = std::chrono::steady_clock::now();
  const std::vector<float> dino_px =
      Normalize(ResizeBicubic(image, dino_->image_size(), dino_->image_size()), kImageNetMean, kImageNetStd);
  const std::vector<float> siglip_px =
      Normalize(ResizeBicubic(image, siglip_->image_size(), siglip_->image_size()), kHalf, kHalf);
  const std::vector<float> sam_px =
      Normalize(ResizeBicubic(image, sam_->image_size(), sam_->image_size()), kImageNetMean, kImageNetStd);
  t.preprocess = Since(t0);
  t0 = std::chrono::steady_clock::now();
  RWKV_ASSIGN_OR_RETURN(const std::vector<float> d, dino_->Forward(dino_px, threads));
  t.dino = Since(t0);
  t0 = std::chrono::steady_clock::now();
  RWKV_ASSIGN_OR_RETURN(const std::vector<float> s, siglip_->Forward(siglip_px, threads));
  t.siglip = Since(t0);
  t0 = std::chrono::steady_clock::now();
  RWKV_ASSIGN_OR_RETURN(const std::vector<float> m, sam_->Forward(sam_px, threads));
  t.sam = Since(t0);
  t0 = std::chrono::steady_clock::now();
  const int P = grid_ * grid_, cd = dino_->dim(), cs = siglip_->dim(), cm = sam_->out_dim(), C = cd + cs + cm;
  std::vector<float> cat(static_cast<size_t>(P) * C);
  for (int p = 0; p < P; ++p) {
    float* row = cat.data() + static_cast<size_t>(p) * C;
    std::copy_n(d.data() + static_cast<size_t>(p) * cd, cd, row);
    std::copy_n(s.data() + static_cast<size_t>(p) * cs, cs, row + cd);
    std::copy_n(m.data() + static_cast<size_t>(p) * cm, cm, row + cd + cs);
  }
  const std::vector<float> pooled = AdaptiveAvgPool(cat, grid_, C, pooled_);
  std::vector<float> rows = proj_->Forward(pooled, tokens(), threads);
  t.project = Since(t0);
  if (timings != nullptr) *timings = t;
  return rows;
}

}  // namespace rwkv::vision
