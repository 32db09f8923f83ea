#include "engine/vision/vit.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/cpu/gemm.h"
#include "engine/status.h"
#include "engine/vision/layers.h"

namespace rwkv::vision {
namespace {

constexpr char kWhat[] = "vision tower";

absl::Status Bad(const std::string& what) { return absl::InvalidArgumentError(absl::StrCat(kWhat, ": ", what)); }

}  // namespace

absl::StatusOr<VitTower> VitTower::Load(const TensorFile& f, const std::string& prefix, const VitOptions& options) {
  VitTower v;
  v.options_ = options;
  auto linear = [&](const std::string& name, int n, int k, const TensorInfo* w = nullptr) {
    return LoadDense(f, kWhat, name, n, k, /*bias=*/true, w);
  };
  auto vec = [&](const std::string& name, int n) { return ReadVector(f, kWhat, name, n); };
  auto Get = [&](const std::string& name, std::vector<int64_t> shape) { return GetTensor(f, kWhat, name, shape); };
  auto Floats = [](const TensorInfo& t) { return ReadFloats(t); };

  RWKV_ASSIGN_OR_RETURN(const TensorInfo* pw, Get(prefix + "patch_embed.proj.weight", {-1, 3, -1, -1}));
  v.dim_ = static_cast<int>(pw->shape[0]);
  v.patch_ = static_cast<int>(pw->shape[2]);
  if (pw->shape[3] != v.patch_ || v.dim_ <= 0 || v.patch_ <= 0) {
    return Bad(absl::StrCat("tensor ", prefix, "patch_embed.proj.weight is ", pw->ShapeString(), "; patches must be square"));
  }
  if (options.heads <= 0 || v.dim_ % options.heads != 0) {
    return Bad(absl::StrCat(options.heads, " heads do not divide the width ", v.dim_));
  }
  const int D = v.dim_, kp = 3 * v.patch_ * v.patch_;
  RWKV_ASSIGN_OR_RETURN(v.patch_embed_, linear(prefix + "patch_embed.proj", D, kp, pw));  // [D][3][P][P] as [D][3PP].
  if (const TensorInfo* c = f.Find(prefix + "cls_token"); c != nullptr) {
    RWKV_ASSIGN_OR_RETURN(c, Get(prefix + "cls_token", {1, 1, D}));
    v.cls_ = Floats(*c);
  }
  int regs = 0;
  if (const TensorInfo* r = f.Find(prefix + "reg_token"); r != nullptr) {
    RWKV_ASSIGN_OR_RETURN(r, Get(prefix + "reg_token", {1, -1, D}));
    regs = static_cast<int>(r->shape[1]);
    v.reg_ = Floats(*r);
  }
  v.prefix_ = (v.cls_.empty() ? 0 : 1) + regs;
  RWKV_ASSIGN_OR_RETURN(const TensorInfo* pos, Get(prefix + "pos_embed", {1, -1, D}));
  // Position embeddings for the patches alone (timm's no_embed_class), or for every token.
  int64_t patches = pos->shape[1];
  if (v.prefix_ > 0) {
    const int64_t g = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(patches))));
    if (g * g != patches) {
      v.pos_on_prefix_ = true;
      patches -= v.prefix_;
    }
  }
  v.grid_ = static_cast<int>(std::llround(std::sqrt(static_cast<double>(std::max<int64_t>(patches, 0)))));
  if (patches <= 0 || int64_t{v.grid_} * v.grid_ != patches) {
    return Bad(absl::StrCat("tensor ", prefix, "pos_embed is ", pos->ShapeString(), ": not a square grid of patches",
                            v.prefix_ > 0 ? absl::StrCat(" (with or without the ", v.prefix_, " prefix tokens)") : ""));
  }
  v.pos_ = Floats(*pos);

  int depth = 0;
  while (f.Find(absl::StrCat(prefix, "blocks.", depth, ".norm1.weight")) != nullptr) ++depth;
  const int last = options.output_block < 0 ? depth - 2 : options.output_block;
  if (depth == 0 || last < 0 || last >= depth) {
    return Bad(absl::StrCat("output block ", last, " of ", depth, " blocks"));
  }
  RWKV_ASSIGN_OR_RETURN(const TensorInfo* fc1, Get(absl::StrCat(prefix, "blocks.0.mlp.fc1.weight"), {-1, D}));
  v.mlp_ = static_cast<int>(fc1->shape[0]);
  for (int l = 0; l <= last; ++l) {
    const std::string b = absl::StrCat(prefix, "blocks.", l, ".");
    Block blk;
    RWKV_ASSIGN_OR_RETURN(blk.norm1_w, vec(b + "norm1.weight", D));
    RWKV_ASSIGN_OR_RETURN(blk.norm1_b, vec(b + "norm1.bias", D));
    RWKV_ASSIGN_OR_RETURN(blk.norm2_w, vec(b + "norm2.weight", D));
    RWKV_ASSIGN_OR_RETURN(blk.norm2_b, vec(b + "norm2.bias", D));
    RWKV_ASSIGN_OR_RETURN(blk.qkv, linear(b + "attn.qkv", 3 * D, D));
    RWKV_ASSIGN_OR_RETURN(blk.proj, linear(b + "attn.proj", D, D));
    RWKV_ASSIGN_OR_RETURN(blk.fc1, linear(b + "mlp.fc1", v.mlp_, D));
    RWKV_ASSIGN_OR_RETURN(blk.fc2, linear(b + "mlp.fc2", D, v.mlp_));
    if (f.Find(b + "ls1.gamma") != nullptr) {
      RWKV_ASSIGN_OR_RETURN(blk.ls1, vec(b + "ls1.gamma", D));
      RWKV_ASSIGN_OR_RETURN(blk.ls2, vec(b + "ls2.gamma", D));
    }
    v.blocks_.push_back(std::move(blk));
  }
  return v;
}

absl::StatusOr<std::vector<float>> VitTower::Forward(std::span<const float> pixels, int threads) const {
  const int S = image_size(), P = patch_, D = dim_, T = patches(), N = prefix_ + T;
  if (pixels.size() != static_cast<size_t>(3) * S * S) {
    return Bad(absl::StrCat("pixels: ", pixels.size(), " values; expected 3x", S, "x", S));
  }
  const std::vector<float> cols = PatchRows(pixels.data(), S, P);
  // Tokens: [class, registers, patches].
  std::vector<float> x(static_cast<size_t>(N) * D);
  patch_embed_.Apply(cols.data(), T, x.data() + static_cast<size_t>(prefix_) * D, threads);
  int row = 0;
  if (!cls_.empty()) std::copy(cls_.begin(), cls_.end(), x.begin() + static_cast<size_t>(row++) * D);
  for (size_t r = 0; r < reg_.size() / D; ++r) {
    std::copy(reg_.begin() + r * D, reg_.begin() + (r + 1) * D, x.begin() + static_cast<size_t>(row++) * D);
  }
  const size_t pos_from = pos_on_prefix_ ? 0 : static_cast<size_t>(prefix_) * D;
  for (size_t i = 0; i < pos_.size(); ++i) x[pos_from + i] += pos_[i];

  const int H = options_.heads, hd = D / H;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<float> h(x.size()), qkv(static_cast<size_t>(N) * 3 * D), att(x.size()), mlp(static_cast<size_t>(N) * mlp_);
  AttentionScratch scratch;
  for (const Block& b : blocks_) {
    RowLayerNorm(x.data(), N, D, b.norm1_w, b.norm1_b, options_.ln_eps, h.data());
    b.qkv.Apply(h.data(), N, qkv.data(), threads);
    for (int hh = 0; hh < H; ++hh) {
      const float* base = qkv.data() + hh * hd;
      HeadAttention(base, base + D, base + 2 * D, 3 * D, N, hd, scale, {}, att.data() + hh * hd, D, threads, &scratch);
    }
    b.proj.Apply(att.data(), N, h.data(), threads);
    for (size_t i = 0; i < x.size(); ++i) x[i] += b.ls1.empty() ? h[i] : h[i] * b.ls1[i % D];
    RowLayerNorm(x.data(), N, D, b.norm2_w, b.norm2_b, options_.ln_eps, h.data());
    b.fc1.Apply(h.data(), N, mlp.data(), threads);
    for (float& m : mlp) m = Gelu(m, options_.gelu_tanh);
    b.fc2.Apply(mlp.data(), N, h.data(), threads);
    for (size_t i = 0; i < x.size(); ++i) x[i] += b.ls2.empty() ? h[i] : h[i] * b.ls2[i % D];
  }
  return std::vector<float>(x.begin() + static_cast<size_t>(prefix_) * D, x.end());
}

}  // namespace rwkv::vision
