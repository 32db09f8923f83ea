// The CUDA backend's host-side step planning, tested without a GPU.
#include "engine/cuda/step_plan.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rwkv::cuda {
namespace {

using ::testing::ElementsAre;

TEST(StepPlan, MixedDecodeAndPrefillInOneStep) {
  const std::vector<int32_t> a = {5}, b = {1, 2, 3, 4}, c = {9};
  const std::vector<BatchEntry> batch = {{3, a, false}, {7, b, false}, {0, c, false}};
  Logits logits;
  logits.Prepare(batch, 10);
  StepPlan p;
  std::vector<int> done(3, 0);
  ASSERT_TRUE(p.Next(batch, done, 64, logits));
  EXPECT_THAT(p.tokens, ElementsAre(5, 1, 2, 3, 4, 9));
  EXPECT_THAT(p.row_piece, ElementsAre(0, 1, 1, 1, 1, 2));
  EXPECT_THAT(p.piece_slot, ElementsAre(3, 7, 0));
  EXPECT_THAT(p.piece_row, ElementsAre(0, 1, 5));
  EXPECT_THAT(p.piece_count, ElementsAre(1, 4, 1));
  EXPECT_THAT(p.head_rows, ElementsAre(0, 4, 5)) << "the last token of each entry";
  EXPECT_THAT(p.head_dest, ElementsAre(0, 1, 2));
  p.Advance(&done);
  EXPECT_THAT(done, ElementsAre(1, 4, 1));
  EXPECT_FALSE(p.Next(batch, done, 64, logits));
}

TEST(StepPlan, SplitsAtTheScratchSizeAndOnlyTheFinalPieceWantsLogits) {
  const std::vector<int32_t> a = {1, 2, 3, 4, 5}, b = {6, 7};
  const std::vector<BatchEntry> batch = {{0, a, false}, {1, b, false}};
  Logits logits;
  logits.Prepare(batch, 10);
  StepPlan p;
  std::vector<int> done(2, 0);
  ASSERT_TRUE(p.Next(batch, done, 3, logits));
  EXPECT_THAT(p.tokens, ElementsAre(1, 2, 3));
  EXPECT_TRUE(p.head_rows.empty()) << "entry 0 is not finished in this step";
  p.Advance(&done);
  ASSERT_TRUE(p.Next(batch, done, 3, logits));
  EXPECT_THAT(p.tokens, ElementsAre(4, 5, 6));
  EXPECT_THAT(p.piece_count, ElementsAre(2, 1));
  EXPECT_THAT(p.head_rows, ElementsAre(1));
  p.Advance(&done);
  ASSERT_TRUE(p.Next(batch, done, 3, logits));
  EXPECT_THAT(p.tokens, ElementsAre(7));
  EXPECT_THAT(p.head_dest, ElementsAre(1));
  p.Advance(&done);
  EXPECT_FALSE(p.Next(batch, done, 3, logits));
}

TEST(StepPlan, AllLogitsRowsMapToTheirPositions) {
  const std::vector<int32_t> a = {1, 2, 3}, b = {4};
  const std::vector<BatchEntry> batch = {{0, a, true}, {1, b, false}};
  Logits logits;
  logits.Prepare(batch, 10);
  StepPlan p;
  std::vector<int> done = {1, 0};  // One token of entry 0 went through in an earlier step.
  ASSERT_TRUE(p.Next(batch, done, 8, logits));
  EXPECT_THAT(p.tokens, ElementsAre(2, 3, 4));
  EXPECT_THAT(p.head_rows, ElementsAre(0, 1, 2));
  EXPECT_THAT(p.head_dest, ElementsAre(1, 2, 3)) << "entry 0 rows 1 and 2, then entry 1's row";
}

TEST(StepPlan, PackOrderIsWhatTheDeviceCarves) {
  const std::vector<int32_t> a = {8, 9};
  const std::vector<BatchEntry> batch = {{4, a, false}};
  Logits logits;
  logits.Prepare(batch, 10);
  StepPlan p;
  ASSERT_TRUE(p.Next(batch, {0}, 8, logits));
  std::vector<int32_t> packed;
  p.Pack(&packed);
  // tokens, row_piece, piece_slot, piece_row, piece_count, head_rows
  EXPECT_THAT(packed, ElementsAre(8, 9, 0, 0, 4, 0, 2, 1));
}

}  // namespace
}  // namespace rwkv::cuda
