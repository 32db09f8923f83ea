// Host-side behaviour of the CUDA backend that needs no device: how device errors become
// statuses, and what Create refuses before it touches a device. Runs wherever the CUDA build does.
#include <memory>

#include "engine/backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_util.h"
#include "engine/cuda/gemv.h"
#include "engine/model.h"
#include "gtest/gtest.h"

namespace rwkv::cuda {
namespace {

// A poisoned context is the replica's failure, not the request's: UNAVAILABLE (retry elsewhere),
// marked by a payload, not by words in the message.
TEST(CudaHost, StickyDeviceErrorsAreUnavailableAndCarryTheirPayload) {
  const absl::Status sticky = CudaError(cudaErrorIllegalAddress, "kernel Wkv7");
  EXPECT_EQ(sticky.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(IsStickyStatus(sticky));
  EXPECT_NE(sticky.message().find("kernel Wkv7"), std::string::npos) << sticky;
  EXPECT_NE(sticky.message().find("cudaErrorIllegalAddress"), std::string::npos) << sticky;
  EXPECT_EQ(std::string(*sticky.GetPayload(kStickyPayload)), "cudaErrorIllegalAddress");

  const absl::Status plain = CudaError(cudaErrorInvalidValue, "cudaMemcpyAsync");
  EXPECT_EQ(plain.code(), absl::StatusCode::kInternal);
  EXPECT_FALSE(IsStickyStatus(plain));
  // Text alone does not make a status sticky.
  EXPECT_FALSE(IsStickyStatus(absl::UnavailableError("cudaErrorIllegalAddress [sticky]")));
}

TEST(CudaHost, UnsupportedHeadSizesAreRefusedAtCreation) {
  ModelConfig c;
  c.arch = Architecture::kRwkv7;
  c.n_layer = 1;
  c.n_embd = c.n_att = 48;
  c.n_head = 2;
  c.head_size = 24;
  c.ffn_dim = 96;
  c.vocab = 16;
  c.lora_decay = c.lora_iclr = c.lora_value = c.lora_gate = 8;
  std::shared_ptr<const Model> model = Model::Random(c, 1);
  BackendOptions o;
  o.kind = "cuda";
  o.dtype = "f32";
  const absl::StatusOr<std::unique_ptr<Backend>> b = CudaBackend::Create(model, o);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b.status().message(),
            "head size 24 is not supported by the cuda backend (16, 32, 64 or 128); the cpu backend runs it");
}

// The GEMV launch plan: 16-byte loads only where every row starts aligned and holds whole vectors,
// enough lanes per output to cover its row once (up to a warp), blocks laid end to end.
TEST(CudaHost, GemvPlanCoversEveryJobWithAlignedLoadsWhereTheyFit) {
  alignas(16) static char x[64], w[64], y[64];
  GemvBatch b;
  b.jobs = 4;
  b.job[0] = {x, w, y, /*n=*/2048, /*k=*/2048, /*ldx=*/2048, /*ldy=*/2048};  // fp16: 256 vectors a row
  b.job[1] = {x, w, y, 96, 64, 64, 96, Act::kTanh, GemvOut::kTyped};         // 8 vectors a row
  b.job[2] = {x, w, y, 10, 1000, 1003, 10};                                  // ldx not whole vectors
  b.job[3] = {x + 2, w, y, 5, 16, 16, 5};                                    // x misaligned
  ASSERT_TRUE(PlanGemv(&b, 2).ok());
  EXPECT_EQ(b.job[0].vec, 1);
  EXPECT_EQ(b.job[0].lanes, 32);
  EXPECT_EQ(b.job[0].block_end, 2048 / (kGemvThreads / 32));  // 8 outputs a block
  EXPECT_EQ(b.job[1].vec, 1);
  EXPECT_EQ(b.job[1].lanes, 8);
  EXPECT_EQ(b.job[1].block_end, 256 + 3);  // 32 outputs a block: 96 in 3
  EXPECT_EQ(b.job[2].vec, 0);
  EXPECT_EQ(b.job[2].lanes, 32);
  EXPECT_EQ(b.job[2].block_end, 259 + 2);  // 10 outputs, 8 a block
  EXPECT_EQ(b.job[3].vec, 0);
  EXPECT_EQ(b.job[3].lanes, 16);
  EXPECT_EQ(b.job[3].block_end, 261 + 1);
  EXPECT_EQ(GemvBlocks(b), 262);
  // float32: 4 elements a vector, so k = 1000 fits them when ldx does.
  b.job[2].ldx = 1000;
  ASSERT_TRUE(PlanGemv(&b, 4).ok());
  EXPECT_EQ(b.job[2].vec, 1);
  EXPECT_EQ(b.job[1].lanes, 16);  // 16 vectors of 4
}

TEST(CudaHost, GemvPlanRefusesShapesTheKernelCannotRun) {
  alignas(16) static char x[64], w[64], y[64];
  GemvBatch b;
  EXPECT_EQ(PlanGemv(&b, 2).message(), "gemv: 0 jobs; 1 to 8");
  b.jobs = 1;
  b.job[0] = {x, w, y, 4, 8, 4, 4};
  EXPECT_EQ(PlanGemv(&b, 2).message(),
            "gemv job 0: n 4, k 8, ldx 4, ldy 4 (need n, k >= 1, ldx >= k, ldy >= n, no null pointer)");
  b.job[0] = {x, w, y, 4, 8, 8, 4, Act::kTanh, GemvOut::kF32Add};
  EXPECT_EQ(PlanGemv(&b, 2).message(), "gemv job 0: an activation on an accumulated output");
  b.job[0].act = Act::kNone;
  EXPECT_EQ(PlanGemv(&b, 3).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(PlanGemv(&b, 2).ok());
}

// Which projections run as one strided-batched GEMM above the GEMV's rows: RWKV-7's r, k and v
// (mixes T*C elements apart, matrices C*C apart in the arena, outputs T*C floats apart); not the
// LoRA down-projection after them (another shape), not typed or activated results, not
// decreasing or uneven strides.
TEST(CudaHost, StridedRunsAreLikeProjectionsAtConstantIncreasingStrides) {
  const int T = 4, C = 8, tb = 2;
  static char mix[6 * T * C * tb], arena[4 * C * C * tb];
  static float out[3 * T * C], lora[T * 4];
  const DeviceMatrix r{arena, C, C}, k{arena + C * C * tb, C, C}, v{arena + 2 * C * C * tb, C, C},
      w1{arena + 3 * C * C * tb, 4, C};
  const Projection rkv[] = {
      {mix, C, &r, out, C},
      {mix + T * C * tb, C, &k, out + T * C, C},
      {mix + 2 * T * C * tb, C, &v, out + 2 * T * C, C},
      {mix + 3 * T * C * tb, C, &w1, lora, 4, Act::kTanh, GemvOut::kTyped},
  };
  const StridedRun run = FindStridedRun(rkv, 0, tb);
  EXPECT_EQ(run.count, 3u);
  EXPECT_EQ(run.x_stride, T * C);  // Elements.
  EXPECT_EQ(run.w_stride, C * C);
  EXPECT_EQ(run.y_stride, T * C);  // Floats.
  EXPECT_EQ(FindStridedRun(rkv, 1, tb).count, 2u);
  EXPECT_EQ(FindStridedRun(rkv, 2, tb).count, 1u) << "w1 has another shape";
  EXPECT_EQ(FindStridedRun(rkv, 3, tb).count, 1u) << "the last";
  // RWKV-5's order (r from the third mix, k from the first): the x stride changes sign.
  const Projection rwkv5[] = {{mix + 2 * T * C * tb, C, &r, out, C},
                              {mix, C, &k, out + T * C, C},
                              {mix + T * C * tb, C, &v, out + 2 * T * C, C}};
  EXPECT_EQ(FindStridedRun(rwkv5, 0, tb).count, 1u);
  EXPECT_EQ(FindStridedRun(rwkv5, 1, tb).count, 2u) << "k and v are still side by side";
  // An activation, or an accumulate mixed with an overwrite, breaks the run.
  Projection act[] = {rkv[0], rkv[1], rkv[2]};
  act[0].act = Act::kSigmoid;
  EXPECT_EQ(FindStridedRun(act, 0, tb).count, 1u);
  act[0].act = Act::kNone;
  act[2].out = GemvOut::kF32Add;
  EXPECT_EQ(FindStridedRun(act, 0, tb).count, 2u);
  // Uneven output spacing.
  Projection uneven[] = {rkv[0], rkv[1], rkv[2]};
  uneven[2].y = out + 2 * T * C + 1;
  EXPECT_EQ(FindStridedRun(uneven, 0, tb).count, 2u);
}

}  // namespace
}  // namespace rwkv::cuda
