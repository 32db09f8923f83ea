// PlanStep, table by table: each row is an occupancy and the plan it must produce.
#include "server/core/policy.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rwkv::server {
namespace {

struct Case {
  const char* name;
  PolicyInput in;
  int admit;
  std::vector<Work> work;
};

class PolicyTable : public ::testing::TestWithParam<Case> {};

TEST_P(PolicyTable, Plans) {
  const Case& c = GetParam();
  const StepPlan plan = PlanStep(c.in);
  EXPECT_EQ(plan.admit, c.admit);
  EXPECT_EQ(plan.work, c.work);
}

RunningView Decode(int64_t id, bool paused = false) { return {id, 1, true, paused}; }
RunningView Prefill(int64_t id, int left) { return {id, left, false, false}; }

INSTANTIATE_TEST_SUITE_P(
    Cases, PolicyTable,
    ::testing::Values(
        Case{"idle", {{}, {}, 4, 64, 4}, 0, {}},
        Case{"admit_one", {{}, {{1, 10}}, 4, 64, 4}, 1, {{1, 10}}},
        Case{"decode_all_running", {{Decode(1), Decode(2), Decode(3)}, {}, 1, 64, 8}, 0, {{1, 1}, {2, 1}, {3, 1}}},
        Case{"paused_sits_out", {{Decode(1), Decode(2, true), Decode(3)}, {}, 1, 64, 8}, 0, {{1, 1}, {3, 1}}},
        Case{"decode_before_prefill", {{Prefill(1, 100), Decode(2)}, {}, 0, 64, 8}, 0, {{2, 1}, {1, 63}}},
        Case{"prefill_chunked_by_budget", {{Prefill(1, 100)}, {}, 0, 16, 8}, 0, {{1, 16}}},
        Case{"prefill_rest_fits", {{Prefill(1, 5)}, {}, 0, 16, 8}, 0, {{1, 5}}},
        Case{"oldest_prefill_first", {{Prefill(1, 10), Prefill(2, 10)}, {}, 0, 15, 8}, 0, {{1, 10}, {2, 5}}},
        Case{"admission_gets_leftover_budget", {{Decode(1)}, {{2, 100}}, 2, 32, 8}, 1, {{1, 1}, {2, 31}}},
        Case{"no_slot_no_admission", {{Decode(1)}, {{2, 10}}, 0, 32, 8}, 0, {{1, 1}}},
        Case{"running_limit", {{Decode(1), Decode(2)}, {{3, 10}}, 5, 64, 2}, 0, {{1, 1}, {2, 1}}},
        Case{"fifo_no_overtaking", {{}, {{1, 50}, {2, 1}}, 1, 64, 8}, 1, {{1, 50}}},
        Case{"budget_exhausted_stops_admission", {{Prefill(1, 64)}, {{2, 5}}, 4, 64, 8}, 0, {{1, 64}}},
        Case{"several_admissions", {{}, {{1, 3}, {2, 3}, {3, 3}}, 2, 64, 8}, 2, {{1, 3}, {2, 3}}},
        Case{"zero_work_admission_needs_no_budget", {{Prefill(1, 8)}, {{2, 0}}, 1, 8, 8}, 1, {{1, 8}}},
        Case{"decode_capped_by_budget", {{Decode(1), Decode(2), Decode(3)}, {}, 0, 2, 8}, 0, {{1, 1}, {2, 1}}}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace rwkv::server
