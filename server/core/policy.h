// The scheduling policy: which sequences run in the next engine step and with how many tokens.
//
// A pure function of the scheduler's occupancy and limits (no clock, no device), so that it can be
// tested table by table. Rules, in order:
//   1. Every running sequence in decode that is not paused gets its one token (decode first: a
//      running conversation's next token never waits behind a prompt).
//   2. Running sequences still in prefill get chunks of their remaining prompt, oldest first,
//      while the step's token budget lasts.
//   3. Waiting sequences are admitted first come, first served (no overtaking) while a slot is
//      available, the running limit allows and budget is left; each gets a first chunk.
// A sequence with nothing to feed is never planned.
#ifndef RWKV_SERVER_CORE_POLICY_H_
#define RWKV_SERVER_CORE_POLICY_H_

#include <cstdint>
#include <vector>

namespace rwkv::server {

struct RunningView {
  int64_t id = 0;
  int remaining = 0;     // Tokens still to feed: 1 in decode, the prompt rest in prefill.
  bool decode = false;   // In decode (else prefill).
  bool paused = false;   // Its client is behind: it sits out this step.
};

struct WaitingView {
  int64_t id = 0;
  int remaining = 0;  // Tokens to feed (0 = nothing to compute: admitted without work).
};

struct PolicyInput {
  std::vector<RunningView> running;  // In admission order.
  std::vector<WaitingView> waiting;  // In arrival order.
  int free_slots = 0;                // Slots that admission can take (free or evictable).
  int token_budget = 0;              // Tokens per step.
  int max_running = 0;               // Sequences holding a slot at once.
};

struct Work {
  int64_t id = 0;
  int tokens = 0;
  bool operator==(const Work&) const = default;
};

struct StepPlan {
  int admit = 0;            // The first `admit` waiting sequences are admitted this step.
  std::vector<Work> work;   // Decode work first, then prefill chunks, then admitted chunks.
};

StepPlan PlanStep(const PolicyInput& in);

}  // namespace rwkv::server

#endif  // RWKV_SERVER_CORE_POLICY_H_
