#include <cstdint>

#include "absl/strings/str_format.h"
#include "engine/cuda/gemv.h"

namespace rwkv::cuda {

absl::Status PlanGemv(GemvBatch* b, int elem_bytes) {
  if (b->jobs < 1 || b->jobs > kGemvMaxJobs) {
    return absl::InvalidArgumentError(absl::StrFormat("gemv: %d jobs; 1 to %d", b->jobs, kGemvMaxJobs));
  }
  if (elem_bytes != 2 && elem_bytes != 4) {
    return absl::InvalidArgumentError(absl::StrFormat("gemv: %d-byte elements; 2 or 4", elem_bytes));
  }
  const int per_vector = 16 / elem_bytes;
  int blocks = 0;
  for (int i = 0; i < b->jobs; ++i) {
    GemvJob& j = b->job[i];
    if (j.x == nullptr || j.w == nullptr || j.y == nullptr || j.n < 1 || j.k < 1 || j.ldx < j.k || j.ldy < j.n) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "gemv job %d: n %d, k %d, ldx %d, ldy %d (need n, k >= 1, ldx >= k, ldy >= n, no null pointer)", i, j.n, j.k,
          j.ldx, j.ldy));
    }
    if (j.out == GemvOut::kF32Add && j.act != Act::kNone) {
      return absl::InvalidArgumentError(absl::StrFormat("gemv job %d: an activation on an accumulated output", i));
    }
    // 16-byte loads when every row of x and w starts on a 16-byte boundary and holds whole vectors.
    const bool aligned = reinterpret_cast<uintptr_t>(j.x) % 16 == 0 && reinterpret_cast<uintptr_t>(j.w) % 16 == 0;
    j.vec = aligned && j.k % per_vector == 0 && j.ldx % per_vector == 0 ? 1 : 0;
    // Enough threads per output that each loads the row once (one vector or element per lane and
    // step); a warp covers 32 / lanes outputs, so short rows (LoRA up-projections, k = 32..256)
    // keep every lane busy.
    const int steps = j.vec ? (j.k + per_vector - 1) / per_vector : j.k;
    int lanes = 1;
    while (lanes < 32 && lanes < steps) lanes *= 2;
    j.lanes = lanes;
    const int per_block = kGemvThreads / lanes;
    blocks += (j.n + per_block - 1) / per_block;
    j.block_end = blocks;
  }
  return absl::OkStatus();
}

namespace {

int64_t Delta(const void* a, const void* b) { return static_cast<const char*>(b) - static_cast<const char*>(a); }

bool SameGemm(const Projection& a, const Projection& b) {
  return a.w->n == b.w->n && a.w->k == b.w->k && a.ldx == b.ldx && a.ldy == b.ldy && a.out == b.out && a.act == b.act;
}

}  // namespace

StridedRun FindStridedRun(std::span<const Projection> ps, size_t i, int elem_bytes) {
  if (i + 1 >= ps.size()) return {};
  const Projection& p = ps[i];
  if (p.out == GemvOut::kTyped || p.act != Act::kNone) return {};
  const int64_t dx = Delta(p.x, ps[i + 1].x), dw = Delta(p.w->data, ps[i + 1].w->data), dy = Delta(p.y, ps[i + 1].y);
  if (dx <= 0 || dw <= 0 || dy <= 0 || dx % elem_bytes != 0 || dw % elem_bytes != 0 || dy % 4 != 0) return {};
  size_t j = i + 1;
  while (j < ps.size() && SameGemm(p, ps[j]) && Delta(ps[j - 1].x, ps[j].x) == dx &&
         Delta(ps[j - 1].w->data, ps[j].w->data) == dw && Delta(ps[j - 1].y, ps[j].y) == dy) {
    ++j;
  }
  if (j - i < 2) return {};
  return {j - i, dx / elem_bytes, dw / elem_bytes, dy / 4};
}

}  // namespace rwkv::cuda
