#include "engine/vision/projector.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/status.h"
#include "engine/vision/layers.h"

namespace rwkv::vision {
namespace {

constexpr char kWhat[] = "projector";

absl::Status Bad(const std::string& what) { return absl::InvalidArgumentError(absl::StrCat(kWhat, ": ", what)); }

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
  const bool linear = f.Find(prefix + "weight") != nullptr;
  if (!linear && f.Find(prefix + "gate.weight") == nullptr) {
    return Bad(absl::StrCat("neither ", prefix, "weight (linear) nor ", prefix, "gate.weight (gated MLP) is present"));
  }
  // The output map gives both widths; the gate must be square over the input.
  const std::string out_name = prefix + (linear ? "weight" : "o_proj.weight");
  RWKV_ASSIGN_OR_RETURN(const TensorInfo* w, GetTensor(f, kWhat, out_name, {-1, -1}));
  const int out = static_cast<int>(w->shape[0]), in = static_cast<int>(w->shape[1]);
  RWKV_ASSIGN_OR_RETURN(p.proj_, LoadDense(f, kWhat, out_name, out, in, /*bias=*/false, w));  // w: already found.
  if (linear) return p;
  RWKV_ASSIGN_OR_RETURN(p.gate_, LoadDense(f, kWhat, prefix + "gate", in, in, false));
  RWKV_ASSIGN_OR_RETURN(p.ln_w_, ReadVector(f, kWhat, prefix + "ln_v.weight", out));
  RWKV_ASSIGN_OR_RETURN(p.ln_b_, ReadVector(f, kWhat, prefix + "ln_v.bias", out));
  return p;
}

std::vector<float> Projector::Forward(std::span<const float> x, int rows, int threads) const {
  std::vector<float> in(x.begin(), x.end()), y(static_cast<size_t>(rows) * out_dim());
  if (gated()) {
    std::vector<float> g(in.size());
    gate_.Apply(in.data(), rows, g.data(), threads);
    for (size_t i = 0; i < in.size(); ++i) in[i] *= 1.0f / (1.0f + std::exp(-g[i]));
  }
  proj_.Apply(in.data(), rows, y.data(), threads);
  if (gated()) RowLayerNorm(y.data(), rows, out_dim(), ln_w_, ln_b_, 1e-5f, y.data());  // nn.LayerNorm's eps.
  return y;
}

}  // namespace rwkv::vision
