#include "server/http/openai_api.h"

#include <atomic>
#include <chrono>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/absl_compat.h"
#include "server/core/log.h"
#include "server/core/session_store.h"
#include "server/http/openai_json.h"

namespace rwkv::server {
namespace {

constexpr char kJson[] = "application/json";

HttpHeaders ErrorHeaders(const absl::Status& s) {
  // A client may retry these after a moment (the queue or a tenant window drains, a drain ends).
  if (s.code() == absl::StatusCode::kResourceExhausted || s.code() == absl::StatusCode::kUnavailable) {
    return {{"Retry-After", "1"}};
  }
  return {};
}

void RespondError(HttpExchange& ex, const absl::Status& s) {
  ex.Respond(openai::HttpStatus(s.code()), kJson, openai::ErrorJson(s), ErrorHeaders(s));
}

std::string Sse(std::string_view data) { return absl::StrCat("data: ", AV(data), "\n\n"); }

}  // namespace

// One request's answer, shared by its choices' sinks. Events arrive on the scheduler's loop
// thread (the refusal before submission on the I/O thread, when no sink can run yet).
class OpenAiApi::Call {
 public:
  Call(OpenAiApi* api, std::shared_ptr<HttpExchange> ex, openai::Request req, openai::Envelope env, Tenant tenant,
       std::string request_id, const char* method)
      : api_(api),
        ex_(std::move(ex)),
        endpoint_(req.endpoint),
        stream_(req.stream),
        include_usage_(req.include_usage),
        logprobs_(req.logprobs),
        n_(req.n),
        env_(std::move(env)),
        tenant_(std::move(tenant)),
        request_id_(std::move(request_id)),
        method_(method),
        choices_(req.n),
        role_sent_(req.n, false) {}

  HttpExchange& exchange() { return *ex_; }
  // Any thread: the client left, or the answer is out already (a choice failed): the choices
  // still running stop at the next step.
  bool Abandoned() const { return abandoned_.load() || ex_->closed(); }
  StreamMeter* meter() { return &meter_; }
  const Tenant& tenant() const { return tenant_; }
  size_t buffer() const { return api_->options_.stream_buffer; }

  void OnGenerated() { meter_.OnToken(); }

  void OnChunk(int index, ChunkEvent c) {
    if (answered_) return;
    openai::Choice& choice = choices_[index];
    if (!stream_) {
      choice.text += c.text;
      if (logprobs_) choice.logprobs.insert(choice.logprobs.end(), c.logprobs.begin(), c.logprobs.end());
      return;
    }
    Begin();
    ex_->Send(Sse(openai::ChunkJson(endpoint_, env_, index, TakeRole(index), c.text, logprobs_ ? &c.logprobs : nullptr,
                                    FinishReason::kNone, api_->frontend_->tokenizer())));
  }

  void OnFinish(int index, FinalEvent f) {
    f.status = Frontend::Unscope(tenant_.name, f.status);
    completion_tokens_ += f.generated_tokens;
    if (index == 0) {
      usage_.prompt_tokens = f.prompt_tokens;
      usage_.cached_tokens = f.cached_prompt_tokens;
      timing_ = f;
    }
    ++finished_;
    if (answered_) return Done();
    if (!f.status.ok()) {
      status_ = f.status;
      Fail(f.status);
      return Done();
    }
    choices_[index].reason = f.reason;
    if (stream_) {
      Begin();
      ex_->Send(Sse(openai::ChunkJson(endpoint_, env_, index, TakeRole(index), "", nullptr, f.reason, api_->frontend_->tokenizer())));
    }
    if (finished_ < n_) return;
    usage_.completion_tokens = completion_tokens_;
    answered_ = true;
    if (stream_) {
      if (include_usage_) ex_->Send(Sse(openai::UsageChunkJson(endpoint_, env_, usage_)));
      ex_->Send(Sse("[DONE]"));
      ex_->End();
    } else {
      ex_->Respond(200, kJson,
                   openai::ResponseJson(endpoint_, env_, choices_, usage_, logprobs_, api_->frontend_->tokenizer()));
    }
    Done();
  }

  // Refused before any sequence ran (I/O thread), or a choice failed (loop thread).
  void Fail(const absl::Status& s) {
    status_ = s;
    answered_ = true;
    abandoned_ = true;
    if (!started_) return RespondError(*ex_, s);
    ex_->Send(Sse(openai::ErrorJson(s)));
    ex_->Send(Sse("[DONE]"));
    ex_->End();
  }
  // Refused before submission: nothing else will finish it.
  void Refuse(const absl::Status& s) {
    Fail(s);
    finished_ = n_;
    Done();
  }

 private:
  // Whether choice `index`'s next chunk is its first in a chat (it carries the role).
  bool TakeRole(int index) {
    const bool role = endpoint_ == openai::Endpoint::kChat && !role_sent_[index];
    role_sent_[index] = true;
    return role;
  }

  void Begin() {
    if (started_) return;
    started_ = true;
    ex_->BeginStream(200, "text/event-stream", {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}});
  }

  // Once every choice has finished (or the request was refused): accounting and the log line.
  void Done() {
    if (finished_ < n_ || logged_) return;
    logged_ = true;
    if (meter_.active()) {
      meter_.End();
      api_->observer_->OnTenantTokens(tenant_.name, completion_tokens_);
    }
    if (std::optional<std::string> limit = TenantLimitOf(status_)) api_->observer_->OnTenantLimit(limit->c_str(), tenant_.name);
    api_->observer_->OnRequestDone(method_, status_.code());
    if (!api_->options_.access_log) return;
    Log(status_.ok() ? "info" : "warn", "http",
        absl::StrFormat("request_id=%s route=%s code=%s status=%d n=%d stream=%s prompt_tokens=%d cached_tokens=%d "
                        "generated_tokens=%d queue_s=%.4f first_token_s=%.4f total_s=%.4f%s",
                        LogValue(request_id_), method_, absl::StatusCodeToString(status_.code()),
                        openai::HttpStatus(status_.code()), n_, stream_ ? "true" : "false", usage_.prompt_tokens,
                        usage_.cached_tokens, completion_tokens_, timing_.queue_seconds, timing_.first_token_seconds,
                        timing_.total_seconds,
                        status_.ok() ? "" : absl::StrCat(" error=", LogValue(std::string(status_.message())))));
  }

  OpenAiApi* api_;
  std::shared_ptr<HttpExchange> ex_;
  const openai::Endpoint endpoint_;
  const bool stream_, include_usage_, logprobs_;
  const int n_;
  const openai::Envelope env_;
  const Tenant tenant_;
  const std::string request_id_;
  const char* method_;
  // Loop thread from submission on.
  std::vector<openai::Choice> choices_;
  std::vector<bool> role_sent_;
  openai::Usage usage_;
  FinalEvent timing_;
  int completion_tokens_ = 0;
  int finished_ = 0;
  bool started_ = false;   // The stream's headers are out.
  bool answered_ = false;  // The response (or its end) is out.
  bool logged_ = false;
  absl::Status status_;
  StreamMeter meter_;
  std::atomic<bool> abandoned_{false};
};

class OpenAiApi::ChoiceSink final : public SequenceSink {
 public:
  ChoiceSink(std::shared_ptr<Call> call, int index) : call_(std::move(call)), index_(index) {}
  void OnChunk(ChunkEvent chunk) override { call_->OnChunk(index_, std::move(chunk)); }
  void OnFinish(FinalEvent final) override { call_->OnFinish(index_, std::move(final)); }
  void OnGenerated() override { call_->OnGenerated(); }
  bool Cancelled() const override { return call_->Abandoned(); }
  bool Backlogged() const override { return call_->exchange().queued() >= call_->buffer(); }

 private:
  std::shared_ptr<Call> call_;
  const int index_;
};

OpenAiApi::OpenAiApi(OpenAiOptions options, Frontend* frontend, EdgeObserver* observer, MetricsRoutes routes)
    : options_(std::move(options)), frontend_(frontend), observer_(observer), routes_(std::move(routes)) {}

void OpenAiApi::Handle(std::shared_ptr<HttpExchange> ex) {
  if (HandleMetricsRoutes(*ex, routes_)) return;
  const HttpRequest& req = ex->request();
  const std::string_view path = req.Path();
  const bool models = path == "/v1/models" || absl::StartsWith(AV(path), "/v1/models/");
  const bool chat = path == "/v1/chat/completions";
  const bool completions = path == "/v1/completions";
  if (!models && !chat && !completions) {
    return RespondError(*ex, absl::NotFoundError(absl::StrCat(
                                 "no route ", AV(path.substr(0, 128)),
                                 "; this server has /v1/models, /v1/completions, /v1/chat/completions")));
  }
  const char* method = models ? "Models" : chat ? "ChatCompletions" : "Completions";
  const char* want = models ? "GET" : "POST";
  if (req.method != want) {
    observer_->OnRequestDone(method, absl::StatusCode::kInvalidArgument);
    ex->Respond(405, kJson,
                openai::ErrorJson(absl::InvalidArgumentError(absl::StrCat(AV(path), " takes ", want, " only"))),
                {{"Allow", want}});
    return;
  }
  const char* failure = "";
  absl::StatusOr<Tenant> tenant = frontend_->Authenticate(req.Header("authorization"), &failure);
  absl::Status st = tenant.status();
  if (!st.ok()) observer_->OnAuthFailure(failure);
  if (st.ok()) st = frontend_->Ready(!models);
  if (!st.ok()) {
    observer_->OnRequestDone(method, st.code());
    return RespondError(*ex, st);
  }
  if (models) {
    const std::string_view id = path.size() > 11 ? path.substr(11) : std::string_view();
    if (path != "/v1/models" && id != options_.model_name) {
      const absl::Status nf = absl::NotFoundError(absl::StrCat("model '", AV(id.substr(0, 128)), "' is not served here; this server serves '",
                                                               options_.model_name, "'"));
      observer_->OnRequestDone(method, nf.code());
      return RespondError(*ex, nf);
    }
    observer_->OnRequestDone(method, absl::StatusCode::kOk);
    return ex->Respond(200, kJson,
                       path == "/v1/models" ? openai::ModelsJson(options_.model_name, options_.created)
                                            : openai::ModelJson(options_.model_name, options_.created));
  }
  Generate(std::move(ex), *tenant, chat);
}

void OpenAiApi::Generate(std::shared_ptr<HttpExchange> ex, const Tenant& tenant, bool chat) {
  const HttpRequest& req = ex->request();
  const openai::Endpoint endpoint = chat ? openai::Endpoint::kChat : openai::Endpoint::kCompletions;
  const char* method = chat ? "ChatCompletions" : "Completions";
  static std::atomic<uint64_t> counter{0};
  std::string request_id = absl::StrFormat("h%d", counter.fetch_add(1) + 1);
  if (std::optional<std::string_view> rid = req.Header("x-request-id");
      rid && !rid->empty() && rid->size() <= frontend_->limits().max_request_id_bytes) {
    request_id = std::string(*rid);
  }
  absl::StatusOr<openai::Request> parsed =
      openai::ParseRequest(req.body, endpoint, frontend_->tokenizer(), frontend_->limits(), frontend_->chat(),
                           frontend_->vision());
  openai::Envelope env;
  env.id = absl::StrCat(chat ? "chatcmpl-" : "cmpl-", SessionStore::NewId());
  env.created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  env.model = options_.model_name;
  env.fingerprint = frontend_->codec().fingerprint;
  if (!parsed.ok()) {
    observer_->OnRequestDone(method, parsed.status().code());
    return RespondError(*ex, parsed.status());
  }
  SequenceRequest seq = std::move(parsed->seq);
  seq.request_id = request_id;
  const std::string initial_state = parsed->initial_state;
  Scheduler* scheduler = &frontend_->scheduler();
  ex->SetOnProgress([scheduler] { scheduler->Wake(); });
  const int n = parsed->n;
  auto call = std::make_shared<Call>(this, ex, std::move(*parsed), env, tenant, request_id, method);
  for (int i = 1; i < n; ++i) seq.forks.push_back(std::make_shared<ChoiceSink>(call, i));
  auto first = std::make_shared<ChoiceSink>(call, 0);
  absl::Status st = frontend_->SubmitGenerate(tenant, initial_state, std::move(seq), first, call->meter());
  if (!st.ok()) call->Refuse(Frontend::Unscope(tenant.name, st));
}

}  // namespace rwkv::server
