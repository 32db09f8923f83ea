#include "server/core/frontend.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/absl_compat.h"
#include "engine/status.h"
#include "server/core/session_store.h"

namespace rwkv::server {

void StreamMeter::Begin(std::shared_ptr<TenantUsage> usage, std::string tenant) {
  usage_ = std::move(usage);
  tenant_ = std::move(tenant);
  flushed_at_ = TenantUsage::Clock::now();
}

void StreamMeter::OnToken() {
  if (usage_ == nullptr) return;
  ++unflushed_;
  const auto now = TenantUsage::Clock::now();
  if (now - flushed_at_ >= std::chrono::seconds(1)) Flush(now);
}

void StreamMeter::End() {
  if (usage_ == nullptr) return;
  Flush(TenantUsage::Clock::now());
  usage_->EndStream(tenant_);
  usage_ = nullptr;
}

void StreamMeter::Flush(TenantUsage::Clock::time_point now) {
  if (unflushed_ > 0) usage_->AddTokens(tenant_, unflushed_, now);
  unflushed_ = 0;
  flushed_at_ = now;
}

void Frontend::Attach(Scheduler* scheduler, const Tokenizer* tokenizer, StateCodec codec, std::string backend_name,
                      StartStates states) {
  scheduler_ = scheduler;
  tokenizer_ = tokenizer;
  codec_ = std::move(codec);
  states_ = std::move(states);
  options_.limits.vocab = codec_.config.vocab;
  options_.vision.tokens = scheduler->image_tokens();  // Set before Start(); 0 = no images.
  backend_name_ = std::move(backend_name);
  slots_ = scheduler->backend().pool().capacity();  // Fixed at construction; read before the loop serves.
  scheduler->sessions().SetOwnerLimit([this](std::string_view tenant) { return SessionLimitOf(tenant); });
  ready_.store(true, std::memory_order_release);
}

absl::Status Frontend::Ready(bool mutating) const {
  if (!ready()) return absl::UnavailableError("the model is still loading; retry shortly");
  if (mutating && draining_) return absl::UnavailableError("server is draining; retry on another replica");
  return absl::OkStatus();
}

void Frontend::SetApiKeys(std::shared_ptr<const ApiKeys> keys) {
  std::lock_guard<std::mutex> lock(keys_mu_);
  keys_ = std::move(keys);
}

absl::StatusOr<Tenant> Frontend::Authenticate(std::optional<std::string_view> authorization,
                                              const char** failure) const {
  std::shared_ptr<const ApiKeys> keys;
  {
    std::lock_guard<std::mutex> lock(keys_mu_);
    keys = keys_;
  }
  if (keys == nullptr) return Tenant{"", options_.tenant_limits};
  if (!authorization) {
    *failure = "missing";
    return absl::UnauthenticatedError("this server needs an API key: send 'authorization: Bearer KEY'");
  }
  const std::string_view value = *authorization;
  constexpr std::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size() || !absl::EqualsIgnoreCase(AV(value.substr(0, kScheme.size())), AV(kScheme))) {
    *failure = "invalid";
    return absl::UnauthenticatedError("the authorization must be 'Bearer KEY'");
  }
  const Tenant* t = keys->Find(SV(absl::StripAsciiWhitespace(AV(value.substr(kScheme.size())))));
  if (t == nullptr) {
    *failure = "invalid";
    return absl::UnauthenticatedError("the API key is not valid");  // Never echoes the key.
  }
  return *t;
}

int Frontend::SessionLimitOf(std::string_view tenant) const {
  std::lock_guard<std::mutex> lock(keys_mu_);
  if (keys_ == nullptr) return options_.tenant_limits.max_sessions;
  const TenantLimits* l = keys_->LimitsOf(tenant);
  return l == nullptr ? 0 : l->max_sessions;  // A tenant whose keys were removed keeps its sessions.
}

absl::StatusOr<std::string> Frontend::ScopeId(const Tenant& tenant, std::string_view id, const char* field) {
  const std::string s(id);
  RWKV_RETURN_IF_ERROR(SessionStore::ValidateId(s, field));
  return ScopedSessionId(tenant.name, s);
}

std::string Frontend::NewSessionId(const Tenant& tenant) { return ScopedSessionId(tenant.name, SessionStore::NewId()); }

absl::Status Frontend::Unscope(const std::string& tenant, const absl::Status& s) {
  if (tenant.empty() || s.ok()) return s;
  absl::Status out(s.code(), absl::StrReplaceAll(s.message(), {{absl::StrCat(tenant, ":"), ""}}));
  s.ForEachPayload([&](absl::string_view url, const absl::Cord& p) { out.SetPayload(url, p); });
  return out;
}

std::optional<TimePoint> Frontend::DefaultDeadline() const {
  if (options_.default_deadline.count() > 0) return Clock::now() + options_.default_deadline;
  return std::nullopt;
}

absl::Status Frontend::SubmitGenerate(const Tenant& tenant, std::string_view initial_state, SequenceRequest seq,
                                      std::shared_ptr<SequenceSink> sink, StreamMeter* meter) {
  if (!initial_state.empty() && !seq.session_id.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("initial_state is for stateless requests and new sessions; session ",
                                                   seq.session_id, " continues from its own state"));
  }
  if (seq.session_id.empty()) {
    RWKV_ASSIGN_OR_RETURN(seq.start, states_.Resolve(initial_state, "initial_state"));
    // Prefix-cache entries are kept apart per start state (zeros: "").
    seq.cache_scope = seq.start == nullptr ? "" : initial_state.empty() ? states_.default_name() : std::string(initial_state);
  } else {
    seq.session_id = ScopedSessionId(tenant.name, seq.session_id);
  }
  if (!seq.deadline) seq.deadline = DefaultDeadline();
  RWKV_RETURN_IF_ERROR(usage_->BeginStream(tenant, TenantUsage::Clock::now()));
  meter->Begin(usage_, tenant.name);
  if (absl::Status st = scheduler_->Submit(std::move(seq), std::move(sink)); !st.ok()) {
    meter->End();
    return st;
  }
  return absl::OkStatus();
}

}  // namespace rwkv::server
