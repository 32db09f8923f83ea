// Frontend: what every edge (gRPC, HTTP) does with a request before the scheduler sees it, in one
// place so that the edges cannot disagree: readiness (loading, draining), API keys and tenants,
// tenant-scoped session ids, per-tenant stream and token limits, start states and the
// prefix-cache scope, the default deadline. An edge translates its wire format into a
// SequenceRequest (server/core/requests.h), hands it here, and maps the Status to its own codes.
//
// Thread safety: every method may be called from any thread. Attach happens once, before ready()
// turns true; the scheduler, tokenizer and codec it receives are read-only from then on.
#ifndef RWKV_SERVER_CORE_FRONTEND_H_
#define RWKV_SERVER_CORE_FRONTEND_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/tokenizer.h"
#include "server/core/auth.h"
#include "server/core/chat_template.h"
#include "server/core/requests.h"
#include "server/core/scheduler.h"
#include "server/core/start_states.h"
#include "server/core/state_codec.h"

namespace rwkv::server {

// What the edges report about finished requests (the process's metrics implement it). Any thread.
class EdgeObserver {
 public:
  virtual ~EdgeObserver() = default;
  virtual void OnRequestDone(const char* method, absl::StatusCode code) {}
  virtual void OnAuthFailure(const char* reason) {}
  virtual void OnTenantLimit(const char* limit, const std::string& tenant) {}
  virtual void OnTenantTokens(const std::string& tenant, int64_t n) {}
};

struct FrontendOptions {
  RequestLimits limits;
  std::chrono::milliseconds default_deadline{0};  // For requests without one; 0 = none.
  TenantLimits tenant_limits;  // Defaults of keys-file lines; without API keys, the one tenant's.
  ChatTemplate chat = ChatTemplate::World();
  // Images: the limits (vision.tokens is set by Attach from the scheduler's image worker).
  VisionLimits vision;
};

// A stream's generated tokens, counted into its tenant's sliding window at most once a second (the
// token path takes no lock), and the end of its admission. Owned by a sink; OnToken and End on the
// scheduler's loop thread.
class StreamMeter {
 public:
  // Called by Frontend::SubmitGenerate once the stream is admitted.
  void Begin(std::shared_ptr<TenantUsage> usage, std::string tenant);
  void OnToken();
  // Flushes the count and ends the admission; later calls do nothing.
  void End();
  bool active() const { return usage_ != nullptr; }

 private:
  void Flush(TenantUsage::Clock::time_point now);
  std::shared_ptr<TenantUsage> usage_;
  std::string tenant_;
  int64_t unflushed_ = 0;
  TenantUsage::Clock::time_point flushed_at_{};
};

class Frontend {
 public:
  explicit Frontend(FrontendOptions options) : options_(std::move(options)) {}

  // Starts serving. REQUIRES: scheduler and tokenizer outlive the frontend; called once.
  void Attach(Scheduler* scheduler, const Tokenizer* tokenizer, StateCodec codec, std::string backend_name,
              StartStates states = {});
  // New generations and sessions get UNAVAILABLE; reads and exports go on.
  void SetDraining() { draining_ = true; }
  // The keys requests must present; null = none (one anonymous tenant). Requests already
  // authenticated keep their tenant.
  void SetApiKeys(std::shared_ptr<const ApiKeys> keys);

  // UNAVAILABLE while loading (or, with `mutating`, draining); OK otherwise.
  absl::Status Ready(bool mutating) const;
  bool ready() const { return ready_.load(std::memory_order_acquire); }

  // The tenant of a request whose `authorization` header or metadata is the given value (nullopt:
  // absent). Without keys, the anonymous tenant. UNAUTHENTICATED otherwise, with `*failure` set
  // to "missing" or "invalid" (the metric's label). The key never reaches a message.
  absl::StatusOr<Tenant> Authenticate(std::optional<std::string_view> authorization, const char** failure) const;

  // Submits a generation the edge has translated. Stateless: resolves `initial_state` (empty = the
  // default start) and keeps prefix-cache entries apart per start; with a session, an
  // initial_state is INVALID_ARGUMENT. Scopes the session id by tenant, applies the default
  // deadline when the request has none, admits the stream against the tenant's limits
  // (RESOURCE_EXHAUSTED naming the limit) and begins `meter`. On error nothing was submitted,
  // the sink was not called and the meter was not begun.
  absl::Status SubmitGenerate(const Tenant& tenant, std::string_view initial_state, SequenceRequest seq,
                              std::shared_ptr<SequenceSink> sink, StreamMeter* meter);

  // A client's session id, validated (INVALID_ARGUMENT naming `field`), as the store knows it.
  static absl::StatusOr<std::string> ScopeId(const Tenant& tenant, std::string_view id, const char* field);
  // A fresh id in the tenant's scope.
  static std::string NewSessionId(const Tenant& tenant);
  // `s` with the tenant's scope taken out of its message (a client names its ids unscoped).
  static absl::Status Unscope(const std::string& tenant, const absl::Status& s);
  // The default deadline from now, or none.
  std::optional<TimePoint> DefaultDeadline() const;

  // After Attach.
  Scheduler& scheduler() const { return *scheduler_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const StateCodec& codec() const { return codec_; }
  const StartStates& states() const { return states_; }
  const std::string& backend_name() const { return backend_name_; }
  int slots() const { return slots_; }
  const FrontendOptions& options() const { return options_; }
  const RequestLimits& limits() const { return options_.limits; }
  const VisionLimits& vision() const { return options_.vision; }
  const ChatTemplate& chat() const { return options_.chat; }

 private:
  // A session limit for the store (loop thread).
  int SessionLimitOf(std::string_view tenant) const;

  FrontendOptions options_;
  mutable std::mutex keys_mu_;
  std::shared_ptr<const ApiKeys> keys_;  // Guarded by keys_mu_.
  std::shared_ptr<TenantUsage> usage_ = std::make_shared<TenantUsage>();  // Shared with the meters.
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
  Scheduler* scheduler_ = nullptr;  // Set once by Attach, before ready_.
  const Tokenizer* tokenizer_ = nullptr;
  StateCodec codec_;
  StartStates states_;
  std::string backend_name_;
  int slots_ = 0;
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_CORE_FRONTEND_H_
