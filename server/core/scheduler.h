// Scheduler: continuous batching over one backend and its state pool.
//
// One thread (the loop) owns the backend, the pool and the sessions. Other threads submit
// sequences and post tasks; the loop runs iterations: take in submissions and tasks, drop
// cancelled and expired sequences, plan the step (server/policy.h), admit, run one backend call
// that carries every running sequence's decode token and prefill chunks of new ones, sample,
// check stop conditions, emit events, retire.
//
// Thread safety: Submit, Post, Wake, StopAccepting, waiting/running counts: any thread.
// Everything marked "loop thread" only from the loop (inside a posted task, or from the thread
// calling Iterate() when no loop was started).
#ifndef RWKV_SERVER_CORE_SCHEDULER_H_
#define RWKV_SERVER_CORE_SCHEDULER_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "engine/backend.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "server/core/prefix_cache.h"
#include "server/core/sequence.h"
#include "server/core/session_store.h"
#include "server/core/stop_matcher.h"
#include "server/core/vision.h"

namespace rwkv::server {

struct Occupancy {
  int running = 0, waiting = 0;
  int encoding = 0;  // Waiting for their images' rows (not yet in `waiting`).
  int slots_used = 0, slots_total = 0;
  int sessions_device = 0, sessions_host = 0, sessions_disk = 0;
  int64_t disk_bytes = 0;  // Session files (with a state directory).
  int64_t prefix_cache_bytes = 0;
  int prefix_cache_entries = 0;
  int64_t prefix_cache_evictions = 0;  // Since start.
};

// How the scheduler reports what it does (metrics live at the edge). Called on the loop thread.
class SchedulerObserver : public SessionObserver {
 public:
  virtual ~SchedulerObserver() = default;
  virtual void OnAdmit(double queue_seconds, int prompt_tokens) {}
  // A stateless prompt looked up in the prefix cache: `cached` of its `tokens` came from it.
  virtual void OnPrefixLookup(int tokens, int cached) {}
  // An image of a prompt: encoded (`seconds` on the vision worker, `ok` false when the encoder
  // failed), or found in the prefix cache with the state after it (no vision work).
  virtual void OnImageEncoded(double seconds, bool ok) {}
  virtual void OnImageCached() {}
  // A token was sampled: `first` = the sequence's first (seconds since admission), else seconds
  // since its previous token.
  virtual void OnToken(bool first, double seconds) {}
  virtual void OnStep(int sequences, int tokens, double seconds) {}
  virtual void OnFinish(const FinalEvent& final) {}
  virtual void OnOccupancy(const Occupancy& o) {}
  // The backend reports a sticky failure (Backend::Healthy): every later step will fail.
  virtual void OnBackendBroken(const absl::Status& why) {}
};

struct SchedulerOptions {
  int token_budget = 512;  // Tokens per step, decode and prefill together; >= max_running.
  int max_running = 8;     // Sequences holding a slot at once; <= pool slots.
  int queue_length = 256;  // Waiting sequences; beyond it Submit says RESOURCE_EXHAUSTED.
  SessionLimits sessions;
  PrefixCacheOptions prefix_cache;
};

class Scheduler {
 public:
  using ClockFn = std::function<TimePoint()>;
  // REQUIRES: tokenizer and observer (may be null) outlive the scheduler.
  Scheduler(std::unique_ptr<Backend> backend, const Tokenizer* tokenizer, SchedulerOptions options,
            SchedulerObserver* observer = nullptr, ClockFn clock = &Clock::now);
  // Stops the loop; unfinished sequences finish with UNAVAILABLE; every committed state not yet
  // on disk is written.
  ~Scheduler();

  // Opens the sessions' disk tier on `dir` (SessionStore::OpenDisk). REQUIRES: before Start().
  absl::Status OpenStateDir(const std::string& dir, StateCodec codec);
  // Images in prompts go through `worker` (its rows must be the model's n_embd wide); without
  // one a request with images fails INVALID_ARGUMENT. REQUIRES: before Start().
  absl::Status SetImageWorker(std::unique_ptr<ImageWorker> worker);
  // Prompt positions per image; 0 without an image worker.
  int image_tokens() const { return image_tokens_; }
  // Starts the loop thread. Without it, tests drive the loop by calling Iterate().
  void Start();
  // Queues a sequence. UNAVAILABLE while draining, RESOURCE_EXHAUSTED when the queue is full;
  // on error the sink is not called. Session checks (NOT_FOUND, busy) arrive through the sink.
  absl::Status Submit(SequenceRequest request, std::shared_ptr<SequenceSink> sink);
  // Runs `task` on the loop thread at the start of the next iteration.
  void Post(std::function<void()> task);
  // Wakes an idle loop (a backlogged sink drained, a client left).
  void Wake();
  // Drain: new submissions get UNAVAILABLE; queued and running ones go on.
  void StopAccepting();
  // Finishes every queued and running sequence with `status` (end of the drain grace period).
  void AbortAll(absl::Status status);
  // Sequences submitted and not finished.
  int active() const { return active_.load(); }

  // One iteration; returns whether it ran a backend step. Loop thread.
  bool Iterate();

  // Loop thread.
  SessionStore& sessions() { return sessions_; }
  PrefixCache& prefix_cache() { return cache_; }
  Backend& backend() { return *backend_; }
  const SchedulerOptions& options() const { return options_; }
  Occupancy occupancy();

 private:
  struct Seq;
  void Loop();
  void Accept(std::unique_ptr<Seq> seq);
  // A sequence whose prompt has images: its cache key, the cache hit it pins, the images to
  // encode. Then it waits in `encoding_` or in `waiting_`.
  void Enqueue(std::unique_ptr<Seq> seq);
  void OnImageRows(const ImageDigest& digest, absl::StatusOr<std::vector<float>> rows, double seconds);
  // A sequence leaves `encoding_` before its rows came: it stops waiting for its images, and an
  // image nobody else waits for is not encoded (if the worker has not begun it).
  void StopWaitingForImages(const Seq& seq);
  // The prefix-cache key of `feed` (images by digest).
  static std::span<const int32_t> KeyOf(const Seq& s);
  void Reap(TimePoint now);
  void Admit(Seq& seq, TimePoint now);
  // Shortens prefill chunks in `work` that would cross a cache point.
  void RunStep(std::vector<std::pair<Seq*, int>>& work, TimePoint now);
  // A sampled token: stream it, check stop conditions. `logits` (host path only) feed log-probs.
  void OnToken(Seq& seq, int32_t token, std::span<const float> logits, TimePoint now);
  void Finish(Seq& seq, FinalEvent final, TimePoint now);
  void Commit(Seq& seq, std::optional<int32_t> pending, TimePoint now);
  void Report();
  // Stores the state of the sequence's slot after feed[0, length) (plus `extra` tokens).
  void Capture(Seq& seq, size_t length, std::span<const int32_t> extra = {});
  // n > 1: the forks of `parent`, whose prompt is through; `logits` are its last position's.
  void Fork(Seq& parent, std::span<const float> logits, TimePoint now);

  std::unique_ptr<Backend> backend_;
  const Tokenizer* tokenizer_;
  std::unique_ptr<ImageWorker> images_;  // Reset at the end of ~Scheduler: its callbacks Post here.
  int image_tokens_ = 0;
  SchedulerOptions options_;
  SchedulerObserver* observer_;
  ClockFn clock_;
  SessionStore sessions_;
  PrefixCache cache_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Seq>> incoming_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> abort_ ABSL_GUARDED_BY(mu_);
  std::atomic<int> queued_{0};  // incoming_ + waiting_, for the queue bound.
  std::atomic<int> active_{0};
  std::thread thread_;

  // Loop thread.
  std::deque<std::unique_ptr<Seq>> waiting_;
  std::vector<std::unique_ptr<Seq>> encoding_;  // Queued, waiting for image rows; counted in queued_.
  // Images being encoded: who waits for each (sequence id, index of the image in its request),
  // and the flag that drops the encoding once nobody does.
  struct ImageJob {
    std::vector<std::pair<int64_t, size_t>> waiters;
    std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);
  };
  std::map<ImageDigest, ImageJob> image_jobs_;
  std::vector<std::unique_ptr<Seq>> running_;
  int64_t next_id_ = 1;
  TimePoint next_expiry_check_{};
  Logits logits_;
  std::vector<BatchEntry> batch_;
  std::vector<DeviceSample> device_;
  std::vector<int32_t> sampled_;
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_CORE_SCHEDULER_H_
