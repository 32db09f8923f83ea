#include "server/grpc/service.h"

#include <deque>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "engine/absl_compat.h"
#include "engine/status.h"
#include "server/core/log.h"
#include "server/grpc/status_map.h"

namespace rwkv::server {
namespace {

double UnixSeconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

v1::FinishReason ToProto(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return v1::FINISH_REASON_STOP;
    case FinishReason::kLength: return v1::FINISH_REASON_LENGTH;
    default: return v1::FINISH_REASON_UNSPECIFIED;
  }
}

}  // namespace

// Events of one sequence on their way to one stream: a bounded queue drained by one write at a
// time. The scheduler pushes; gRPC's write completions pull. Outlives the reactor (the scheduler
// may hold it after the RPC ended).
class RwkvService::StreamSink final : public SequenceSink, public std::enable_shared_from_this<StreamSink> {
 public:
  StreamSink(grpc::ServerWriteReactor<v1::GenerateResponse>* reactor, Scheduler* scheduler, Metrics* metrics,
             size_t buffer, std::weak_ptr<WritePump> pump)
      : reactor_(reactor), scheduler_(scheduler), metrics_(metrics), buffer_(buffer), pump_(std::move(pump)) {}

  // Fields of the access log line; empty `request_id` = no line.
  void SetAccessLog(std::string request_id, std::string session_id) {
    request_id_ = std::move(request_id);
    session_id_ = std::move(session_id);
  }
  // The caller's tenant: its messages are unscoped.
  void SetTenant(std::string tenant) { tenant_ = std::move(tenant); }
  // Loop thread; Frontend::SubmitGenerate begins it when the stream is admitted.
  StreamMeter* meter() { return &meter_; }

  void OnGenerated() override { meter_.OnToken(); }

  void OnChunk(ChunkEvent c) override {
    v1::GenerateResponse msg;
    v1::Chunk* out = msg.mutable_chunk();
    out->set_text(std::move(c.text));
    out->mutable_token_ids()->Add(c.token_ids.begin(), c.token_ids.end());
    for (const TokenLogprob& lp : c.logprobs) {
      v1::TokenLogprob* p = out->add_logprobs();
      p->set_token_id(lp.token);
      p->set_logprob(lp.logprob);
      for (const TopLogprob& t : lp.top) {
        v1::TopLogprob* tp = p->add_top();
        tp->set_token_id(t.token);
        tp->set_logprob(t.logprob);
      }
    }
    std::unique_lock<std::mutex> lock(mu_);
    queue_.push_back(std::move(msg));
    PumpSoonLocked(lock);
  }

  void OnFinish(FinalEvent f) override {
    f.status = Frontend::Unscope(tenant_, f.status);
    if (meter_.active()) {
      meter_.End();
      metrics_->RecordTenantTokens(tenant_, f.generated_tokens);
    }
    if (!request_id_.empty()) {
      Log(f.status.ok() ? "info" : "warn", "generate",
          absl::StrFormat("request_id=%s session=%s code=%s finish=%s prompt_tokens=%d generated_tokens=%d "
                          "queue_s=%.4f first_token_s=%.4f total_s=%.4f%s",
                          LogValue(request_id_), LogValue(session_id_.empty() ? "-" : session_id_),
                          CodeLabel(static_cast<grpc::StatusCode>(f.status.code())),
                          f.reason == FinishReason::kStop ? "stop" : f.reason == FinishReason::kLength ? "length" : "-",
                          f.prompt_tokens, f.generated_tokens, f.queue_seconds, f.first_token_seconds, f.total_seconds,
                          f.status.ok() ? "" : absl::StrCat(" error=", LogValue(std::string(f.status.message())))));
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (f.status.ok()) {
      v1::GenerateResponse msg;
      v1::Final* out = msg.mutable_final();
      out->set_finish_reason(ToProto(f.reason));
      out->set_matched_stop(f.matched_stop);
      out->set_session_tokens(f.session_tokens);
      v1::Usage* u = out->mutable_usage();
      u->set_prompt_tokens(f.prompt_tokens);
      u->set_generated_tokens(f.generated_tokens);
      u->set_queue_seconds(f.queue_seconds);
      u->set_first_token_seconds(f.first_token_seconds);
      u->set_total_seconds(f.total_seconds);
      u->set_cached_prompt_tokens(f.cached_prompt_tokens);
      queue_.push_back(std::move(msg));
    }
    status_ = ToGrpcStatus(f.status);
    PumpSoonLocked(lock);
  }

  bool Cancelled() const override { return cancelled_.load(); }
  bool Backlogged() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return queue_.size() >= buffer_;
  }

  void WriteDone(bool ok) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      if (!ok) cancelled_ = true;  // The stream broke: the client is gone.
      PumpLocked();
    }
    if (scheduler_ != nullptr) scheduler_->Wake();  // The sequence may have been paused on a full buffer.
  }
  void Cancel() {
    cancelled_ = true;
    if (scheduler_ != nullptr) scheduler_->Wake();
  }
  void Detach() {
    std::lock_guard<std::mutex> lock(mu_);
    reactor_ = nullptr;
  }

 private:
  // The scheduler's thread: the write (or the finish) this stream is ready for starts on the
  // pump's threads, not here. Releases the lock.
  void PumpSoonLocked(std::unique_lock<std::mutex>& lock) {
    if (writing_ || pump_posted_ || reactor_ == nullptr || finished_) return;
    std::shared_ptr<WritePump> pump = pump_.lock();
    if (pump == nullptr) return PumpLocked();
    pump_posted_ = true;
    lock.unlock();
    pump->Post([self = shared_from_this()] {
      std::lock_guard<std::mutex> lock(self->mu_);
      self->pump_posted_ = false;
      self->PumpLocked();
    });
  }

  void PumpLocked() {
    if (writing_ || reactor_ == nullptr || finished_) return;
    if (!queue_.empty()) {
      current_ = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
      reactor_->StartWrite(&current_);
    } else if (status_) {
      finished_ = true;
      metrics_->RecordRpc("Generate", status_->error_code());
      reactor_->Finish(*status_);
    }
  }

  mutable std::mutex mu_;
  grpc::ServerWriteReactor<v1::GenerateResponse>* reactor_;  // Null after OnDone.
  Scheduler* scheduler_;  // Null when the call was refused before the model was attached.
  Metrics* metrics_;
  const size_t buffer_;
  const std::weak_ptr<WritePump> pump_;
  std::deque<v1::GenerateResponse> queue_;
  v1::GenerateResponse current_;  // The write in flight.
  bool writing_ = false;
  bool pump_posted_ = false;  // A Post to the pump is on its way.
  bool finished_ = false;
  std::optional<grpc::Status> status_;
  std::atomic<bool> cancelled_{false};
  std::string request_id_, session_id_;
  std::string tenant_;
  StreamMeter meter_;  // Loop thread.
};

class RwkvService::GenerateReactor final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  GenerateReactor(Scheduler* scheduler, Metrics* metrics, size_t buffer, std::weak_ptr<WritePump> pump)
      : sink_(std::make_shared<StreamSink>(this, scheduler, metrics, buffer, std::move(pump))) {}
  std::shared_ptr<StreamSink> sink() { return sink_; }

  void OnWriteDone(bool ok) override { sink_->WriteDone(ok); }
  void OnCancel() override { sink_->Cancel(); }
  void OnDone() override {
    sink_->Detach();
    delete this;
  }

 private:
  std::shared_ptr<StreamSink> sink_;
};

class RwkvService::ExportReactor final : public grpc::ServerWriteReactor<v1::StateChunk> {
 public:
  ExportReactor(Metrics* metrics, size_t chunk) : metrics_(metrics), chunk_(chunk) {}
  // Any thread, once.
  void Start(absl::StatusOr<std::string> data) {
    if (!data.ok()) return Done(ToGrpcStatus(data.status()));
    data_ = std::move(*data);
    Next();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) return Done(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away during the export"));
    Next();
  }
  void OnDone() override { delete this; }

 private:
  void Next() {
    if (offset_ >= data_.size()) return Done(grpc::Status::OK);
    const size_t n = std::min(chunk_, data_.size() - offset_);
    msg_.set_data(data_.substr(offset_, n));
    offset_ += n;
    StartWrite(&msg_);
  }
  void Done(grpc::Status s) {
    metrics_->RecordRpc("ExportSession", s.error_code());
    Finish(s);
  }
  Metrics* metrics_;
  size_t chunk_;
  std::string data_;
  size_t offset_ = 0;
  v1::StateChunk msg_;
};

class RwkvService::ImportReactor final : public grpc::ServerReadReactor<v1::ImportSessionRequest> {
 public:
  ImportReactor(RwkvService* service, v1::Session* resp, Tenant tenant)
      : service_(service), resp_(resp), tenant_(std::move(tenant)) {
    StartRead(&req_);
  }

  void OnReadDone(bool ok) override {
    if (ok) {
      if (first_) session_id_ = req_.session_id();
      first_ = false;
      data_ += req_.data();
      if (data_.size() > service_->frontend_->codec().MaxBytes()) {
        // The header first: a state of a bigger model says so, naming both models.
        absl::StatusOr<StateHeader> h = service_->frontend_->codec().DecodeHeader(data_);
        if (!h.ok()) return Done(h.status());
        return Done(absl::InvalidArgumentError(absl::StrFormat(
            "data is over %d bytes, larger than any state of this model", service_->frontend_->codec().MaxBytes())));
      }
      return StartRead(&req_);
    }
    absl::StatusOr<ExportedState> state = service_->frontend_->codec().Decode(data_);
    if (!state.ok()) return Done(state.status());
    std::string id = Frontend::NewSessionId(tenant_);
    if (!session_id_.empty()) {
      absl::StatusOr<std::string> scoped = Frontend::ScopeId(tenant_, session_id_, "session_id");
      if (!scoped.ok()) return Done(scoped.status());
      id = std::move(*scoped);
    }
    Scheduler* sched = &service_->frontend_->scheduler();
    sched->Post([this, sched, id = std::move(id), state = std::move(*state)]() mutable {
      absl::StatusOr<Session*> s = sched->sessions().Install(std::move(id), std::move(state.state), state.pending,
                                                             state.token_count, Clock::now());
      if (s.ok()) service_->FillSession(**s, tenant_.name, resp_);
      service_->CountLimit(tenant_, s.status());
      Done(Frontend::Unscope(tenant_.name, s.status()));
    });
  }
  void OnDone() override { delete this; }

 private:
  void Done(const absl::Status& s) {
    service_->metrics_->RecordRpc("ImportSession", static_cast<grpc::StatusCode>(s.code()));
    Finish(ToGrpcStatus(s));
  }
  RwkvService* service_;
  v1::Session* resp_;
  const Tenant tenant_;
  v1::ImportSessionRequest req_;
  std::string data_;
  std::string session_id_;
  bool first_ = true;
};

absl::StatusOr<Tenant> RwkvService::Authenticate(grpc::CallbackServerContext* ctx) const {
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  std::optional<std::string_view> value;
  if (it != md.end()) value = std::string_view(it->second.data(), it->second.size());
  const char* failure = "";
  absl::StatusOr<Tenant> t = frontend_->Authenticate(value, &failure);
  if (!t.ok()) metrics_->RecordAuthFailure(failure);
  return t;
}

void RwkvService::CountLimit(const Tenant& tenant, const absl::Status& s) const {
  if (std::optional<std::string> limit = TenantLimitOf(s)) metrics_->RecordTenantLimit(limit->c_str(), tenant.name);
}

grpc::ServerUnaryReactor* RwkvService::Finish(grpc::CallbackServerContext* ctx, const char* method,
                                              const absl::Status& s) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  metrics_->RecordRpc(method, static_cast<grpc::StatusCode>(s.code()));
  reactor->Finish(ToGrpcStatus(s));
  return reactor;
}

grpc::ServerUnaryReactor* RwkvService::OnLoop(grpc::CallbackServerContext* ctx, const char* method, bool mutating,
                                              std::function<absl::Status(const Tenant&)> fn) {
  absl::StatusOr<Tenant> tenant = Authenticate(ctx);
  if (!tenant.ok()) return Finish(ctx, method, tenant.status());
  if (absl::Status st = frontend_->Ready(mutating); !st.ok()) return Finish(ctx, method, st);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  frontend_->scheduler().Post([this, reactor, method, fn = std::move(fn), tenant = std::move(*tenant)] {
    const absl::Status raw = fn(tenant);
    CountLimit(tenant, raw);
    const absl::Status st = Frontend::Unscope(tenant.name, raw);
    metrics_->RecordRpc(method, static_cast<grpc::StatusCode>(st.code()));
    reactor->Finish(ToGrpcStatus(st));
  });
  return reactor;
}

std::optional<TimePoint> RwkvService::Deadline(grpc::CallbackServerContext* ctx) const {
  const auto wall = ctx->deadline();
  const auto now_wall = std::chrono::system_clock::now();
  if (wall < now_wall + std::chrono::hours(24 * 365)) return Clock::now() + (wall - now_wall);
  return frontend_->DefaultDeadline();
}

void RwkvService::FillSession(const Session& s, const std::string& tenant, v1::Session* out) const {
  out->set_session_id(std::string(UnscopedSessionId(tenant, s.id)));
  out->set_token_count(s.token_count);
  out->set_tier(s.tier == Tier::kDevice ? v1::TIER_DEVICE : s.tier == Tier::kHost ? v1::TIER_HOST : v1::TIER_DISK);
  out->set_busy(s.busy);
  out->set_created_unix_seconds(UnixSeconds(s.created_wall));
  out->set_last_used_unix_seconds(UnixSeconds(s.last_used_wall));
  const auto ttl = frontend_->scheduler().options().sessions.idle_ttl;
  out->set_expires_unix_seconds(ttl.count() > 0 ? UnixSeconds(s.last_used_wall + ttl) : 0);
}

grpc::ServerWriteReactor<v1::GenerateResponse>* RwkvService::Generate(grpc::CallbackServerContext* ctx,
                                                                       const v1::GenerateRequest* req) {
  auto* reactor = new GenerateReactor(frontend_->ready() ? &frontend_->scheduler() : nullptr, metrics_,
                                      options_.stream_buffer, pump_);
  std::shared_ptr<StreamSink> sink = reactor->sink();
  if (options_.access_log) {
    static std::atomic<uint64_t> counter{0};
    const bool own_id = !req->request_id().empty() && req->request_id().size() <= frontend_->limits().max_request_id_bytes;
    const bool bounded_session = req->session_id().size() <= SessionStore::kMaxIdBytes;
    sink->SetAccessLog(own_id ? req->request_id() : absl::StrFormat("r%d", counter.fetch_add(1) + 1),
                       bounded_session ? req->session_id() : "(invalid)");
  }
  absl::StatusOr<Tenant> tenant = Authenticate(ctx);
  absl::Status st = tenant.status();
  if (st.ok()) st = frontend_->Ready(true);
  if (st.ok()) {
    sink->SetTenant(tenant->name);
    absl::StatusOr<SequenceRequest> seq =
        ToSequenceRequest(*req, frontend_->tokenizer(), frontend_->limits(), frontend_->chat(), frontend_->vision());
    st = seq.status();
    if (st.ok()) {
      seq->deadline = Deadline(ctx);
      st = frontend_->SubmitGenerate(*tenant, req->initial_state(), std::move(*seq), sink, sink->meter());
      CountLimit(*tenant, st);
    }
  }
  if (!st.ok()) sink->OnFinish(Failed(st));
  return reactor;
}

grpc::ServerUnaryReactor* RwkvService::CreateSession(grpc::CallbackServerContext* ctx,
                                                     const v1::CreateSessionRequest* req, v1::Session* resp) {
  absl::StatusOr<Tenant> tenant = Authenticate(ctx);
  if (!tenant.ok()) return Finish(ctx, "CreateSession", tenant.status());
  if (absl::Status st = frontend_->Ready(true); !st.ok()) return Finish(ctx, "CreateSession", st);
  absl::StatusOr<SequenceRequest> seq = ToCreateRequest(*req, frontend_->tokenizer(), frontend_->limits(), frontend_->vision());
  if (!seq.ok()) return Finish(ctx, "CreateSession", seq.status());
  absl::StatusOr<std::shared_ptr<const ExportedState>> start = frontend_->states().Resolve(req->initial_state(), "initial_state");
  if (!start.ok()) return Finish(ctx, "CreateSession", start.status());
  seq->start = std::move(*start);
  seq->deadline = Deadline(ctx);
  // An empty id is made here, in the tenant's scope, so that the sink knows which session to describe.
  seq->session_id = seq->session_id.empty() ? Frontend::NewSessionId(*tenant) : ScopedSessionId(tenant->name, seq->session_id);

  // The new session's prompt runs through the scheduler like any sequence; its Finish answers.
  // A client that cancels (or whose deadline passes) while the prompt runs gets no session: the
  // scheduler drops a cancelled creation and deletes what it made.
  class CreateSink final : public SequenceSink {
   public:
    CreateSink(RwkvService* svc, grpc::CallbackServerContext* ctx, grpc::ServerUnaryReactor* r, v1::Session* resp,
               std::string id, Tenant tenant)
        : svc_(svc), ctx_(ctx), reactor_(r), resp_(resp), id_(std::move(id)), tenant_(std::move(tenant)) {}
    void OnChunk(ChunkEvent) override {}
    void OnFinish(FinalEvent f) override {
      if (f.status.ok()) {
        // Loop thread: the session exists and is no longer busy.
        if (const Session* s = svc_->frontend_->scheduler().sessions().Find(id_)) svc_->FillSession(*s, tenant_.name, resp_);
      }
      svc_->CountLimit(tenant_, f.status);
      svc_->metrics_->RecordRpc("CreateSession", static_cast<grpc::StatusCode>(f.status.code()));
      done_ = true;  // ctx_ may go with the Finish below.
      reactor_->Finish(ToGrpcStatus(Frontend::Unscope(tenant_.name, f.status)));
    }
    bool Cancelled() const override { return !done_.load() && ctx_->IsCancelled(); }
    bool Backlogged() const override { return false; }

   private:
    RwkvService* svc_;
    grpc::CallbackServerContext* ctx_;
    grpc::ServerUnaryReactor* reactor_;
    v1::Session* resp_;
    std::string id_;
    const Tenant tenant_;
    std::atomic<bool> done_{false};
  };
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  auto sink = std::make_shared<CreateSink>(this, ctx, reactor, resp, seq->session_id, *tenant);
  if (absl::Status st = frontend_->scheduler().Submit(std::move(*seq), sink); !st.ok()) {
    metrics_->RecordRpc("CreateSession", static_cast<grpc::StatusCode>(st.code()));
    reactor->Finish(ToGrpcStatus(st));
  }
  return reactor;
}

grpc::ServerUnaryReactor* RwkvService::GetSession(grpc::CallbackServerContext* ctx, const v1::GetSessionRequest* req,
                                                  v1::Session* resp) {
  return OnLoop(ctx, "GetSession", false, [this, req, resp](const Tenant& t) -> absl::Status {
    RWKV_ASSIGN_OR_RETURN(std::string id, Frontend::ScopeId(t, req->session_id(), "session_id"));
    RWKV_ASSIGN_OR_RETURN(Session * s, frontend_->scheduler().sessions().Get(id));
    FillSession(*s, t.name, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* RwkvService::ListSessions(grpc::CallbackServerContext* ctx,
                                                    const v1::ListSessionsRequest* req,
                                                    v1::ListSessionsResponse* resp) {
  return OnLoop(ctx, "ListSessions", false, [this, resp](const Tenant& t) {
    for (const Session* s : frontend_->scheduler().sessions().List()) {
      if (SessionOwner(s->id) == t.name) FillSession(*s, t.name, resp->add_sessions());
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* RwkvService::DeleteSession(grpc::CallbackServerContext* ctx,
                                                     const v1::DeleteSessionRequest* req,
                                                     v1::DeleteSessionResponse* resp) {
  return OnLoop(ctx, "DeleteSession", false, [this, req](const Tenant& t) -> absl::Status {
    RWKV_ASSIGN_OR_RETURN(std::string id, Frontend::ScopeId(t, req->session_id(), "session_id"));
    return frontend_->scheduler().sessions().Delete(id);
  });
}

grpc::ServerUnaryReactor* RwkvService::ForkSession(grpc::CallbackServerContext* ctx, const v1::ForkSessionRequest* req,
                                                   v1::Session* resp) {
  return OnLoop(ctx, "ForkSession", true, [this, req, resp](const Tenant& t) -> absl::Status {
    RWKV_ASSIGN_OR_RETURN(std::string src, Frontend::ScopeId(t, req->session_id(), "session_id"));
    std::string dst = Frontend::NewSessionId(t);
    if (!req->new_session_id().empty()) {
      RWKV_ASSIGN_OR_RETURN(dst, Frontend::ScopeId(t, req->new_session_id(), "new_session_id"));
    }
    RWKV_ASSIGN_OR_RETURN(Session * s, frontend_->scheduler().sessions().Fork(src, std::move(dst), Clock::now()));
    FillSession(*s, t.name, resp);
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::StateChunk>* RwkvService::ExportSession(grpc::CallbackServerContext* ctx,
                                                                      const v1::ExportSessionRequest* req) {
  auto* reactor = new ExportReactor(metrics_, options_.export_chunk_bytes);
  absl::StatusOr<Tenant> tenant = Authenticate(ctx);
  absl::Status st = tenant.status();
  if (st.ok()) st = frontend_->Ready(false);
  absl::StatusOr<std::string> id = st.ok() ? Frontend::ScopeId(*tenant, req->session_id(), "session_id") : st;
  if (!id.ok()) {
    reactor->Start(id.status());
    return reactor;
  }
  frontend_->scheduler().Post([this, reactor, id = std::move(*id), tenant = std::move(*tenant)] {
    absl::StatusOr<Session*> s = frontend_->scheduler().sessions().Get(id);
    if (!s.ok()) return reactor->Start(Frontend::Unscope(tenant.name, s.status()));
    std::vector<float> state;
    if (absl::Status st = frontend_->scheduler().sessions().ReadState(**s, &state); !st.ok()) {
      return reactor->Start(Frontend::Unscope(tenant.name, st));
    }
    StateHeader header = SessionStore::Header(**s);
    header.session_id = std::string(UnscopedSessionId(tenant.name, header.session_id));  // As the client knows it.
    reactor->Start(frontend_->codec().Encode(state, header));
  });
  return reactor;
}

grpc::ServerReadReactor<v1::ImportSessionRequest>* RwkvService::ImportSession(grpc::CallbackServerContext* ctx,
                                                                              v1::Session* resp) {
  absl::StatusOr<Tenant> tenant = Authenticate(ctx);
  absl::Status st = tenant.status();
  if (st.ok()) st = frontend_->Ready(true);
  if (!st.ok()) {
    // Read nothing: answer at once.
    class Refuse final : public grpc::ServerReadReactor<v1::ImportSessionRequest> {
     public:
      explicit Refuse(grpc::Status s) { Finish(s); }
      void OnDone() override { delete this; }
    };
    metrics_->RecordRpc("ImportSession", static_cast<grpc::StatusCode>(st.code()));
    return new Refuse(ToGrpcStatus(st));
  }
  return new ImportReactor(this, resp, std::move(*tenant));
}

grpc::ServerUnaryReactor* RwkvService::Tokenize(grpc::CallbackServerContext* ctx, const v1::TokenizeRequest* req,
                                                v1::TokenizeResponse* resp) {
  absl::StatusOr<Tenant> tenant = Authenticate(ctx);
  if (!tenant.ok()) return Finish(ctx, "Tokenize", tenant.status());
  if (absl::Status st = frontend_->Ready(false); !st.ok()) return Finish(ctx, "Tokenize", st);
  const std::vector<int32_t> ids = frontend_->tokenizer().Encode(req->text());
  resp->mutable_token_ids()->Add(ids.begin(), ids.end());
  return Finish(ctx, "Tokenize", absl::OkStatus());
}

grpc::ServerUnaryReactor* RwkvService::Detokenize(grpc::CallbackServerContext* ctx, const v1::DetokenizeRequest* req,
                                                  v1::DetokenizeResponse* resp) {
  absl::StatusOr<Tenant> tenant = Authenticate(ctx);
  if (!tenant.ok()) return Finish(ctx, "Detokenize", tenant.status());
  if (absl::Status st = frontend_->Ready(false); !st.ok()) return Finish(ctx, "Detokenize", st);
  // Every id the model can produce is valid; those the tokenizer has no bytes for are text-less
  // (as in a stream: IncrementalDecoder).
  std::string bytes;
  for (int i = 0; i < req->token_ids_size(); ++i) {
    const int32_t id = req->token_ids(i);
    if (id < 0 || id >= frontend_->limits().vocab) {
      return Finish(ctx, "Detokenize",
                    absl::InvalidArgumentError(absl::StrFormat("token_ids[%d] is %d, outside the vocabulary [0, %d)", i,
                                                               id, frontend_->limits().vocab)));
    }
    if (const std::string* b = frontend_->tokenizer().TokenBytes(id)) bytes += *b;
  }
  std::string valid;
  const size_t used = AppendValidUtf8(bytes, &valid);
  if (used < bytes.size()) valid += "\xEF\xBF\xBD";  // A trailing incomplete character.
  resp->set_text(valid);
  return Finish(ctx, "Detokenize", absl::OkStatus());
}

grpc::ServerUnaryReactor* RwkvService::GetModelInfo(grpc::CallbackServerContext* ctx,
                                                    const v1::GetModelInfoRequest* req, v1::ModelInfo* resp) {
  absl::StatusOr<Tenant> tenant = Authenticate(ctx);
  if (!tenant.ok()) return Finish(ctx, "GetModelInfo", tenant.status());
  if (absl::Status st = frontend_->Ready(false); !st.ok()) return Finish(ctx, "GetModelInfo", st);
  const ModelConfig& c = frontend_->codec().config;
  resp->set_architecture(ArchitectureName(c.arch));
  resp->set_description(c.Describe());
  resp->set_n_layer(c.n_layer);
  resp->set_n_embd(c.n_embd);
  resp->set_n_head(c.n_head);
  resp->set_head_size(c.head_size);
  resp->set_ffn_dim(c.ffn_dim);
  resp->set_vocab_size(c.vocab);
  resp->set_parameters(c.parameter_count);
  resp->set_state_bytes(c.StateBytes());
  resp->set_backend(frontend_->backend_name());
  resp->set_model_fingerprint(frontend_->codec().fingerprint);
  v1::Limits* l = resp->mutable_limits();
  const SchedulerOptions& so = frontend_->scheduler().options();
  l->set_max_prompt_tokens(frontend_->limits().max_prompt_tokens);
  l->set_max_tokens(frontend_->limits().max_tokens);
  if (frontend_->vision().tokens > 0) {
    l->set_max_images(frontend_->vision().max_images);
    l->set_max_image_bytes(frontend_->vision().image.max_bytes);
    l->set_max_image_pixels(frontend_->vision().image.max_pixels);
  }
  l->set_state_slots(frontend_->slots());
  l->set_step_token_budget(so.token_budget);
  l->set_max_running(so.max_running);
  l->set_queue_length(so.queue_length);
  l->set_max_sessions(so.sessions.max_sessions);
  l->set_host_state_bytes(static_cast<int64_t>(so.sessions.max_sessions) * c.StateBytes());
  l->set_session_idle_ttl_seconds(static_cast<double>(so.sessions.idle_ttl.count()));
  for (const std::string& n : frontend_->states().names()) resp->add_initial_states(n);
  resp->set_default_initial_state(frontend_->states().default_name());
  resp->set_tokenizer(std::string(frontend_->tokenizer().kind()));
  resp->set_image_tokens(frontend_->vision().tokens);
  return Finish(ctx, "GetModelInfo", absl::OkStatus());
}

}  // namespace rwkv::server
