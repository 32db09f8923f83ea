#include "engine/cpu/cpu_backend.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/cpu/kernels.h"
#include "engine/status.h"

namespace rwkv {
namespace {


// d = exp(-e^{-1/2} * sigmoid(w)) (spec 6.2).
const float kDecayScale = static_cast<float>(std::exp(-0.5));

inline float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace

CpuBackend::CpuBackend(std::shared_ptr<const Model> model, const BackendOptions& options)
    : model_(std::move(model)),
      pool_(options.pool_slots, model_->config().StateFloats()),
      max_tokens_(options.max_step_tokens),
      threads_(options.threads > 0 ? options.threads : omp_get_max_threads()) {
  cpu::SetMathThreads(options.threads);
  const ModelConfig& c = model_->config();
  const size_t tc = static_cast<size_t>(max_tokens_) * c.n_embd;
  for (auto* buf : {&x_, &z_, &xr_, &xw_, &xk_, &xv_, &xa_, &xg_, &r_, &k_, &v_, &d_, &alpha_, &g_, &kk_, &b_, &y_,
                    &v_first_, &head_in_}) {
    buf->assign(tc, 0.0f);
  }
  const int rank = std::max({c.lora_decay, c.lora_iclr, c.lora_value, c.lora_gate, 5 * c.lora_mix, 1});
  ones_.assign(c.n_embd, 1.0f);
  if (c.arch == Architecture::kRwkv4 || c.arch == Architecture::kRwkv5_0 || c.arch == Architecture::kRwkv5_1 ||
      c.arch == Architecture::kRwkv5_2) {
    for (int l = 0; l < c.n_layer; ++l) {
      const std::vector<float> v = KrvLayerVectors(*model_, l);
      derived_.insert(derived_.end(), v.begin(), v.end());
    }
  }
  lora_.assign(static_cast<size_t>(max_tokens_) * rank, 0.0f);
  ffn_.assign(static_cast<size_t>(max_tokens_) * c.ffn_dim, 0.0f);
  pieces_.reserve(options.pool_slots);
  done_.reserve(options.pool_slots);
  piece_row_.reserve(max_tokens_);
  row_piece_.assign(max_tokens_, 0);
  row_first_.assign(max_tokens_, 0);
}

void CpuBackend::MatMul(const float* X, int rows, const PackedMatrix& W, float* Y, int ldy, bool accumulate,
                        cpu::Activation act) const {
  cpu::Linear(X, rows, W, Y, ldy, accumulate, threads_, act);
}

void CpuBackend::LayerNorm(const float* in, int rows, const float* w, const float* b, float* out) const {
  const int C = model_->config().n_embd;
#pragma omp parallel for schedule(static) num_threads(threads_) if (rows >= kParallelRows)
  for (int r = 0; r < rows; ++r) {
    cpu::LayerNormRows(in + static_cast<int64_t>(r) * C, 1, C, w, b, out + static_cast<int64_t>(r) * C);
  }
}

float* CpuBackend::LayerState(int slot, int layer) {
  const ModelConfig& c = model_->config();
  return pool_.slot_data(slot) + layer * (c.StateFloats() / c.n_layer);
}

absl::Status CpuBackend::Forward(std::span<const BatchEntry> batch, Logits* out) {
  RWKV_RETURN_IF_ERROR(ValidateBatch(batch));
  out->Prepare(batch, model_->config().vocab);
  done_.assign(batch.size(), 0);
  while (true) {
    // Fill one step with as many pending tokens as the scratch holds, entry by entry.
    pieces_.clear();
    int used = 0;
    for (size_t e = 0; e < batch.size() && used < max_tokens_; ++e) {
      const int remaining = static_cast<int>(batch[e].tokens.size()) - done_[e];
      if (remaining == 0) continue;
      const int take = std::min(remaining, max_tokens_ - used);
      pieces_.push_back({static_cast<int>(e), done_[e], take});
      used += take;
    }
    if (pieces_.empty()) break;
    Step(batch, pieces_, out);
    for (const Piece& p : pieces_) done_[p.entry] += p.count;
  }
  return absl::OkStatus();
}

void CpuBackend::Step(std::span<const BatchEntry> batch, std::span<const Piece> pieces, Logits* out) {
  const ModelConfig& c = model_->config();
  const int C = c.n_embd;
  int rows = 0;
  piece_row_.clear();
  for (size_t pi = 0; pi < pieces.size(); ++pi) {
    const Piece& p = pieces[pi];
    piece_row_.push_back(rows);
    for (int t = 0; t < p.count; ++t, ++rows) {
      row_piece_[rows] = static_cast<int>(pi);
      row_first_[rows] = t == 0;
      const BatchEntry& be = batch[p.entry];
      float* x = x_.data() + static_cast<size_t>(rows) * C;
      if (!be.rows.empty() && be.rows[p.begin + t] != nullptr) {
        model_->ApplyLn0(be.rows[p.begin + t], x);  // An image row: ln0 as the table had it.
      } else {
        std::memcpy(x, model_->emb() + static_cast<size_t>(be.tokens[p.begin + t]) * C, C * sizeof(float));
      }
    }
  }
  const bool v6 = c.arch == Architecture::kRwkv6, v4 = c.arch == Architecture::kRwkv4, v5 = !v4 && !derived_.empty();
  for (int l = 0; l < c.n_layer; ++l) {
    if (v4) {
      const Rwkv4Layer& w = model_->layer4(l);
      TimeMix4(l, batch, pieces, rows);
      ChannelMixKRV(l, batch, pieces, rows, w.ln2_w, w.ln2_b, Derived(l, kKrvFfnMixK), Derived(l, kKrvFfnMixR), w.ffn_key,
                    w.ffn_receptance, w.ffn_value);
    } else if (v6) {
      const Rwkv6Layer& w = model_->layer6(l);
      TimeMix6(l, batch, pieces, rows);
      ChannelMixKRV(l, batch, pieces, rows, w.ln2_w, w.ln2_b, w.ffn_maa_k, w.ffn_maa_r, w.ffn_key, w.ffn_receptance,
                    w.ffn_value);
    } else if (v5) {
      const Rwkv5Layer& w = model_->layer5(l);
      TimeMix5(l, batch, pieces, rows);
      ChannelMixKRV(l, batch, pieces, rows, w.ln2_w, w.ln2_b, Derived(l, kKrvFfnMixK), Derived(l, kKrvFfnMixR), w.ffn_key, w.ffn_receptance,
                    w.ffn_value);
    } else {
      TimeMix(l, batch, pieces, rows);
      ChannelMix(l, batch, pieces, rows);
    }
  }
  Head(batch, pieces, out);
}

void CpuBackend::TokenShift(int l, std::span<const BatchEntry> batch, std::span<const Piece> pieces, int rows,
                            int64_t state_offset, const float* const* mixes, float* const* outs, int n_mix) {
  const int C = model_->config().n_embd;
  // Each row mixes with the previous token of its own sequence: the slot's saved row for the first
  // row of a piece. The slots keep each piece's last normalised row afterwards.
#pragma omp parallel for schedule(static) num_threads(threads_) if (rows >= kParallelRows)
  for (int row = 0; row < rows; ++row) {
    const float* cur = z_.data() + static_cast<int64_t>(row) * C;
    const float* prev =
        row_first_[row] ? LayerState(batch[pieces[row_piece_[row]].entry].slot, l) + state_offset : cur - C;
    const int64_t o = static_cast<int64_t>(row) * C;
    for (int m = 0; m < n_mix; ++m) {
      const float* mix = mixes[m];
      float* out = outs[m] + o;
#pragma omp simd
      for (int i = 0; i < C; ++i) out[i] = cur[i] + (prev[i] - cur[i]) * mix[i];
    }
  }
  int row = 0;
  for (const Piece& p : pieces) {
    row += p.count;
    std::memcpy(LayerState(batch[p.entry].slot, l) + state_offset, z_.data() + static_cast<int64_t>(row - 1) * C,
                C * sizeof(float));
  }
}

void CpuBackend::TimeMix(int l, std::span<const BatchEntry> batch, std::span<const Piece> pieces, int rows) {
  const ModelConfig& c = model_->config();
  const Rwkv7Layer& w = model_->layer(l);
  const int C = c.n_embd, H = c.n_head, N = c.head_size;
  const bool par = rows >= kParallelRows;

  LayerNorm(x_.data(), rows, w.ln1_w, w.ln1_b, z_.data());
  const float* mixes[] = {w.x_r, w.x_w, w.x_k, w.x_v, w.x_a, w.x_g};
  float* outs[] = {xr_.data(), xw_.data(), xk_.data(), xv_.data(), xa_.data(), xg_.data()};
  TokenShift(l, batch, pieces, rows, /*state_offset=*/0, mixes, outs, 6);

  MatMul(xr_.data(), rows, w.receptance, r_.data(), C, false);
  MatMul(xk_.data(), rows, w.key, k_.data(), C, false);
  MatMul(xv_.data(), rows, w.value, v_.data(), C, false);
  MatMul(xw_.data(), rows, w.w1, lora_.data(), c.lora_decay, false, cpu::Activation::kTanh);
  MatMul(lora_.data(), rows, w.w2, d_.data(), C, false);
  MatMul(xa_.data(), rows, w.a1, lora_.data(), c.lora_iclr, false);
  MatMul(lora_.data(), rows, w.a2, alpha_.data(), C, false);
  MatMul(xg_.data(), rows, w.g1, lora_.data(), c.lora_gate, false, cpu::Activation::kSigmoid);
  MatMul(lora_.data(), rows, w.g2, g_.data(), C, false);
  if (l == 0) {
    std::memcpy(v_first_.data(), v_.data(), static_cast<size_t>(rows) * C * sizeof(float));
  } else {
    MatMul(xv_.data(), rows, w.v1, lora_.data(), c.lora_value, false);
    MatMul(lora_.data(), rows, w.v2, b_.data(), C, false);  // b_ as scratch for the mix gate.
  }

  // Per row: value residual, decay, in-context rate, kk (L2-normalised per head from k before the
  // rate adjustment, spec pitfall 7), a = -kk, b = kk * alpha, adjusted k.
#pragma omp parallel for schedule(static) num_threads(threads_) if (par)
  for (int row = 0; row < rows; ++row) {
    const int64_t o = static_cast<int64_t>(row) * C;
    float *v = v_.data() + o, *d = d_.data() + o, *al = alpha_.data() + o, *k = k_.data() + o;
    float *kk = kk_.data() + o, *b = b_.data() + o;
    if (l > 0) {
      const float* vf = v_first_.data() + o;
      for (int i = 0; i < C; ++i) v[i] += (vf[i] - v[i]) * Sigmoid(w.v0[i] + b[i]);
    }
    for (int i = 0; i < C; ++i) {
      d[i] = std::exp(-kDecayScale * Sigmoid(w.w0[i] + d[i]));
      al[i] = Sigmoid(w.a0[i] + al[i]);
      kk[i] = k[i] * w.k_k[i];
    }
    for (int h0 = 0; h0 < C; h0 += N) {
      float ss = 0.0f;
      for (int j = h0; j < h0 + N; ++j) ss += kk[j] * kk[j];
      const float inv = 1.0f / std::max(std::sqrt(ss), 1e-12f);
      for (int j = h0; j < h0 + N; ++j) {
        const float kn = kk[j] * inv;
        kk[j] = -kn;
        b[j] = kn * al[j];
        k[j] *= 1.0f + (al[j] - 1.0f) * w.k_a[j];
      }
    }
  }
  // The recurrence: sequential over each piece's tokens, independent across pieces and heads.
  ForEachPieceHead(static_cast<int>(pieces.size()), H, rows, [&](int pi, int h) {
    const Piece& p = pieces[pi];
    float* S = LayerState(batch[p.entry].slot, l) + C + static_cast<int64_t>(h) * N * N;
    const int64_t hc = static_cast<int64_t>(piece_row_[pi]) * C + h * N;
    cpu::Wkv7Head(S, N, p.count, C, r_.data() + hc, d_.data() + hc, k_.data() + hc, v_.data() + hc, kk_.data() + hc,
                  b_.data() + hc, y_.data() + hc);
  });
#pragma omp parallel for schedule(static) num_threads(threads_) if (par)
  for (int row = 0; row < rows; ++row) {
    const int64_t o = static_cast<int64_t>(row) * C;
    cpu::GroupNormRows(y_.data() + o, 1, C, N, w.ln_x_w, w.ln_x_b);
    for (int h0 = 0; h0 < C; h0 += N) {
      const float *r = r_.data() + o + h0, *k = k_.data() + o + h0, *v = v_.data() + o + h0, *g = g_.data() + o + h0;
      float* y = y_.data() + o + h0;
      float bonus = 0.0f;
      for (int j = 0; j < N; ++j) bonus += r[j] * k[j] * w.r_k[h0 + j];
      for (int j = 0; j < N; ++j) y[j] = (y[j] + bonus * v[j]) * g[j];
    }
  }
  MatMul(y_.data(), rows, w.output, x_.data(), C, true);
}

void CpuBackend::ChannelMix(int l, std::span<const BatchEntry> batch, std::span<const Piece> pieces, int rows) {
  const ModelConfig& c = model_->config();
  const Rwkv7Layer& w = model_->layer(l);
  const int C = c.n_embd;
  LayerNorm(x_.data(), rows, w.ln2_w, w.ln2_b, z_.data());
  const float* mixes[] = {w.ffn_x_k};
  float* outs[] = {xk_.data()};
  TokenShift(l, batch, pieces, rows, /*state_offset=*/C + int64_t{c.n_head} * c.head_size * c.head_size, mixes, outs,
             1);
  MatMul(xk_.data(), rows, w.ffn_key, ffn_.data(), c.ffn_dim, false, cpu::Activation::kReluSquare);
  MatMul(ffn_.data(), rows, w.ffn_value, x_.data(), C, true);
}

void CpuBackend::TimeMix6(int l, std::span<const BatchEntry> batch, std::span<const Piece> pieces, int rows) {
  const ModelConfig& c = model_->config();
  const Rwkv6Layer& w = model_->layer6(l);
  const int C = c.n_embd, Dm = c.lora_mix, Dd = c.lora_decay;
  const bool par = rows >= kParallelRows;
  LayerNorm(x_.data(), rows, w.ln1_w, w.ln1_b, z_.data());
  // One token-shift pass: xx = z + (prev - z) * maa_x, and prev itself (mix of ones).
  float* prev = kk_.data();
  const float* mixes[] = {w.maa_x, ones_.data()};
  float* outs[] = {xa_.data(), prev};
  TokenShift(l, batch, pieces, rows, /*state_offset=*/0, mixes, outs, 2);
  // Data-dependent mixes (spec 5.2): h = tanh(xx A1), m_j = h_j A2[j], x_j = z + (prev - z)(mu_j + m_j).
  MatMul(xa_.data(), rows, w.maa_w1, lora_.data(), 5 * Dm, false, cpu::Activation::kTanh);
  const float* mu[] = {w.maa_w, w.maa_k, w.maa_v, w.maa_r, w.maa_g};
  float* dst[] = {xw_.data(), xk_.data(), xv_.data(), xr_.data(), xg_.data()};
  float* hj = alpha_.data();  // [rows, Dm] compact slice of h.
  float* m = b_.data();       // [rows, C]
  for (int j = 0; j < 5; ++j) {
    for (int row = 0; row < rows; ++row) {
      std::memcpy(hj + static_cast<int64_t>(row) * Dm, lora_.data() + static_cast<int64_t>(row) * 5 * Dm + j * Dm,
                  Dm * sizeof(float));
    }
    MatMul(hj, rows, w.maa_w2[j], m, C, false);
#pragma omp parallel for schedule(static) num_threads(threads_) if (par)
    for (int row = 0; row < rows; ++row) {
      const int64_t o = static_cast<int64_t>(row) * C;
      const float *zr = z_.data() + o, *pr = prev + o, *mr = m + o;
      float* out = dst[j] + o;
      for (int i = 0; i < C; ++i) out[i] = zr[i] + (pr[i] - zr[i]) * (mu[j][i] + mr[i]);
    }
  }
  MatMul(xr_.data(), rows, w.receptance, r_.data(), C, false);
  MatMul(xk_.data(), rows, w.key, k_.data(), C, false);
  MatMul(xv_.data(), rows, w.value, v_.data(), C, false);
  MatMul(xg_.data(), rows, w.gate, g_.data(), C, false);
  MatMul(xw_.data(), rows, w.decay_w1, lora_.data(), Dd, false, cpu::Activation::kTanh);
  MatMul(lora_.data(), rows, w.decay_w2, d_.data(), C, false);
#pragma omp parallel for schedule(static) num_threads(threads_) if (par)
  for (int row = 0; row < rows; ++row) {
    const int64_t o = static_cast<int64_t>(row) * C;
    float *d = d_.data() + o, *g = g_.data() + o;
    for (int i = 0; i < C; ++i) {
      d[i] = std::exp(-std::exp(w.time_decay[i] + d[i]));
      g[i] = g[i] * Sigmoid(g[i]);  // silu
    }
  }
  Wkv6Block(l, batch, pieces, rows, w.faaaa, w.ln_x_w, w.ln_x_b, /*gate=*/true);
  MatMul(y_.data(), rows, w.output, x_.data(), C, true);
}

void CpuBackend::Wkv6Block(int l, std::span<const BatchEntry> batch, std::span<const Piece> pieces, int rows,
                           const float* u, const float* ln_x_w, const float* ln_x_b, bool gate) {
  const ModelConfig& c = model_->config();
  const int C = c.n_embd, H = c.n_head, N = c.head_size;
  const bool par = rows >= kParallelRows;
  ForEachPieceHead(static_cast<int>(pieces.size()), H, rows, [&](int pi, int h) {
    const Piece& p = pieces[pi];
    float* S = LayerState(batch[p.entry].slot, l) + C + static_cast<int64_t>(h) * N * N;
    const int64_t hc = static_cast<int64_t>(piece_row_[pi]) * C + h * N;
    cpu::Wkv6Head(S, N, p.count, C, r_.data() + hc, d_.data() + hc, k_.data() + hc, v_.data() + hc, u + h * N,
                  y_.data() + hc);
  });
#pragma omp parallel for schedule(static) num_threads(threads_) if (par)
  for (int row = 0; row < rows; ++row) {
    const int64_t o = static_cast<int64_t>(row) * C;
    cpu::GroupNormRows(y_.data() + o, 1, C, N, ln_x_w, ln_x_b);
    if (gate) {
      for (int i = 0; i < C; ++i) y_[o + i] *= g_[o + i];
    }
  }
}

void CpuBackend::TimeMix4(int l, std::span<const BatchEntry> batch, std::span<const Piece> pieces, int rows) {
  const ModelConfig& c = model_->config();
  const Rwkv4Layer& w = model_->layer4(l);
  const int C = c.n_embd;
  LayerNorm(x_.data(), rows, w.ln1_w, w.ln1_b, z_.data());
  const float* mixes[] = {Derived(l, kKrvMixK), Derived(l, kKrvMixV), Derived(l, kKrvMixR)};
  float* outs[] = {xk_.data(), xv_.data(), xr_.data()};
  TokenShift(l, batch, pieces, rows, /*state_offset=*/0, mixes, outs, 3);
  MatMul(xr_.data(), rows, w.receptance, r_.data(), C, false, cpu::Activation::kSigmoid);
  MatMul(xk_.data(), rows, w.key, k_.data(), C, false);
  MatMul(xv_.data(), rows, w.value, v_.data(), C, false);
  // The recurrence with the max trick (spec 3.2), sequential over a piece's tokens, independent
  // per channel. State: aa, bb, pp after s_att.
  const float *decay = Derived(l, kKrvDecay), *first = Derived(l, kKrvBonus);
  constexpr int kBlock = 64;
  const int blocks = (C + kBlock - 1) / kBlock;
  const int tasks = static_cast<int>(pieces.size()) * blocks;
#pragma omp parallel for schedule(static) num_threads(threads_) if (rows >= kParallelRows && tasks > 1)
  for (int t = 0; t < tasks; ++t) {
    const Piece& p = pieces[t / blocks];
    const int i0 = (t % blocks) * kBlock, i1 = std::min(C, i0 + kBlock);
    float* st = LayerState(batch[p.entry].slot, l);
    float *aa = st + C, *bb = st + 2 * C, *pp = st + 3 * C;
    for (int step = 0; step < p.count; ++step) {
      const int64_t o = static_cast<int64_t>(piece_row_[t / blocks] + step) * C;
      for (int i = i0; i < i1; ++i) {
        const float k = k_[o + i], v = v_[o + i], u = first[i], wd = decay[i];
        float q = std::max(pp[i], u + k);
        float e1 = std::exp(pp[i] - q), e2 = std::exp(u + k - q);
        y_[o + i] = r_[o + i] * (e1 * aa[i] + e2 * v) / (e1 * bb[i] + e2);
        q = std::max(pp[i] + wd, k);
        e1 = std::exp(pp[i] + wd - q);
        e2 = std::exp(k - q);
        aa[i] = e1 * aa[i] + e2 * v;
        bb[i] = e1 * bb[i] + e2;
        pp[i] = q;
      }
    }
  }
  MatMul(y_.data(), rows, w.output, x_.data(), C, true);
}

void CpuBackend::TimeMix5(int l, std::span<const BatchEntry> batch, std::span<const Piece> pieces, int rows) {
  const ModelConfig& c = model_->config();
  const Rwkv5Layer& w = model_->layer5(l);
  const int C = c.n_embd;
  const bool par = rows >= kParallelRows, gated = w.mix_g != nullptr;
  LayerNorm(x_.data(), rows, w.ln1_w, w.ln1_b, z_.data());
  const float* mixes[] = {Derived(l, kKrvMixK), Derived(l, kKrvMixV), Derived(l, kKrvMixR), Derived(l, kKrvMixG)};
  float* outs[] = {xk_.data(), xv_.data(), xr_.data(), xg_.data()};
  TokenShift(l, batch, pieces, rows, /*state_offset=*/0, mixes, outs, gated ? 4 : 3);
  MatMul(xr_.data(), rows, w.receptance, r_.data(), C, false);
  MatMul(xk_.data(), rows, w.key, k_.data(), C, false);
  MatMul(xv_.data(), rows, w.value, v_.data(), C, false);
  if (gated) MatMul(xg_.data(), rows, w.gate, g_.data(), C, false);
  const float* decay = Derived(l, kKrvDecay);
#pragma omp parallel for schedule(static) num_threads(threads_) if (par)
  for (int row = 0; row < rows; ++row) {
    const int64_t o = static_cast<int64_t>(row) * C;
    std::memcpy(d_.data() + o, decay, C * sizeof(float));
    if (gated) {
      for (int i = 0; i < C; ++i) g_[o + i] *= Sigmoid(g_[o + i]);  // silu
    }
  }
  Wkv6Block(l, batch, pieces, rows, Derived(l, kKrvBonus), w.ln_x_w, w.ln_x_b, gated);
  MatMul(y_.data(), rows, w.output, x_.data(), C, true);
}

void CpuBackend::ChannelMixKRV(int l, std::span<const BatchEntry> batch, std::span<const Piece> pieces, int rows,
                               const float* ln_w, const float* ln_b, const float* mix_k, const float* mix_r,
                               const PackedMatrix& key, const PackedMatrix& receptance, const PackedMatrix& value) {
  const ModelConfig& c = model_->config();
  const int C = c.n_embd;
  LayerNorm(x_.data(), rows, ln_w, ln_b, z_.data());
  const float* mixes[] = {mix_k, mix_r};
  float* outs[] = {xk_.data(), xr_.data()};
  TokenShift(l, batch, pieces, rows, /*state_offset=*/c.StateFloats() / c.n_layer - C, mixes, outs, 2);
  MatMul(xk_.data(), rows, key, ffn_.data(), c.ffn_dim, false, cpu::Activation::kReluSquare);
  MatMul(ffn_.data(), rows, value, y_.data(), C, false);
  MatMul(xr_.data(), rows, receptance, r_.data(), C, false, cpu::Activation::kSigmoid);
#pragma omp parallel for schedule(static) num_threads(threads_) if (rows >= kParallelRows)
  for (int row = 0; row < rows; ++row) {
    const int64_t o = static_cast<int64_t>(row) * C;
    for (int i = 0; i < C; ++i) x_[o + i] += r_[o + i] * y_[o + i];
  }
}

void CpuBackend::Head(std::span<const BatchEntry> batch, std::span<const Piece> pieces, Logits* out) {
  const ModelConfig& c = model_->config();
  const int C = c.n_embd, V = c.vocab;
  // Gather the rows whose logits are wanted, normalised, then run the head GEMM over each run of
  // rows that are consecutive in `out` (one GEMM for a plain decode batch).
  int row = 0, gathered = 0, run_start = 0, run_dest = -1, next_dest = -1;
  auto flush = [&]() {
    if (gathered > run_start) {
      MatMul(head_in_.data() + static_cast<int64_t>(run_start) * C, gathered - run_start, model_->head(),
             out->MutableRow(0, 0) + static_cast<int64_t>(run_dest) * V, V, false);
    }
    run_start = gathered;
  };
  for (const Piece& p : pieces) {
    const BatchEntry& e = batch[p.entry];
    const bool last_piece = p.begin + p.count == static_cast<int>(e.tokens.size());
    for (int t = 0; t < p.count; ++t, ++row) {
      if (!e.all_logits && !(last_piece && t == p.count - 1)) continue;
      const int dest = out->first_row(p.entry) + (e.all_logits ? p.begin + t : 0);
      if (dest != next_dest) {
        flush();
        run_dest = dest;
      }
      cpu::LayerNormRows(x_.data() + static_cast<int64_t>(row) * C, 1, C, model_->ln_out_w(), model_->ln_out_b(),
                         head_in_.data() + static_cast<int64_t>(gathered) * C);
      ++gathered;
      next_dest = dest + 1;
    }
  }
  flush();
}

}  // namespace rwkv
