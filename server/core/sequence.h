// What the scheduler is asked to run and what it reports back. No gRPC here: the service adapts
// these to protobuf messages, tests implement the sink directly.
#ifndef RWKV_SERVER_CORE_SEQUENCE_H_
#define RWKV_SERVER_CORE_SEQUENCE_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/sampler.h"
#include "server/core/state_codec.h"
#include "server/core/vision.h"

namespace rwkv::server {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

enum class FinishReason { kNone, kStop, kLength };

class SequenceSink;

struct SequenceRequest {
  enum class Kind {
    kGenerate,       // Prefill, then sample until a stop condition.
    kCreateSession,  // Create `session_id` and feed the prompt into it; nothing is sampled.
  };
  Kind kind = Kind::kGenerate;
  std::string request_id;
  std::string session_id;  // Generate: empty = stateless. CreateSession: the new id.
  std::vector<int32_t> prompt;
  // Images in the prompt (VisualRWKV), ascending and apart: each covers the scheduler's
  // image_tokens() positions of `prompt` from its offset, whose ids are placeholders.
  std::vector<PromptImage> images;
  SamplingParams sampling;
  int max_tokens = 256;
  std::vector<std::string> stop_strings;
  std::vector<int32_t> stop_tokens;  // End-of-text included unless ignore_eos.
  bool want_token_ids = false;
  bool want_logprobs = false;
  int top_logprobs = 0;
  std::optional<TimePoint> deadline;
  // Stateless generation and new sessions: the state to start from (null = zeros). An exported
  // session's pending token is fed first; a new session also takes its token count.
  std::shared_ptr<const ExportedState> start;

  // The prefix-state cache (stateless generation only; server/core/prefix_cache.h). Entries are
  // kept apart per start state: `cache_scope` names it (the edge's resolved initial_state).
  std::string cache_scope;
  // Prompt offsets worth caching the state at (a chat's message boundaries), ascending.
  std::vector<int> cache_points;
  // Cache the state after the reply too (a chat turn: the next request resends it).
  bool cache_reply = false;
  // Drop the reply's leading whitespace from the stream (a chat template's reply begins with the
  // space after "Assistant:"). The tokens and the committed state are unchanged.
  bool trim_reply_start = false;
  // More continuations of the same prompt (OpenAI's n > 1): one prefill, then each of these
  // sinks gets its own sequence from a copy of the prompt state, sampled with seed + i + 1.
  // Stateless generation only.
  std::vector<std::shared_ptr<SequenceSink>> forks;
};

struct TopLogprob {
  int32_t token = 0;
  float logprob = 0;
};
struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
  std::vector<TopLogprob> top;
};

struct ChunkEvent {
  std::string text;                // Whole UTF-8 characters.
  std::vector<int32_t> token_ids;  // When requested.
  std::vector<TokenLogprob> logprobs;
};

struct FinalEvent {
  absl::Status status;  // OK for STOP/LENGTH (and a created session); the error otherwise.
  FinishReason reason = FinishReason::kNone;
  std::string matched_stop;
  int prompt_tokens = 0;
  int generated_tokens = 0;
  int cached_prompt_tokens = 0;  // Prompt tokens whose state came from the prefix cache.
  double queue_seconds = 0;
  double first_token_seconds = 0;
  double total_seconds = 0;
  int64_t session_tokens = 0;
};

inline FinalEvent Failed(absl::Status status) {
  FinalEvent f;
  f.status = std::move(status);
  return f;
}

// Where one sequence's events go. Shared between the scheduler thread (producer) and the RPC
// (consumer), hence shared_ptr.
class SequenceSink {
 public:
  virtual ~SequenceSink() = default;
  // Scheduler thread. Chunks in order; then Finish exactly once; nothing after Finish.
  virtual void OnChunk(ChunkEvent chunk) = 0;
  virtual void OnFinish(FinalEvent final) = 0;
  // Scheduler thread. One per generated token, before its chunk (usage accounting).
  virtual void OnGenerated() {}
  // Any thread. True once the client is gone: the sequence is dropped at the next step.
  virtual bool Cancelled() const = 0;
  // Any thread. True while the client is behind (its bounded buffer is full): the sequence sits
  // out steps until it drains. It must call Scheduler::Wake() when it drains.
  virtual bool Backlogged() const = 0;
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_CORE_SEQUENCE_H_
