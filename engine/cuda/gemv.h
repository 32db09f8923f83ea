// Projections of a few rows (decode at small batch) without cuBLAS: one launch computes up to
// kGemvMaxJobs independent products y = act(x W^T) of different shapes, reading each weight
// matrix once with 16-byte loads, float32 accumulation, and the activation, the accumulate or the
// cast to the weight type applied as the result is written (no separate activation kernel). At 1
// to 8 rows a product is a matrix-vector stream bound by the weights' bytes; cuBLAS's GEMM tiles
// are built for many rows and each is a launch of its own.
#ifndef RWKV_ENGINE_CUDA_GEMV_H_
#define RWKV_ENGINE_CUDA_GEMV_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "engine/cuda/cublas_gemm.h"
#include "engine/cuda/ops.h"

namespace rwkv::cuda {

inline constexpr int kGemvMaxRows = 8;
inline constexpr int kGemvMaxJobs = 8;
inline constexpr int kGemvThreads = 256;

// Where a product's result goes: float32 (overwritten or added to), or the weight type (the next
// product's input).
enum class GemvOut : int32_t { kF32, kF32Add, kTyped };

// y[r, o] (+)= act(sum_i x[r, i] w[o, i]) for rows r, outputs o < n, inputs i < k. x and w in the
// weight type, row-major with leading dimensions ldx and k; y with leading dimension ldy.
struct GemvJob {
  const void* x = nullptr;
  const void* w = nullptr;
  void* y = nullptr;
  int32_t n = 0, k = 0, ldx = 0, ldy = 0;
  Act act = Act::kNone;
  GemvOut out = GemvOut::kF32;
  // Set by PlanGemv: threads per output (a power of two up to 32), whether the rows of x and w
  // take 16-byte loads, and the end of the job's blocks in the launch's grid.
  int32_t lanes = 0;
  int32_t vec = 0;
  int32_t block_end = 0;
};

// One launch's jobs, passed to the kernel by value (captured with it into a graph: nothing to
// upload).
struct GemvBatch {
  GemvJob job[kGemvMaxJobs];
  int32_t jobs = 0;
};

// Plans the jobs of `b` for elements of `elem_bytes` (4 or 2): lanes, vector loads and blocks.
// INVALID_ARGUMENT naming the job for a shape the kernel cannot run (empty, ldx < k, ldy < n, an
// activation on an accumulate).
absl::Status PlanGemv(GemvBatch* b, int elem_bytes);
// Grid size of a planned batch.
inline int GemvBlocks(const GemvBatch& b) { return b.jobs == 0 ? 0 : b.job[b.jobs - 1].block_end; }

// Runs a planned batch over `rows` rows (1 to kGemvMaxRows).
void Gemv(const GemvBatch& b, int rows, WeightType wt, cudaStream_t s);

// A projection of a step's rows, as the backend states it: y (+)= act(x W^T), the result float32
// or in the weight type.
struct Projection {
  const void* x = nullptr;
  int ldx = 0;
  const DeviceMatrix* w = nullptr;
  void* y = nullptr;
  int ldy = 0;
  Act act = Act::kNone;
  GemvOut out = GemvOut::kF32;
};

// The projections from ps[i] on that form one strided-batched GEMM: float32 results without an
// activation, one shape, and inputs, weights and outputs at constant increasing strides that are
// whole elements (`elem_bytes` for x and w). count 1 when ps[i] stands alone.
struct StridedRun {
  size_t count = 1;
  int64_t x_stride = 0, w_stride = 0;  // Elements of the weight type.
  int64_t y_stride = 0;                // Floats.
};
StridedRun FindStridedRun(std::span<const Projection> ps, size_t i, int elem_bytes);

}  // namespace rwkv::cuda

#endif  // RWKV_ENGINE_CUDA_GEMV_H_
