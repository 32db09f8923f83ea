#include "engine/vision/sam.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/status.h"

namespace rwkv::vision {
namespace {

constexpr char kWhat[] = "SAM tower";
constexpr float kEps = 1e-6f;  // Its LayerNorms and LayerNorm2d's.

absl::Status Bad(const std::string& what) { return absl::InvalidArgumentError(absl::StrCat(kWhat, ": ", what)); }

// 3x3 patches with zero padding 1 of a [G][G][C] grid: rows [G*G][C*9] in (c, ky, kx) order.
std::vector<float> Im2Col3x3(const float* x, int G, int C) {
  std::vector<float> cols(static_cast<size_t>(G) * G * C * 9, 0.0f);
  for (int y = 0; y < G; ++y) {
    for (int xx = 0; xx < G; ++xx) {
      float* row = cols.data() + (static_cast<size_t>(y) * G + xx) * C * 9;
      for (int ky = 0; ky < 3; ++ky) {
        for (int kx = 0; kx < 3; ++kx) {
          const int sy = y + ky - 1, sx = xx + kx - 1;
          if (sy < 0 || sy >= G || sx < 0 || sx >= G) continue;
          const float* src = x + (static_cast<size_t>(sy) * G + sx) * C;
          for (int c = 0; c < C; ++c) row[c * 9 + ky * 3 + kx] = src[c];
        }
      }
    }
  }
  return cols;
}

}  // namespace

absl::StatusOr<SamTower> SamTower::Load(const TensorFile& f, const std::string& prefix) {
  SamTower s;
  RWKV_ASSIGN_OR_RETURN(const TensorInfo* pw, GetTensor(f, kWhat, prefix + "patch_embed.proj.weight", {-1, 3, -1, -1}));
  s.dim_ = static_cast<int>(pw->shape[0]);
  s.patch_ = static_cast<int>(pw->shape[2]);
  if (pw->shape[3] != s.patch_ || s.dim_ <= 0 || s.patch_ <= 0) return Bad("patches must be square");
  const int D = s.dim_;
  RWKV_ASSIGN_OR_RETURN(s.patch_embed_,
                        LoadDense(f, kWhat, prefix + "patch_embed.proj", D, 3 * s.patch_ * s.patch_, true, pw));
  RWKV_ASSIGN_OR_RETURN(const TensorInfo* pos, GetTensor(f, kWhat, prefix + "pos_embed", {1, -1, -1, D}));
  s.grid_ = static_cast<int>(pos->shape[1]);
  if (pos->shape[2] != s.grid_ || s.grid_ % 2 != 0) {
    return Bad(absl::StrCat("tensor ", prefix, "pos_embed is ", pos->ShapeString(), "; the grid must be square and even"));
  }
  s.pos_ = ReadFloats(*pos);
  for (int l = 0; f.Find(absl::StrCat(prefix, "blocks.", l, ".norm1.weight")) != nullptr; ++l) {
    const std::string b = absl::StrCat(prefix, "blocks.", l, ".");
    Block blk;
    RWKV_ASSIGN_OR_RETURN(const TensorInfo* rh, GetTensor(f, kWhat, b + "attn.rel_pos_h", {-1, -1}));
    const int hd = static_cast<int>(rh->shape[1]);
    const int64_t len = rh->shape[0];
    if (hd <= 0 || D % hd != 0 || len % 2 == 0 || (len + 1) / 2 > s.grid_) {
      return Bad(absl::StrCat("tensor ", b, "attn.rel_pos_h is ", rh->ShapeString(), ": not [2 S - 1, head_dim] for a ",
                              "window S <= ", s.grid_, " and a head_dim dividing ", D));
    }
    if (s.heads_ == 0) s.heads_ = D / hd;
    if (D / hd != s.heads_) return Bad(absl::StrCat("block ", l, " has another head size"));
    blk.window = static_cast<int>((len + 1) / 2);
    blk.rel_h = ReadFloats(*rh);
    RWKV_ASSIGN_OR_RETURN(const TensorInfo* rw, GetTensor(f, kWhat, b + "attn.rel_pos_w", {len, hd}));
    blk.rel_w = ReadFloats(*rw);
    RWKV_ASSIGN_OR_RETURN(blk.norm1_w, ReadVector(f, kWhat, b + "norm1.weight", D));
    RWKV_ASSIGN_OR_RETURN(blk.norm1_b, ReadVector(f, kWhat, b + "norm1.bias", D));
    RWKV_ASSIGN_OR_RETURN(blk.norm2_w, ReadVector(f, kWhat, b + "norm2.weight", D));
    RWKV_ASSIGN_OR_RETURN(blk.norm2_b, ReadVector(f, kWhat, b + "norm2.bias", D));
    RWKV_ASSIGN_OR_RETURN(blk.qkv, LoadDense(f, kWhat, b + "attn.qkv", 3 * D, D, true));
    RWKV_ASSIGN_OR_RETURN(blk.proj, LoadDense(f, kWhat, b + "attn.proj", D, D, true));
    RWKV_ASSIGN_OR_RETURN(const TensorInfo* lin1, GetTensor(f, kWhat, b + "mlp.lin1.weight", {-1, D}));
    const int mlp = static_cast<int>(lin1->shape[0]);
    RWKV_ASSIGN_OR_RETURN(blk.lin1, LoadDense(f, kWhat, b + "mlp.lin1", mlp, D, true));
    RWKV_ASSIGN_OR_RETURN(blk.lin2, LoadDense(f, kWhat, b + "mlp.lin2", D, mlp, true));
    s.blocks_.push_back(std::move(blk));
  }
  if (s.blocks_.empty()) return Bad(absl::StrCat("no blocks under ", prefix, "blocks."));
  RWKV_ASSIGN_OR_RETURN(const TensorInfo* n0, GetTensor(f, kWhat, prefix + "neck.0.weight", {-1, D, 1, 1}));
  s.neck_ = static_cast<int>(n0->shape[0]);
  const int O = s.neck_;
  RWKV_ASSIGN_OR_RETURN(s.neck0_, LoadDense(f, kWhat, prefix + "neck.0", O, D, false, n0));
  RWKV_ASSIGN_OR_RETURN(const TensorInfo* n2, GetTensor(f, kWhat, prefix + "neck.2.weight", {O, O, 3, 3}));
  RWKV_ASSIGN_OR_RETURN(s.neck2_, LoadDense(f, kWhat, prefix + "neck.2", O, O * 9, false, n2));
  RWKV_ASSIGN_OR_RETURN(s.ln_a_w_, ReadVector(f, kWhat, prefix + "neck.1.weight", O));
  RWKV_ASSIGN_OR_RETURN(s.ln_a_b_, ReadVector(f, kWhat, prefix + "neck.1.bias", O));
  RWKV_ASSIGN_OR_RETURN(s.ln_b_w_, ReadVector(f, kWhat, prefix + "neck.3.weight", O));
  RWKV_ASSIGN_OR_RETURN(s.ln_b_b_, ReadVector(f, kWhat, prefix + "neck.3.bias", O));
  return s;
}

void SamTower::Attend(const Block& b, const float* in, int S, float* out, int threads) const {
  const int D = dim_, T = S * S, hd = D / heads_;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<float> qkv(static_cast<size_t>(T) * 3 * D), att(static_cast<size_t>(T) * D);
  b.qkv.Apply(in, T, qkv.data(), threads);
  AttentionScratch scratch;
  std::vector<float> rel_h(static_cast<size_t>(T) * S), rel_w(static_cast<size_t>(T) * S);
  for (int h = 0; h < heads_; ++h) {
    const float* base = qkv.data() + h * hd;
    // Decomposed relative positions, on the unscaled q: for query (qy, qx) and key (ky, kx),
    // q . rel_pos_h[qy - ky + S - 1] + q . rel_pos_w[qx - kx + S - 1].
#pragma omp parallel for schedule(static) num_threads(threads) if (T >= 16)
    for (int t = 0; t < T; ++t) {
      const float* q = base + static_cast<size_t>(t) * 3 * D;
      const int qy = t / S, qx = t % S;
      for (int k = 0; k < S; ++k) {
        const float* eh = b.rel_h.data() + static_cast<size_t>(qy - k + S - 1) * hd;
        const float* ew = b.rel_w.data() + static_cast<size_t>(qx - k + S - 1) * hd;
        float sh = 0, sw = 0;
        for (int c = 0; c < hd; ++c) sh += q[c] * eh[c], sw += q[c] * ew[c];
        rel_h[static_cast<size_t>(t) * S + k] = sh;
        rel_w[static_cast<size_t>(t) * S + k] = sw;
      }
    }
    auto add = [&](float* scores) {
#pragma omp parallel for schedule(static) num_threads(threads) if (T >= 16)
      for (int t = 0; t < T; ++t) {
        float* row = scores + static_cast<size_t>(t) * T;
        for (int j = 0; j < T; ++j) row[j] += rel_h[static_cast<size_t>(t) * S + j / S] + rel_w[static_cast<size_t>(t) * S + j % S];
      }
    };
    HeadAttention(base, base + D, base + 2 * D, 3 * D, T, hd, scale, add, att.data() + h * hd, D, threads, &scratch);
  }
  b.proj.Apply(att.data(), T, out, threads);
}

absl::StatusOr<std::vector<float>> SamTower::Forward(std::span<const float> pixels, int threads) const {
  const int G = grid_, P = patch_, D = dim_, S = image_size(), N = G * G;
  if (pixels.size() != static_cast<size_t>(3) * S * S) {
    return Bad(absl::StrCat("pixels: ", pixels.size(), " values; expected 3x", S, "x", S));
  }
  const std::vector<float> cols = PatchRows(pixels.data(), S, P);
  std::vector<float> x(static_cast<size_t>(N) * D);  // [G][G][D], channels last.
  patch_embed_.Apply(cols.data(), N, x.data(), threads);
  for (size_t i = 0; i < x.size(); ++i) x[i] += pos_[i];

  std::vector<float> h(x.size()), mlp;
  for (const Block& b : blocks_) {
    RowLayerNorm(x.data(), N, D, b.norm1_w, b.norm1_b, kEps, h.data());
    const int W = b.window;
    if (W == G) {  // Global attention.
      std::vector<float> a(x.size());
      Attend(b, h.data(), G, a.data(), threads);
      for (size_t i = 0; i < x.size(); ++i) x[i] += a[i];
    } else {  // Windows of W x W over the grid zero-padded to a multiple of W (after the norm).
      const int nw = (G + W - 1) / W;
      std::vector<float> win(static_cast<size_t>(W) * W * D), a(win.size());
      for (int wy = 0; wy < nw; ++wy) {
        for (int wx = 0; wx < nw; ++wx) {
          std::fill(win.begin(), win.end(), 0.0f);
          for (int i = 0; i < W; ++i) {
            for (int j = 0; j < W; ++j) {
              const int y = wy * W + i, xx = wx * W + j;
              if (y >= G || xx >= G) continue;
              std::copy_n(h.data() + (static_cast<size_t>(y) * G + xx) * D, D, win.data() + (static_cast<size_t>(i) * W + j) * D);
            }
          }
          Attend(b, win.data(), W, a.data(), threads);
          for (int i = 0; i < W; ++i) {
            for (int j = 0; j < W; ++j) {
              const int y = wy * W + i, xx = wx * W + j;
              if (y >= G || xx >= G) continue;
              float* dst = x.data() + (static_cast<size_t>(y) * G + xx) * D;
              const float* src = a.data() + (static_cast<size_t>(i) * W + j) * D;
              for (int c = 0; c < D; ++c) dst[c] += src[c];
            }
          }
        }
      }
    }
    RowLayerNorm(x.data(), N, D, b.norm2_w, b.norm2_b, kEps, h.data());
    mlp.resize(static_cast<size_t>(N) * b.lin1.n);
    b.lin1.Apply(h.data(), N, mlp.data(), threads);
    for (float& m : mlp) m = Gelu(m, false);
    b.lin2.Apply(mlp.data(), N, h.data(), threads);
    for (size_t i = 0; i < x.size(); ++i) x[i] += h[i];
  }
  // Neck: per position, 1x1 conv and LayerNorm2d (over channels); 3x3 conv and LayerNorm2d.
  const int O = neck_;
  std::vector<float> n1(static_cast<size_t>(N) * O), n2(n1.size());
  neck0_.Apply(x.data(), N, n1.data(), threads);
  RowLayerNorm(n1.data(), N, O, ln_a_w_, ln_a_b_, kEps, n1.data());
  const std::vector<float> c3 = Im2Col3x3(n1.data(), G, O);
  neck2_.Apply(c3.data(), N, n2.data(), threads);
  RowLayerNorm(n2.data(), N, O, ln_b_w_, ln_b_b_, kEps, n2.data());
  // Space-to-depth: token (y, x) of the half grid, channel c * 4 + dy * 2 + dx.
  const int H2 = G / 2;
  std::vector<float> out(static_cast<size_t>(H2) * H2 * 4 * O);
  for (int y = 0; y < H2; ++y) {
    for (int xx = 0; xx < H2; ++xx) {
      float* dst = out.data() + (static_cast<size_t>(y) * H2 + xx) * 4 * O;
      for (int dy = 0; dy < 2; ++dy) {
        for (int dx = 0; dx < 2; ++dx) {
          const float* src = n2.data() + (static_cast<size_t>(2 * y + dy) * G + 2 * xx + dx) * O;
          for (int c = 0; c < O; ++c) dst[c * 4 + dy * 2 + dx] = src[c];
        }
      }
    }
  }
  return out;
}

}  // namespace rwkv::vision
