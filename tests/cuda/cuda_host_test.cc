// Host-side behaviour of the CUDA backend that needs no device: how device errors become
// statuses, and what Create refuses before it touches a device. Runs wherever the CUDA build does.
#include <memory>

#include "engine/backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_util.h"
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

}  // namespace
}  // namespace rwkv::cuda
