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
  b.job[2] = {x, w, y, 10, 1000, 1003, 10};                                   // ldx not whole vectors
  b.job[3] = {x + 2, w, y, 5, 16, 16, 5};                                     // x misaligned
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

}  // namespace
}  // namespace rwkv::cuda
