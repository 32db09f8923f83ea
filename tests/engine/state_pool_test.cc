#include "engine/state_pool.h"

#include "gtest/gtest.h"

namespace rwkv {
namespace {

TEST(StatePoolTest, AcquireUntilFullThenRelease) {
  HostStatePool pool(3, 10);
  EXPECT_EQ(pool.capacity(), 3);
  EXPECT_EQ(pool.slot_bytes(), 40);
  std::vector<int> got;
  for (int i = 0; i < 3; ++i) {
    auto s = pool.Acquire();
    ASSERT_TRUE(s.ok());
    got.push_back(*s);
  }
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(pool.used(), 3);
  auto full = pool.Acquire();
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(std::string(full.status().message()).find("all 3 slots"), std::string::npos);
  ASSERT_TRUE(pool.Release(1).ok());
  EXPECT_EQ(pool.used(), 2);
  EXPECT_EQ(*pool.Acquire(), 1);
}

TEST(StatePoolTest, AcquiredSlotsStartZeroed) {
  HostStatePool pool(1, 4);
  const int s = *pool.Acquire();
  const std::vector<float> v = {1, 2, 3, 4};
  ASSERT_TRUE(pool.Write(s, v).ok());
  ASSERT_TRUE(pool.Release(s).ok());
  const int t = *pool.Acquire();
  std::vector<float> out(4, -1);
  ASSERT_TRUE(pool.Read(t, out).ok());
  EXPECT_EQ(out, std::vector<float>(4, 0.0f));
}

TEST(StatePoolTest, CopyReadWrite) {
  HostStatePool pool(2, 3);
  const int a = *pool.Acquire(), b = *pool.Acquire();
  const std::vector<float> v = {1.5f, -2, 3};
  ASSERT_TRUE(pool.Write(a, v).ok());
  ASSERT_TRUE(pool.Copy(a, b).ok());
  std::vector<float> out(3);
  ASSERT_TRUE(pool.Read(b, out).ok());
  EXPECT_EQ(out, v);
  ASSERT_TRUE(pool.Reset(a).ok());
  ASSERT_TRUE(pool.Read(a, out).ok());
  EXPECT_EQ(out, std::vector<float>(3, 0.0f));
  ASSERT_TRUE(pool.Read(b, out).ok());
  EXPECT_EQ(out, v);  // The copy is independent.
}

TEST(StatePoolTest, MisuseIsAnError) {
  HostStatePool pool(2, 3);
  std::vector<float> out(3), small(2);
  EXPECT_EQ(pool.Release(0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool.Reset(5).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool.Read(-1, out).code(), absl::StatusCode::kInvalidArgument);
  const int a = *pool.Acquire();
  EXPECT_EQ(pool.Copy(a, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool.Read(a, small).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool.Write(a, small).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(pool.Release(a).ok());
  EXPECT_EQ(pool.Release(a).code(), absl::StatusCode::kInvalidArgument);  // Double release.
}

TEST(StatePoolTest, SlotsForBudget) {
  EXPECT_EQ(StatePool::SlotsForBudget(1000, 100), 10);
  EXPECT_EQ(StatePool::SlotsForBudget(99, 100), 0);
  EXPECT_EQ(StatePool::SlotsForBudget(-5, 100), 0);
  EXPECT_EQ(StatePool::SlotsForBudget(1000, 0), 0);
}

}  // namespace
}  // namespace rwkv
