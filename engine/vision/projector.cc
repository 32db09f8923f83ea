#include "engine/vision/projector.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/cpu/gemm.h"
#include "engine/packed_matrix.h"
#include "engine/status.h"
#include "engine/vision/layers.h"

namespace rwkv::vision {
namespace {

absl::Status Bad(const std::string& what) { return absl::InvalidArgumentError(absl::StrCat("projector: ", what)); }

absl::StatusOr<std::vector<float>> Matrix(const TensorFile& f, const std::string& name, int* n, int* k) {
  const TensorInfo* t = f.Find(name);
  if (t == nullptr) return Bad(absl::StrCat("tensor ", name, " is missing"));
  if (!IsFloat(t->dtype) || t->shape.size() != 2 || (*k > 0 && t->shape[1] != *k) || (*n > 0 && t->shape[0] != *n)) {
    return Bad(absl::StrCat("tensor ", name, " is ", t->ShapeString(), "; expected [", *n > 0 ? absl::StrCat(*n) : "out",
                            ", ", *k > 0 ? absl::StrCat(*k) : "in", "] floats"));
  }
  *n = static_cast<int>(t->shape[0]);
  *k = static_cast<int>(t->shape[1]);
  std::vector<float> rows(t->numel()), packed(PackedMatrix::Floats(*n, *k));
  CopyToFloat(*t, rows.data());
  cpu::Pack(rows.data(), *n, *k, packed.data());
  return packed;
}

}  // namespace

std::vector<float> AdaptiveAvgPool(std::span<const float> features, int grid, int channels, int out) {
  std::vector<float> y(static_cast<size_t>(out) * out * channels, 0.0f);
  for (int oy = 0; oy < out; ++oy) {
    const int y0 = oy * grid / out, y1 = ((oy + 1) * grid + out - 1) / out;
    for (int ox = 0; ox < out; ++ox) {
      const int x0 = ox * grid / out, x1 = ((ox + 1) * grid + out - 1) / out;
      float* dst = y.data() + (static_cast<size_t>(oy) * out + ox) * channels;
      for (int c = 0; c < channels; ++c) {
        double sum = 0;
        for (int yy = y0; yy < y1; ++yy) {
          for (int xx = x0; xx < x1; ++xx) sum += features[(static_cast<size_t>(yy) * grid + xx) * channels + c];
        }
        dst[c] = static_cast<float>(sum / ((y1 - y0) * (x1 - x0)));
      }
    }
  }
  return y;
}

absl::StatusOr<Projector> Projector::Load(const TensorFile& f, const std::string& prefix) {
  Projector p;
  if (f.Find(prefix + "weight") != nullptr) {
    RWKV_ASSIGN_OR_RETURN(p.proj_, Matrix(f, prefix + "weight", &p.out_, &p.in_));
    return p;
  }
  if (f.Find(prefix + "gate.weight") == nullptr) {
    return Bad(absl::StrCat("neither ", prefix, "weight (linear) nor ", prefix, "gate.weight (gated MLP) is present"));
  }
  int in = 0;
  RWKV_ASSIGN_OR_RETURN(p.gate_, Matrix(f, prefix + "gate.weight", &in, &p.in_));
  if (in != p.in_) return Bad(absl::StrCat("tensor ", prefix, "gate.weight is not square"));
  RWKV_ASSIGN_OR_RETURN(p.proj_, Matrix(f, prefix + "o_proj.weight", &p.out_, &p.in_));
  for (auto [name, dst] : {std::pair{"ln_v.weight", &p.ln_w_}, {"ln_v.bias", &p.ln_b_}}) {
    const TensorInfo* t = f.Find(prefix + name);
    if (t == nullptr || !IsFloat(t->dtype) || t->shape != std::vector<int64_t>{p.out_}) {
      return Bad(absl::StrCat("tensor ", prefix, name, " must be [", p.out_, "] floats"));
    }
    dst->resize(p.out_);
    CopyToFloat(*t, dst->data());
  }
  return p;
}

std::vector<float> Projector::Forward(std::span<const float> x, int rows, int threads) const {
  std::vector<float> in(x.begin(), x.end()), y(static_cast<size_t>(rows) * out_);
  if (gated()) {
    std::vector<float> g(in.size());
    cpu::Linear(in.data(), rows, PackedMatrix{gate_.data(), in_, in_}, g.data(), in_, false, threads,
                cpu::Activation::kSigmoid);
    for (size_t i = 0; i < in.size(); ++i) in[i] *= g[i];
  }
  cpu::Linear(in.data(), rows, PackedMatrix{proj_.data(), out_, in_}, y.data(), out_, false, threads);
  if (gated()) RowLayerNorm(y.data(), rows, out_, ln_w_, ln_b_, 1e-5f, y.data());  // nn.LayerNorm's eps.
  return y;
}

}  // namespace rwkv::vision
