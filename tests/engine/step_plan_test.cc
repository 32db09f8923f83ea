// The CUDA backend's host-side step planning, tested without a GPU.
#include "engine/cuda/step_plan.h"

#include <algorithm>

#include "engine/cuda/sample_jobs.h"
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

TEST(StepPlan, PaddingRowsRunOnTheScratchSlotAndAdvanceNothing) {
  const std::vector<int32_t> a = {5}, b = {6};
  const std::vector<BatchEntry> batch = {{3, a, false}, {1, b, false}};
  Logits logits;
  logits.Prepare(batch, 10);
  StepPlan p;
  std::vector<int> done(2, 0);
  ASSERT_TRUE(p.Next(batch, done, 8, logits));
  ASSERT_TRUE(p.IsDecode());
  p.Pad(4, /*scratch_slot=*/9);
  EXPECT_THAT(p.tokens, ElementsAre(5, 6, 0, 0));
  EXPECT_THAT(p.row_piece, ElementsAre(0, 1, 2, 3));
  EXPECT_THAT(p.piece_slot, ElementsAre(3, 1, 9, 9));
  EXPECT_THAT(p.piece_entry, ElementsAre(0, 1, -1, -1));
  EXPECT_THAT(p.head_rows, ElementsAre(0, 1, 2, 3));
  EXPECT_THAT(p.head_dest, ElementsAre(0, 1, -1, -1));
  EXPECT_TRUE(p.IsDecode());
  EXPECT_EQ(p.rows(), 4);
  EXPECT_EQ(std::count_if(p.piece_entry.begin(), p.piece_entry.end(), [](int32_t e) { return e >= 0; }), 2)
      << "two rows that are not padding";
  p.Advance(&done);
  EXPECT_THAT(done, ElementsAre(1, 1));
  EXPECT_FALSE(p.Next(batch, done, 8, logits));
}

// One job for each head row whose entry samples on the device; with skips, a job that draws
// nothing for each other row, padding included (a graph samples every row it was captured with).
TEST(SampleJobs, FillDrawsForDeviceRowsAndSkipsTheRest) {
  const std::vector<int32_t> a = {5}, b = {6};
  const std::vector<BatchEntry> batch = {{3, a, false}, {1, b, false}};
  Logits logits;
  logits.Prepare(batch, 10);
  StepPlan p;
  ASSERT_TRUE(p.Next(batch, {0, 0}, 8, logits));
  p.Pad(4, /*scratch_slot=*/9);
  SamplingParams params;
  std::vector<DeviceSample> sampling(2);
  sampling[1] = {true, &params, true, 0.25};  // Entry 0 is sampled on the host.
  SampleJobs jobs;
  jobs.Fill(p, sampling, /*skips=*/false);
  ASSERT_EQ(jobs.jobs.size(), 1u);
  EXPECT_EQ(jobs.jobs[0].logits_row, 1);
  EXPECT_EQ(jobs.jobs[0].slot, 1);
  EXPECT_EQ(jobs.jobs[0].out, 1);
  EXPECT_EQ(jobs.jobs[0].first, 1);
  jobs.Fill(p, sampling, /*skips=*/true);
  ASSERT_EQ(jobs.jobs.size(), 4u);
  EXPECT_THAT((std::vector<int>{jobs.jobs[0].out, jobs.jobs[1].out, jobs.jobs[2].out, jobs.jobs[3].out}),
              ElementsAre(-1, 1, -1, -1));
  EXPECT_THAT((std::vector<int>{jobs.jobs[0].logits_row, jobs.jobs[1].logits_row, jobs.jobs[2].logits_row,
                                jobs.jobs[3].logits_row}),
              ElementsAre(0, 1, 2, 3));
  jobs.Fill(p, {}, /*skips=*/true);  // Forward: nothing sampled on the device.
  EXPECT_EQ(jobs.jobs.size(), 4u);
  EXPECT_TRUE(std::all_of(jobs.jobs.begin(), jobs.jobs.end(), [](const SampleJob& j) { return j.out < 0; }));
}

TEST(StepPlan, PrefillIsNotADecodeStep) {
  const std::vector<int32_t> a = {1, 2}, b = {3};
  const std::vector<BatchEntry> batch = {{0, a, false}, {1, b, false}};
  Logits logits;
  logits.Prepare(batch, 10);
  StepPlan p;
  ASSERT_TRUE(p.Next(batch, {0, 0}, 8, logits));
  EXPECT_FALSE(p.IsDecode()) << "a piece of two rows";
  // One row, but the first of a two-token prompt split by the scratch size: no logits wanted.
  const std::vector<BatchEntry> one = {{0, a, false}};
  logits.Prepare(one, 10);
  ASSERT_TRUE(p.Next(one, {0}, 1, logits));
  EXPECT_EQ(p.rows(), 1);
  EXPECT_FALSE(p.IsDecode());
}

TEST(StepPlan, GraphLadderStepsByAQuarterOfADoublingPastEight) {
  EXPECT_THAT(GraphLadder(1), ElementsAre(1));
  EXPECT_THAT(GraphLadder(6), ElementsAre(1, 2, 3, 4, 5, 6));
  EXPECT_THAT(GraphLadder(8), ElementsAre(1, 2, 3, 4, 5, 6, 7, 8));
  EXPECT_THAT(GraphLadder(33), ElementsAre(1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 33));
  EXPECT_THAT(GraphLadder(64), ElementsAre(1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64));
  const std::vector<int> big = GraphLadder(1024);
  EXPECT_EQ(big.size(), 8u + 4 * 7);
  EXPECT_EQ(big.back(), 1024);
  for (size_t i = 8; i < big.size(); ++i) {
    EXPECT_LE(big[i] * 4, big[i - 1] * 5) << "a padded step runs at most 25% more rows: " << big[i];
  }
  EXPECT_EQ(LadderSize(big, 1), 1);
  EXPECT_EQ(LadderSize(big, 9), 10);
  EXPECT_EQ(LadderSize(big, 129), 160);
  EXPECT_EQ(LadderSize(big, 1024), 1024);
  EXPECT_EQ(LadderSize(big, 1025), 0);
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

TEST(SampleJobs, PacksParametersAndListOffsets) {
  SampleJobs j;
  SamplingParams a;
  a.temperature = 0.7f;
  a.top_p = 0.9f;
  a.top_k = 40;
  a.logit_bias = {{5, 1.5f}, {9, -2.0f}};
  a.banned_tokens = {0};
  SamplingParams b;
  b.top_p = 0.0f;  // Greedy by the sampler's rule, whatever the temperature.
  b.banned_tokens = {3, 4};
  j.Add(/*logits_row=*/0, /*slot=*/7, /*out=*/2, /*first=*/true, a, 0.25);
  j.Add(1, 8, 0, false, b, 0.75);
  ASSERT_EQ(j.jobs.size(), 2u);
  EXPECT_EQ(j.jobs[0].slot, 7);
  EXPECT_EQ(j.jobs[0].out, 2);
  EXPECT_EQ(j.jobs[0].first, 1);
  EXPECT_EQ(j.jobs[0].greedy, 0);
  EXPECT_FLOAT_EQ(j.jobs[0].temperature, 0.7f);
  EXPECT_EQ(j.jobs[0].top_k, 40);
  EXPECT_EQ(j.jobs[0].bias_begin, 0);
  EXPECT_EQ(j.jobs[0].bias_count, 2);
  EXPECT_EQ(j.jobs[0].ban_begin, 0);
  EXPECT_EQ(j.jobs[0].ban_count, 1);
  EXPECT_EQ(j.jobs[1].greedy, 1);
  EXPECT_EQ(j.jobs[1].bias_count, 0);
  EXPECT_EQ(j.jobs[1].ban_begin, 1);
  EXPECT_EQ(j.jobs[1].ban_count, 2);
  EXPECT_THAT(j.bias_ids, ElementsAre(5, 9));
  EXPECT_THAT(j.bias_values, ElementsAre(1.5f, -2.0f));
  EXPECT_THAT(j.ban_ids, ElementsAre(0, 3, 4));
  EXPECT_FLOAT_EQ(j.jobs[1].uniform, 0.75f);
}

}  // namespace
}  // namespace rwkv::cuda
