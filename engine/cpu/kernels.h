// CPU kernels of the RWKV-7 step: the loops that are not GEMMs. Each works on rows of a
// [rows, width] row-major matrix. These are also the oracles for the GPU kernels.
#ifndef RWKV_ENGINE_CPU_KERNELS_H_
#define RWKV_ENGINE_CPU_KERNELS_H_

#include <cstdint>

namespace rwkv::cpu {

constexpr float kLayerNormEps = 1e-5f;
constexpr float kGroupNormEps = 64e-5f;  // 1e-5 * head_size_divisor^2 (spec section 1).

// out[r] = LayerNorm(in[r]) * w + b (biased variance). `out` may alias `in`.
void LayerNormRows(const float* in, int rows, int width, const float* w, const float* b, float* out);

// Per row, per group of `group` channels: normalise, then * w + b per channel. In place.
void GroupNormRows(float* y, int rows, int width, int group, const float* w, const float* b);

// One RWKV-7 head over `steps` tokens (spec 6.2): S is [N value rows][N key columns] and updated
// in place. Per token t, the row pointers r, d (decay), k, v, a (= -kk), b (= kk * alpha) advance
// by `stride` floats; y receives S_t r_t.
void Wkv7Head(float* S, int N, int steps, int64_t stride, const float* r, const float* d, const float* k,
              const float* v, const float* a, const float* b, float* y);

// One RWKV-5.2/6 head over `steps` tokens (spec 4.2, 5.2): S is [N key rows][N value columns],
// updated in place. Per token: y[j] = sum_i r[i] (S[i][j] + u[i] k[i] v[j]) with the old state,
// then S[i][j] = d[i] S[i][j] + k[i] v[j]. r, d, k, v, y advance by `stride` floats per token.
void Wkv6Head(float* S, int N, int steps, int64_t stride, const float* r, const float* d, const float* k,
              const float* v, const float* u, float* y);

}  // namespace rwkv::cpu

#endif  // RWKV_ENGINE_CPU_KERNELS_H_
