#include "server/service.h"

#include <deque>
#include <mutex>

#include "absl/strings/str_format.h"
#include "engine/status.h"
#include "server/log.h"
#include "server/status_map.h"

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
class RwkvService::StreamSink final : public SequenceSink {
 public:
  StreamSink(grpc::ServerWriteReactor<v1::GenerateResponse>* reactor, Scheduler* scheduler, Metrics* metrics,
             size_t buffer)
      : reactor_(reactor), scheduler_(scheduler), metrics_(metrics), buffer_(buffer) {}

  // Fields of the access log line; empty `request_id` = no line.
  void SetAccessLog(std::string request_id, std::string session_id) {
    request_id_ = std::move(request_id);
    session_id_ = std::move(session_id);
  }

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
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(msg));
    PumpLocked();
  }

  void OnFinish(FinalEvent f) override {
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
    std::lock_guard<std::mutex> lock(mu_);
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
      queue_.push_back(std::move(msg));
    }
    status_ = ToGrpcStatus(f.status);
    PumpLocked();
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
  std::deque<v1::GenerateResponse> queue_;
  v1::GenerateResponse current_;  // The write in flight.
  bool writing_ = false;
  bool finished_ = false;
  std::optional<grpc::Status> status_;
  std::atomic<bool> cancelled_{false};
  std::string request_id_, session_id_;
};

class RwkvService::GenerateReactor final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  GenerateReactor(Scheduler* scheduler, Metrics* metrics, size_t buffer)
      : sink_(std::make_shared<StreamSink>(this, scheduler, metrics, buffer)) {}
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
  ImportReactor(RwkvService* service, v1::Session* resp) : service_(service), resp_(resp) { StartRead(&req_); }

  void OnReadDone(bool ok) override {
    if (ok) {
      if (first_) session_id_ = req_.session_id();
      first_ = false;
      data_ += req_.data();
      if (data_.size() > service_->codec_.MaxBytes()) {
        // The header first: a state of a bigger model says so, naming both models.
        absl::StatusOr<StateHeader> h = service_->codec_.DecodeHeader(data_);
        if (!h.ok()) return Done(h.status());
        return Done(absl::InvalidArgumentError(absl::StrFormat(
            "data is over %d bytes, larger than any state of this model", service_->codec_.MaxBytes())));
      }
      return StartRead(&req_);
    }
    absl::StatusOr<ExportedState> state = service_->codec_.Decode(data_);
    if (!state.ok()) return Done(state.status());
    if (!session_id_.empty()) {
      if (absl::Status st = SessionStore::ValidateId(session_id_, "session_id"); !st.ok()) return Done(st);
    }
    Scheduler* sched = service_->scheduler_;
    sched->Post([this, sched, state = std::move(*state)]() mutable {
      absl::StatusOr<Session*> s = sched->sessions().Install(std::move(session_id_), std::move(state.state),
                                                             state.pending, state.token_count, Clock::now());
      if (s.ok()) service_->FillSession(**s, resp_);
      Done(s.status());
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
  v1::ImportSessionRequest req_;
  std::string data_;
  std::string session_id_;
  bool first_ = true;
};

void RwkvService::Attach(Scheduler* scheduler, const Tokenizer* tokenizer, StateCodec codec, std::string backend_name,
                         StartStates states) {
  scheduler_ = scheduler;
  tokenizer_ = tokenizer;
  codec_ = std::move(codec);
  states_ = std::move(states);
  options_.limits.vocab = codec_.config.vocab;
  backend_name_ = std::move(backend_name);
  slots_ = scheduler->backend().pool().capacity();  // Fixed at construction; read before the loop serves.
  ready_.store(true, std::memory_order_release);
}

absl::Status RwkvService::Ready(bool mutating) const {
  if (!ready_.load(std::memory_order_acquire)) return absl::UnavailableError("the model is still loading; retry shortly");
  if (mutating && draining_) return absl::UnavailableError("server is draining; retry on another replica");
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* RwkvService::Finish(grpc::CallbackServerContext* ctx, const char* method,
                                              const absl::Status& s) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  metrics_->RecordRpc(method, static_cast<grpc::StatusCode>(s.code()));
  reactor->Finish(ToGrpcStatus(s));
  return reactor;
}

grpc::ServerUnaryReactor* RwkvService::OnLoop(grpc::CallbackServerContext* ctx, const char* method, bool mutating,
                                              std::function<absl::Status()> fn) {
  if (absl::Status st = Ready(mutating); !st.ok()) return Finish(ctx, method, st);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  scheduler_->Post([this, reactor, method, fn = std::move(fn)] {
    const absl::Status st = fn();
    metrics_->RecordRpc(method, static_cast<grpc::StatusCode>(st.code()));
    reactor->Finish(ToGrpcStatus(st));
  });
  return reactor;
}

std::optional<TimePoint> RwkvService::Deadline(grpc::CallbackServerContext* ctx) const {
  const auto wall = ctx->deadline();
  const auto now_wall = std::chrono::system_clock::now();
  if (wall < now_wall + std::chrono::hours(24 * 365)) return Clock::now() + (wall - now_wall);
  if (options_.default_deadline.count() > 0) return Clock::now() + options_.default_deadline;
  return std::nullopt;
}

void RwkvService::FillSession(const Session& s, v1::Session* out) const {
  out->set_session_id(s.id);
  out->set_token_count(s.token_count);
  out->set_tier(s.tier == Tier::kDevice ? v1::TIER_DEVICE : s.tier == Tier::kHost ? v1::TIER_HOST : v1::TIER_DISK);
  out->set_busy(s.busy);
  out->set_created_unix_seconds(UnixSeconds(s.created_wall));
  out->set_last_used_unix_seconds(UnixSeconds(s.last_used_wall));
  const auto ttl = scheduler_->options().sessions.idle_ttl;
  out->set_expires_unix_seconds(ttl.count() > 0 ? UnixSeconds(s.last_used_wall + ttl) : 0);
}

grpc::ServerWriteReactor<v1::GenerateResponse>* RwkvService::Generate(grpc::CallbackServerContext* ctx,
                                                                       const v1::GenerateRequest* req) {
  auto* reactor = new GenerateReactor(scheduler_, metrics_, options_.stream_buffer);
  std::shared_ptr<StreamSink> sink = reactor->sink();
  if (options_.access_log) {
    static std::atomic<uint64_t> counter{0};
    sink->SetAccessLog(req->request_id().empty() ? absl::StrFormat("r%d", counter.fetch_add(1) + 1) : req->request_id(),
                       req->session_id());
  }
  absl::Status st = Ready(true);
  absl::StatusOr<SequenceRequest> seq = absl::UnavailableError("");
  if (st.ok()) {
    seq = ToSequenceRequest(*req, *tokenizer_, options_.limits);
    st = seq.status();
  }
  if (st.ok() && !req->initial_state().empty() && !req->session_id().empty()) {
    st = absl::InvalidArgumentError(absl::StrCat("initial_state is for stateless requests and new sessions; session ",
                                                 req->session_id(), " continues from its own state"));
  }
  if (st.ok() && req->session_id().empty()) {
    absl::StatusOr<std::shared_ptr<const ExportedState>> start = states_.Resolve(req->initial_state(), "initial_state");
    st = start.status();
    if (st.ok()) seq->start = std::move(*start);
  }
  if (st.ok()) {
    seq->deadline = Deadline(ctx);
    st = scheduler_->Submit(std::move(*seq), sink);
  }
  if (!st.ok()) sink->OnFinish(Failed(st));
  return reactor;
}

grpc::ServerUnaryReactor* RwkvService::CreateSession(grpc::CallbackServerContext* ctx,
                                                     const v1::CreateSessionRequest* req, v1::Session* resp) {
  if (absl::Status st = Ready(true); !st.ok()) return Finish(ctx, "CreateSession", st);
  absl::StatusOr<SequenceRequest> seq = ToCreateRequest(*req, *tokenizer_, options_.limits);
  if (!seq.ok()) return Finish(ctx, "CreateSession", seq.status());
  absl::StatusOr<std::shared_ptr<const ExportedState>> start = states_.Resolve(req->initial_state(), "initial_state");
  if (!start.ok()) return Finish(ctx, "CreateSession", start.status());
  seq->start = std::move(*start);
  seq->deadline = Deadline(ctx);

  // The new session's prompt runs through the scheduler like any sequence; its Finish answers.
  class CreateSink final : public SequenceSink {
   public:
    CreateSink(RwkvService* svc, grpc::ServerUnaryReactor* r, v1::Session* resp, std::string id)
        : svc_(svc), reactor_(r), resp_(resp), id_(std::move(id)) {}
    void OnChunk(ChunkEvent) override {}
    void OnFinish(FinalEvent f) override {
      if (f.status.ok()) {
        // Loop thread: the session exists and is no longer busy.
        if (const Session* s = svc_->scheduler_->sessions().Find(id_)) svc_->FillSession(*s, resp_);
      }
      svc_->metrics_->RecordRpc("CreateSession", static_cast<grpc::StatusCode>(f.status.code()));
      reactor_->Finish(ToGrpcStatus(f.status));
    }
    bool Cancelled() const override { return false; }  // Creation is short; the deadline bounds it.
    bool Backlogged() const override { return false; }

   private:
    RwkvService* svc_;
    grpc::ServerUnaryReactor* reactor_;
    v1::Session* resp_;
    std::string id_;
  };
  // An empty id is made here so that the sink knows which session to describe.
  if (seq->session_id.empty()) {
    static std::atomic<uint64_t> counter{0};
    seq->session_id = absl::StrFormat("s-%016x-%x", std::chrono::system_clock::now().time_since_epoch().count(),
                                      counter.fetch_add(1));
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  auto sink = std::make_shared<CreateSink>(this, reactor, resp, seq->session_id);
  if (absl::Status st = scheduler_->Submit(std::move(*seq), sink); !st.ok()) {
    metrics_->RecordRpc("CreateSession", static_cast<grpc::StatusCode>(st.code()));
    reactor->Finish(ToGrpcStatus(st));
  }
  return reactor;
}

grpc::ServerUnaryReactor* RwkvService::GetSession(grpc::CallbackServerContext* ctx, const v1::GetSessionRequest* req,
                                                  v1::Session* resp) {
  return OnLoop(ctx, "GetSession", false, [this, req, resp]() -> absl::Status {
    RWKV_ASSIGN_OR_RETURN(Session * s, scheduler_->sessions().Get(req->session_id()));
    FillSession(*s, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* RwkvService::ListSessions(grpc::CallbackServerContext* ctx,
                                                    const v1::ListSessionsRequest* req,
                                                    v1::ListSessionsResponse* resp) {
  return OnLoop(ctx, "ListSessions", false, [this, resp] {
    for (const Session* s : scheduler_->sessions().List()) FillSession(*s, resp->add_sessions());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* RwkvService::DeleteSession(grpc::CallbackServerContext* ctx,
                                                     const v1::DeleteSessionRequest* req,
                                                     v1::DeleteSessionResponse* resp) {
  return OnLoop(ctx, "DeleteSession", false, [this, req] { return scheduler_->sessions().Delete(req->session_id()); });
}

grpc::ServerUnaryReactor* RwkvService::ForkSession(grpc::CallbackServerContext* ctx, const v1::ForkSessionRequest* req,
                                                   v1::Session* resp) {
  if (!req->new_session_id().empty()) {
    if (absl::Status st = SessionStore::ValidateId(req->new_session_id(), "new_session_id"); !st.ok()) {
      return Finish(ctx, "ForkSession", st);
    }
  }
  return OnLoop(ctx, "ForkSession", true, [this, req, resp]() -> absl::Status {
    RWKV_ASSIGN_OR_RETURN(Session * s,
                          scheduler_->sessions().Fork(req->session_id(), req->new_session_id(), Clock::now()));
    FillSession(*s, resp);
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::StateChunk>* RwkvService::ExportSession(grpc::CallbackServerContext* ctx,
                                                                      const v1::ExportSessionRequest* req) {
  auto* reactor = new ExportReactor(metrics_, options_.export_chunk_bytes);
  if (absl::Status st = Ready(false); !st.ok()) {
    reactor->Start(st);
    return reactor;
  }
  std::string id = req->session_id();
  scheduler_->Post([this, reactor, id] {
    absl::StatusOr<Session*> s = scheduler_->sessions().Get(id);
    if (!s.ok()) return reactor->Start(s.status());
    std::vector<float> state;
    if (absl::Status st = scheduler_->sessions().ReadState(**s, &state); !st.ok()) return reactor->Start(st);
    reactor->Start(codec_.Encode(state, SessionStore::Header(**s)));
  });
  return reactor;
}

grpc::ServerReadReactor<v1::ImportSessionRequest>* RwkvService::ImportSession(grpc::CallbackServerContext* ctx,
                                                                              v1::Session* resp) {
  if (absl::Status st = Ready(true); !st.ok()) {
    // Read nothing: answer at once.
    class Refuse final : public grpc::ServerReadReactor<v1::ImportSessionRequest> {
     public:
      explicit Refuse(grpc::Status s) { Finish(s); }
      void OnDone() override { delete this; }
    };
    metrics_->RecordRpc("ImportSession", static_cast<grpc::StatusCode>(st.code()));
    return new Refuse(ToGrpcStatus(st));
  }
  return new ImportReactor(this, resp);
}

grpc::ServerUnaryReactor* RwkvService::Tokenize(grpc::CallbackServerContext* ctx, const v1::TokenizeRequest* req,
                                                v1::TokenizeResponse* resp) {
  if (absl::Status st = Ready(false); !st.ok()) return Finish(ctx, "Tokenize", st);
  const std::vector<int32_t> ids = tokenizer_->Encode(req->text());
  resp->mutable_token_ids()->Add(ids.begin(), ids.end());
  return Finish(ctx, "Tokenize", absl::OkStatus());
}

grpc::ServerUnaryReactor* RwkvService::Detokenize(grpc::CallbackServerContext* ctx, const v1::DetokenizeRequest* req,
                                                  v1::DetokenizeResponse* resp) {
  if (absl::Status st = Ready(false); !st.ok()) return Finish(ctx, "Detokenize", st);
  const std::vector<int32_t> ids(req->token_ids().begin(), req->token_ids().end());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (tokenizer_->TokenBytes(ids[i]) == nullptr) {
      return Finish(ctx, "Detokenize",
                    absl::InvalidArgumentError(absl::StrFormat("token_ids[%d] is %d, not in the vocabulary (ids below %d)",
                                                               i, ids[i], tokenizer_->id_limit())));
    }
  }
  absl::StatusOr<std::string> bytes = tokenizer_->Decode(ids);
  if (!bytes.ok()) return Finish(ctx, "Detokenize", bytes.status());
  std::string valid;
  const size_t used = AppendValidUtf8(*bytes, &valid);
  if (used < bytes->size()) valid += "\xEF\xBF\xBD";  // A trailing incomplete character.
  resp->set_text(valid);
  return Finish(ctx, "Detokenize", absl::OkStatus());
}

grpc::ServerUnaryReactor* RwkvService::GetModelInfo(grpc::CallbackServerContext* ctx,
                                                    const v1::GetModelInfoRequest* req, v1::ModelInfo* resp) {
  if (absl::Status st = Ready(false); !st.ok()) return Finish(ctx, "GetModelInfo", st);
  const ModelConfig& c = codec_.config;
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
  resp->set_backend(backend_name_);
  resp->set_model_fingerprint(codec_.fingerprint);
  v1::Limits* l = resp->mutable_limits();
  const SchedulerOptions& so = scheduler_->options();
  l->set_max_prompt_tokens(options_.limits.max_prompt_tokens);
  l->set_max_tokens(options_.limits.max_tokens);
  l->set_state_slots(slots_);
  l->set_step_token_budget(so.token_budget);
  l->set_max_running(so.max_running);
  l->set_queue_length(so.queue_length);
  l->set_max_sessions(so.sessions.max_sessions);
  l->set_host_state_bytes(static_cast<int64_t>(so.sessions.max_sessions) * c.StateBytes());
  l->set_session_idle_ttl_seconds(static_cast<double>(so.sessions.idle_ttl.count()));
  for (const std::string& n : states_.names()) resp->add_initial_states(n);
  resp->set_default_initial_state(states_.default_name());
  resp->set_tokenizer(std::string(tokenizer_->kind()));
  return Finish(ctx, "GetModelInfo", absl::OkStatus());
}

}  // namespace rwkv::server
