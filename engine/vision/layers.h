// Building blocks shared by the vision towers: checked tensor lookup, dense layers packed for the
// CPU GEMM, row LayerNorm, GELU. Errors name the tensor and start with the caller's `what`.
#ifndef RWKV_ENGINE_VISION_LAYERS_H_
#define RWKV_ENGINE_VISION_LAYERS_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tensor_file.h"

namespace rwkv::vision {

// `name` in `file`, floating point, of `shape` (-1: any size in that dimension).
absl::StatusOr<const TensorInfo*> GetTensor(const TensorFile& file, const std::string& what, const std::string& name,
                                            std::vector<int64_t> shape);
std::vector<float> ReadFloats(const TensorInfo& t);
absl::StatusOr<std::vector<float>> ReadVector(const TensorFile& file, const std::string& what, const std::string& name,
                                              int n);

// y = x W^T (+ b), W [n][k] packed once.
struct Dense {
  std::vector<float> packed, bias;  // bias empty: none.
  int n = 0, k = 0;
  void Apply(const float* x, int rows, float* y, int threads) const;
};
// `weight` (a tensor whose shape the caller checked, viewed as [n][k]) or name + ".weight" of
// [n][k]; name + ".bias" of [n] when `bias`.
absl::StatusOr<Dense> LoadDense(const TensorFile& file, const std::string& what, const std::string& name, int n, int k,
                                bool bias, const TensorInfo* weight = nullptr);

// Each of `rows` rows of width d: (x - mean) / sqrt(var + eps) * w + b (biased variance).
void RowLayerNorm(const float* x, int rows, int d, const std::vector<float>& w, const std::vector<float>& b, float eps,
                  float* y);

float Gelu(float x, bool tanh_form);

// The patches of a [3][S][S] image as GEMM rows for a stride = kernel = P convolution:
// [(S/P)^2][3 * P * P], row-major over the patch grid, each row in the weight's (channel, y, x) order.
std::vector<float> PatchRows(const float* pixels, int S, int P);

// Softmax attention of one head over T tokens. q, k, v: [T][hd] views with row stride `ld` (into
// a qkv buffer); scores = (q * scale) k^T, then `add_to_scores` (may be empty) adds to them, a
// softmax by row, and out[t] = sum_j p[t][j] v[j], written with row stride `ld_out`.
// softmax of one row in place: exp(x - max) / sum, the sum in double. AVX2 + FMA when the CPU has
// them (a Cephes-style exp, within 2 ulp of the correctly rounded one; exp below -87.3 is 0),
// std::exp otherwise.
void SoftmaxRow(float* row, int n);
// The same with std::exp, whatever the CPU (the fallback; benchmarks compare the two).
void SoftmaxRowScalar(float* row, int n);

struct AttentionScratch {
  std::vector<float> q, k, vt, kpack, vpack, scores, out;
};
void HeadAttention(const float* q, const float* k, const float* v, int ld, int T, int hd, float scale,
                   const std::function<void(float* scores)>& add_to_scores, float* out, int ld_out, int threads,
                   AttentionScratch* scratch);

}  // namespace rwkv::vision

#endif  // RWKV_ENGINE_VISION_LAYERS_H_
