#include "server/core/policy.h"

#include <algorithm>

namespace rwkv::server {

StepPlan PlanStep(const PolicyInput& in) {
  StepPlan plan;
  int budget = in.token_budget;
  for (const RunningView& r : in.running) {
    if (budget == 0) break;
    if (r.decode && !r.paused && r.remaining > 0) {
      plan.work.push_back({r.id, 1});
      --budget;
    }
  }
  for (const RunningView& r : in.running) {
    if (budget == 0) break;
    if (!r.decode && !r.paused && r.remaining > 0) {
      const int n = std::min(r.remaining, budget);
      plan.work.push_back({r.id, n});
      budget -= n;
    }
  }
  int slots = in.free_slots;
  int running = static_cast<int>(in.running.size());
  for (const WaitingView& w : in.waiting) {
    if (slots == 0 || running >= in.max_running) break;
    if (w.remaining > 0 && budget == 0) break;
    ++plan.admit;
    --slots;
    ++running;
    if (w.remaining > 0) {
      const int n = std::min(w.remaining, budget);
      plan.work.push_back({w.id, n});
      budget -= n;
    }
  }
  return plan;
}

}  // namespace rwkv::server
