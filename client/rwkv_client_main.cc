// rwkv-client: the command line for rwkv-server.
#include <signal.h>

#include <atomic>
#include <cmath>
#include <map>
#include <set>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/client.h"
#include "client/flags.h"
#include "client/load.h"
#include "client/plot.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace rwkv::client {
namespace {

constexpr char kUsage[] = R"(usage: rwkv-client [--server HOST:PORT] [--timeout SECONDS] [--api-key KEY]
                   [--tls] [--tls-ca PEM] [--tls-cert PEM --tls-key PEM] [--tls-server-name NAME] COMMAND [args]

commands:
  generate --prompt TEXT | --tokens 1,2,3      stream a completion to stdout
           [--image FILE]... (a VisualRWKV model: one per "<image>" marker in --prompt)
           [--session ID | --state NAME] [--max-tokens 256] [--stop STR]... [--stop-token ID]... [--ignore-eos]
           [--temperature 1] [--top-p 0.85] [--top-k 0] [--min-p 0] [--presence-penalty 0]
           [--frequency-penalty 0] [--penalty-decay 1] [--seed 0] [--logprobs N] [--json]
  chat     [--session ID | --state NAME] [--max-tokens 500] [sampling flags]
           an interactive conversation on a session; each turn sends only the new message
  session  create [--id ID] [--prompt TEXT] [--image FILE]... [--state NAME] | list | get ID | fork ID [--id NEW] | delete ID
           | export ID FILE | import FILE [--id ID]
  info                                          model, backend and limits
  health   [--service rwkv.v1.Rwkv]             grpc.health.v1 status; exit 0 only when SERVING
  tokenize TEXT | detokenize 1,2,3
  bench    [--concurrency 1,4,16,64] [--requests N | --duration SECONDS] [--prompt-tokens 16]
           [--max-tokens 64] [--temperature 0] [--sessions] [--json FILE] [--plot DIR] [--no-progress]
           --sessions: each stream runs its requests as turns of a session of its own

--state NAME starts from one of the server's start states (`info` lists them; none = zeros).
--server defaults to $RWKV_SERVER, else localhost:50051. --api-key defaults to $RWKV_API_KEY and goes as
`authorization: Bearer KEY`. --tls (implied by --tls-ca or --tls-cert) connects over TLS, checking the
server against --tls-ca (else the system roots); --tls-cert/--tls-key present a client certificate (mTLS).
Unknown flags and values that do not parse exit 2. Sessions go with the header
x-rwkv-session-id, for proxies that route a session's turns to one replica.
)";

// Every flag a command takes, with the type its value must parse as. Unknown flags and values
// that do not parse are usage errors (exit 2), checked before anything is sent.
enum class FlagType { kString, kBool, kInt, kDouble, kIntList };
using FlagTable = std::map<std::string, FlagType>;

const FlagTable kGlobalFlags = {
    {"server", FlagType::kString},  {"timeout", FlagType::kDouble},   {"api-key", FlagType::kString},
    {"tls-ca", FlagType::kString},  {"tls-cert", FlagType::kString},  {"tls-key", FlagType::kString},
    {"tls-server-name", FlagType::kString}, {"tls", FlagType::kBool}, {"help", FlagType::kBool}};
const FlagTable kSamplingFlags = {
    {"temperature", FlagType::kDouble},      {"top-p", FlagType::kDouble},
    {"min-p", FlagType::kDouble},            {"presence-penalty", FlagType::kDouble},
    {"frequency-penalty", FlagType::kDouble}, {"penalty-decay", FlagType::kDouble},
    {"top-k", FlagType::kInt},               {"seed", FlagType::kInt}};

FlagTable CommandFlags(const std::string& cmd) {
  FlagTable t = kGlobalFlags;
  auto add = [&t](const FlagTable& more) { t.insert(more.begin(), more.end()); };
  if (cmd == "generate") {
    add(kSamplingFlags);
    add({{"prompt", FlagType::kString}, {"tokens", FlagType::kIntList}, {"session", FlagType::kString},
         {"state", FlagType::kString}, {"max-tokens", FlagType::kInt}, {"stop", FlagType::kString},
         {"stop-token", FlagType::kInt}, {"ignore-eos", FlagType::kBool}, {"json", FlagType::kBool},
         {"logprobs", FlagType::kInt}, {"image", FlagType::kString}});
  } else if (cmd == "chat") {
    add(kSamplingFlags);
    add({{"session", FlagType::kString}, {"state", FlagType::kString}, {"max-tokens", FlagType::kInt}});
  } else if (cmd == "session") {
    add({{"id", FlagType::kString}, {"state", FlagType::kString}, {"prompt", FlagType::kString},
         {"image", FlagType::kString}});
  } else if (cmd == "health") {
    add({{"service", FlagType::kString}});
  } else if (cmd == "bench") {
    add({{"concurrency", FlagType::kIntList}, {"requests", FlagType::kInt}, {"duration", FlagType::kDouble},
         {"prompt-tokens", FlagType::kInt}, {"max-tokens", FlagType::kInt}, {"temperature", FlagType::kDouble},
         {"sessions", FlagType::kBool}, {"no-progress", FlagType::kBool}, {"json", FlagType::kString},
         {"plot", FlagType::kString}});
  }
  return t;
}

// The command: the first argument that is neither a flag nor the value of a global flag.
std::string FindCommand(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() < 3 || a.rfind("--", 0) != 0) return a;
    const std::string name = a.substr(2);
    if (name.find('=') != std::string::npos) continue;
    auto it = kGlobalFlags.find(name);
    if (it != kGlobalFlags.end() && it->second != FlagType::kBool) ++i;  // Its value.
  }
  return "";
}

// Every given flag is known to the command and its values parse as their type.
absl::Status CheckFlags(const Flags& f, const FlagTable& table, const std::string& cmd) {
  std::set<std::string> known;
  for (const auto& [name, type] : table) known.insert(name);
  if (absl::Status st = f.Check(known); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(st.message(), cmd.empty() ? "" : absl::StrCat(" for ", cmd)));
  }
  for (const auto& [name, type] : table) {
    if (!f.Has(name)) continue;
    for (const std::string& v : f.All(name)) {
      bool ok = true;
      double d;
      int64_t n;
      switch (type) {
        case FlagType::kDouble: ok = absl::SimpleAtod(v, &d) && std::isfinite(d); break;
        case FlagType::kInt: ok = absl::SimpleAtoi(v, &n); break;
        case FlagType::kIntList:
          for (absl::string_view part : absl::StrSplit(v, ',', absl::SkipWhitespace())) ok = ok && absl::SimpleAtoi(part, &n);
          break;
        default: break;
      }
      if (!ok) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--", name, ": '", v.substr(0, 64), "' is not ",
            type == FlagType::kDouble ? "a number" : type == FlagType::kInt ? "an integer" : "a list of integers"));
      }
    }
  }
  return absl::OkStatus();
}

std::atomic<bool> g_interrupted{false};

absl::Status Fail(const std::string& what, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
}

absl::Status Sampling(const Flags& f, v1::SamplingParams* p) {
  auto set_float = [&](const char* name, auto setter) -> absl::Status {
    if (!f.Has(name)) return absl::OkStatus();
    absl::StatusOr<double> v = f.Double(name, 0);
    if (!v.ok()) return v.status();
    setter(static_cast<float>(*v));
    return absl::OkStatus();
  };
  for (auto st : {set_float("temperature", [&](float v) { p->set_temperature(v); }),
                  set_float("top-p", [&](float v) { p->set_top_p(v); }),
                  set_float("min-p", [&](float v) { p->set_min_p(v); }),
                  set_float("presence-penalty", [&](float v) { p->set_presence_penalty(v); }),
                  set_float("frequency-penalty", [&](float v) { p->set_frequency_penalty(v); }),
                  set_float("penalty-decay", [&](float v) { p->set_penalty_decay(v); })}) {
    if (!st.ok()) return st;
  }
  if (f.Has("top-k")) {
    absl::StatusOr<int64_t> v = f.Int("top-k", 0);
    if (!v.ok()) return v.status();
    p->set_top_k(static_cast<int32_t>(*v));
  }
  if (f.Has("seed")) {
    absl::StatusOr<int64_t> v = f.Int("seed", 0);
    if (!v.ok()) return v.status();
    p->set_seed(static_cast<uint64_t>(*v));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> Ids(const std::string& s) {
  std::vector<int32_t> out;
  for (absl::string_view part : absl::StrSplit(s, ',', absl::SkipWhitespace())) {
    int32_t v;
    if (!absl::SimpleAtoi(part, &v)) return absl::InvalidArgumentError(absl::StrCat("'", part, "' is not a token id"));
    out.push_back(v);
  }
  return out;
}

CallOptions Options(const Flags& f) {
  CallOptions o;
  absl::StatusOr<double> t = f.Double("timeout", 0);  // Checked by CheckFlags.
  if (t.ok() && *t > 0) o.timeout = std::chrono::milliseconds(static_cast<int64_t>(*t * 1000));
  return o;
}

void PrintSession(const v1::Session& s) {
  std::printf("%s\ttokens=%lld\ttier=%s\tbusy=%s\tlast_used=%.0f\n", s.session_id().c_str(),
              static_cast<long long>(s.token_count()), v1::Tier_Name(s.tier()).c_str() + 5, s.busy() ? "yes" : "no",
              s.last_used_unix_seconds());
}

// --image FILE (repeatable): the files, in order, for the "<image>" markers of --prompt.
absl::Status AddImages(const Flags& f, google::protobuf::RepeatedPtrField<v1::Image>* out) {
  for (const std::string& path : f.All("image")) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("--image: cannot open ", path));
    out->Add()->set_data(std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()));
  }
  return absl::OkStatus();
}

absl::Status Generate(Client& c, const Flags& f) {
  v1::GenerateRequest g;
  if (absl::Status st = AddImages(f, g.mutable_images()); !st.ok()) return st;
  if (f.Has("tokens")) {
    absl::StatusOr<std::vector<int32_t>> ids = Ids(f.Get("tokens"));
    if (!ids.ok()) return ids.status();
    g.mutable_token_ids()->mutable_ids()->Add(ids->begin(), ids->end());
  } else {
    g.set_text(f.Get("prompt"));
  }
  g.set_session_id(f.Get("session"));
  g.set_initial_state(f.Get("state"));
  if (absl::Status st = Sampling(f, g.mutable_sampling()); !st.ok()) return st;
  absl::StatusOr<int64_t> max_tokens = f.Int("max-tokens", 256);
  if (!max_tokens.ok()) return max_tokens.status();
  g.mutable_stop()->set_max_tokens(static_cast<int32_t>(*max_tokens));
  for (const std::string& s : f.All("stop")) g.mutable_stop()->add_stop_strings(s);
  for (const std::string& s : f.All("stop-token")) {
    int32_t id;
    if (!absl::SimpleAtoi(s, &id)) return absl::InvalidArgumentError(absl::StrCat("--stop-token '", s, "' is not an id"));
    g.mutable_stop()->add_stop_token_ids(id);
  }
  g.mutable_stop()->set_ignore_eos(f.Bool("ignore-eos"));
  const bool json = f.Bool("json");
  g.mutable_output()->set_token_ids(json);
  if (f.Has("logprobs")) {
    absl::StatusOr<int64_t> n = f.Int("logprobs", 0);
    if (!n.ok()) return n.status();
    g.mutable_output()->set_logprobs(true);
    g.mutable_output()->set_top_logprobs(static_cast<int32_t>(*n));
  }
  std::string text;
  nlohmann::json ids = nlohmann::json::array(), logprobs = nlohmann::json::array();
  absl::StatusOr<v1::Final> final = c.Generate(
      g,
      [&](const v1::Chunk& ch) {
        if (json) {
          text += ch.text();
          for (int32_t id : ch.token_ids()) ids.push_back(id);
          for (const v1::TokenLogprob& lp : ch.logprobs()) {
            nlohmann::json top = nlohmann::json::array();
            for (const v1::TopLogprob& t : lp.top()) top.push_back({{"token_id", t.token_id()}, {"logprob", t.logprob()}});
            logprobs.push_back({{"token_id", lp.token_id()}, {"logprob", lp.logprob()}, {"top", top}});
          }
        } else {
          std::fwrite(ch.text().data(), 1, ch.text().size(), stdout);
          std::fflush(stdout);
        }
        return !g_interrupted.load();
      },
      Options(f));
  if (!final.ok()) {
    if (!json) std::printf("\n");
    return Fail("generate", final.status());
  }
  const v1::Usage& u = final->usage();
  if (json) {
    nlohmann::json out = {{"text", text},
                          {"token_ids", ids},
                          {"finish_reason", v1::FinishReason_Name(final->finish_reason())},
                          {"matched_stop", final->matched_stop()},
                          {"session_tokens", final->session_tokens()},
                          {"usage",
                           {{"prompt_tokens", u.prompt_tokens()},
                            {"generated_tokens", u.generated_tokens()},
                            {"cached_prompt_tokens", u.cached_prompt_tokens()},
                            {"queue_seconds", u.queue_seconds()},
                            {"first_token_seconds", u.first_token_seconds()},
                            {"total_seconds", u.total_seconds()}}}};
    if (g.output().logprobs()) out["logprobs"] = logprobs;
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("\n");
    std::fflush(stdout);
    std::fprintf(stderr, "[%s: %d prompt + %d generated tokens, queue %.3f s, first token %.3f s, total %.3f s]\n",
                 v1::FinishReason_Name(final->finish_reason()).c_str() + 14, u.prompt_tokens(), u.generated_tokens(),
                 u.queue_seconds(), u.first_token_seconds(), u.total_seconds());
  }
  return absl::OkStatus();
}

absl::Status Chat(Client& c, const Flags& f) {
  std::string session = f.Get("session");
  if (session.empty()) {
    v1::CreateSessionRequest req;
    req.set_initial_state(f.Get("state"));
    absl::StatusOr<v1::Session> s = c.CreateSession(req, Options(f));
    if (!s.ok()) return Fail("create session", s.status());
    session = s->session_id();
  }
  std::fprintf(stderr, "session %s (Ctrl-D ends; Ctrl-C stops an answer)\n", session.c_str());
  absl::StatusOr<int64_t> max_tokens = f.Int("max-tokens", 500);
  if (!max_tokens.ok()) return max_tokens.status();
  std::string line;
  while (true) {
    std::fprintf(stderr, "\nUser: ");
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    g_interrupted = false;
    v1::GenerateRequest g;
    g.set_session_id(session);
    // The server's chat template (RWKV World by default) renders the turn and ends the answer.
    v1::ChatMessage* m = g.mutable_messages()->add_messages();
    m->set_role("user");
    m->set_content(line);
    if (absl::Status st = Sampling(f, g.mutable_sampling()); !st.ok()) return st;
    g.mutable_stop()->set_max_tokens(static_cast<int32_t>(*max_tokens));
    std::printf("Assistant: ");
    std::fflush(stdout);
    absl::StatusOr<v1::Final> final = c.Generate(
        g,
        [&](const v1::Chunk& ch) {
          std::fwrite(ch.text().data(), 1, ch.text().size(), stdout);
          std::fflush(stdout);
          return !g_interrupted.load();
        },
        Options(f));
    std::printf("\n");
    if (!final.ok()) std::fprintf(stderr, "[%s; the session is unchanged]\n", std::string(final.status().message()).c_str());
  }
  std::fprintf(stderr, "\nsession %s kept on the server\n", session.c_str());
  return absl::OkStatus();
}

absl::Status SessionCmd(Client& c, const Flags& f) {
  const std::vector<std::string>& p = f.positional();
  const std::string verb = p.size() > 1 ? p[1] : "";
  auto arg = [&](size_t i) -> absl::StatusOr<std::string> {
    if (p.size() <= i) return absl::InvalidArgumentError(absl::StrCat("session ", verb, ": missing argument"));
    return p[i];
  };
  const CallOptions o = Options(f);
  if (verb == "create") {
    v1::CreateSessionRequest req;
    req.set_session_id(f.Get("id"));
    req.set_initial_state(f.Get("state"));
    if (f.Has("prompt")) req.set_text(f.Get("prompt"));
    if (absl::Status st = AddImages(f, req.mutable_images()); !st.ok()) return st;
    absl::StatusOr<v1::Session> s = c.CreateSession(req, o);
    if (!s.ok()) return Fail("create", s.status());
    PrintSession(*s);
  } else if (verb == "list") {
    absl::StatusOr<std::vector<v1::Session>> all = c.ListSessions(o);
    if (!all.ok()) return Fail("list", all.status());
    for (const v1::Session& s : *all) PrintSession(s);
  } else if (verb == "get" || verb == "fork" || verb == "delete" || verb == "export") {
    absl::StatusOr<std::string> id = arg(2);
    if (!id.ok()) return id.status();
    if (verb == "get") {
      absl::StatusOr<v1::Session> s = c.GetSession(*id, o);
      if (!s.ok()) return Fail("get", s.status());
      PrintSession(*s);
    } else if (verb == "fork") {
      absl::StatusOr<v1::Session> s = c.ForkSession(*id, f.Get("id"), o);
      if (!s.ok()) return Fail("fork", s.status());
      PrintSession(*s);
    } else if (verb == "delete") {
      if (absl::Status st = c.DeleteSession(*id, o); !st.ok()) return Fail("delete", st);
    } else {
      absl::StatusOr<std::string> file = arg(3);
      if (!file.ok()) return file.status();
      absl::StatusOr<std::string> data = c.ExportSession(*id, o);
      if (!data.ok()) return Fail("export", data.status());
      std::ofstream out(*file, std::ios::binary);
      out.write(data->data(), static_cast<std::streamsize>(data->size()));
      if (!out.good()) return absl::InternalError(absl::StrCat("cannot write ", *file));
      std::fprintf(stderr, "exported %zu bytes to %s\n", data->size(), file->c_str());
    }
  } else if (verb == "import") {
    absl::StatusOr<std::string> file = arg(2);
    if (!file.ok()) return file.status();
    std::ifstream in(*file, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", *file));
    std::stringstream ss;
    ss << in.rdbuf();
    absl::StatusOr<v1::Session> s = c.ImportSession(ss.str(), f.Get("id"), o);
    if (!s.ok()) return Fail("import", s.status());
    PrintSession(*s);
  } else {
    return absl::InvalidArgumentError("session: expected create, list, get, fork, delete, export or import");
  }
  return absl::OkStatus();
}

absl::Status Info(Client& c, const Flags& f) {
  absl::StatusOr<v1::ModelInfo> m = c.GetModelInfo(Options(f));
  if (!m.ok()) return Fail("info", m.status());
  const v1::Limits& l = m->limits();
  std::printf("model:        %s\nfingerprint:  %s\nbackend:      %s\nparameters:   %lld\nstate bytes:  %lld\n",
              m->description().c_str(), m->model_fingerprint().c_str(), m->backend().c_str(),
              static_cast<long long>(m->parameters()), static_cast<long long>(m->state_bytes()));
  std::printf("limits:       slots %d, max running %d, step tokens %d, queue %d, sessions %d, prompt %d, "
              "max tokens %d, idle ttl %.0f s\n",
              l.state_slots(), l.max_running(), l.step_token_budget(), l.queue_length(), l.max_sessions(),
              l.max_prompt_tokens(), l.max_tokens(), l.session_idle_ttl_seconds());
  std::printf("tokenizer:    %s\n", m->tokenizer().c_str());
  if (m->image_tokens() > 0) {
    std::printf("images:       %d tokens each; at most %d a request, %lld bytes, %lld pixels\n", m->image_tokens(),
                m->limits().max_images(), static_cast<long long>(m->limits().max_image_bytes()),
                static_cast<long long>(m->limits().max_image_pixels()));
  }
  std::printf("start states: %s (default: %s)\n",
              m->initial_states().empty() ? "none" : absl::StrJoin(m->initial_states(), ", ").c_str(),
              m->default_initial_state().empty() ? "zeros" : m->default_initial_state().c_str());
  return absl::OkStatus();
}

absl::Status Health(Client& c, const Flags& f) {
  auto stub = grpc::health::v1::Health::NewStub(c.channel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(f.Get("service"));
  grpc::health::v1::HealthCheckResponse resp;
  const grpc::Status s = stub->Check(&ctx, req, &resp);
  if (!s.ok()) return Fail("health", FromGrpc(s));
  std::printf("%s\n", grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status()).c_str());
  if (resp.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    return absl::UnavailableError("health: not serving");
  }
  return absl::OkStatus();
}

absl::Status Bench(Client& c, const Flags& f) {
  absl::StatusOr<v1::ModelInfo> info = c.GetModelInfo(Options(f));
  if (!info.ok()) return Fail("bench", info.status());
  LoadConfig cfg;
  absl::StatusOr<std::vector<int>> levels = f.IntList("concurrency", {1, 4, 16, 64});
  absl::StatusOr<int64_t> requests = f.Int("requests", 0), prompt = f.Int("prompt-tokens", 16),
                          max_tokens = f.Int("max-tokens", 64);
  absl::StatusOr<double> duration = f.Double("duration", 10), temperature = f.Double("temperature", 0);
  for (const absl::Status& st : {levels.status(), requests.status(), prompt.status(), max_tokens.status(),
                                 duration.status(), temperature.status()}) {
    if (!st.ok()) return st;
  }
  cfg.requests = static_cast<int>(*requests);
  cfg.duration_s = *duration;
  cfg.prompt_tokens = static_cast<int>(*prompt);
  cfg.max_tokens = static_cast<int>(*max_tokens);
  cfg.temperature = static_cast<float>(*temperature);
  cfg.progress = !f.Bool("no-progress");
  cfg.sessions = f.Bool("sessions");
  std::fprintf(stderr, "bench: %s on %s; prompt %d tokens, %d generated per request, %s\n", info->description().c_str(),
               info->backend().c_str(), cfg.prompt_tokens, cfg.max_tokens,
               cfg.requests > 0 ? absl::StrCat(cfg.requests, " requests per level").c_str()
                                : absl::StrFormat("%g s per level", cfg.duration_s).c_str());
  std::vector<LoadResult> results;
  for (int n : *levels) {
    if (n < 1) return absl::InvalidArgumentError("--concurrency values must be >= 1");
    cfg.concurrency = n;
    results.push_back(RunLoad(c, cfg, info->vocab_size()));
    if (g_interrupted) break;
  }
  std::printf("%11s %9s %7s %12s %10s %10s %10s %10s %10s %10s\n", "concurrency", "requests", "errors", "tokens/s",
              "ttft_p50", "ttft_p90", "ttft_p99", "itl_p50", "itl_p90", "itl_p99");
  for (const LoadResult& r : results) {
    int errors = 0;
    for (const auto& [k, v] : r.errors) errors += v;
    std::printf("%11d %9d %7d %12.1f %9.1fms %9.1fms %9.1fms %9.1fms %9.1fms %9.1fms\n", r.concurrency, r.ok + errors,
                errors, r.tokens_per_s, r.ttft_s.p50 * 1e3, r.ttft_s.p90 * 1e3, r.ttft_s.p99 * 1e3, r.itl_s.p50 * 1e3,
                r.itl_s.p90 * 1e3, r.itl_s.p99 * 1e3);
    for (const auto& [k, v] : r.errors) std::printf("%11s   %s: %d\n", "", k.c_str(), v);
  }
  if (f.Has("json")) {
    std::ofstream out(f.Get("json"));
    out << ToJson(results, cfg);
    if (!out.good()) return absl::InternalError(absl::StrCat("cannot write ", f.Get("json")));
  }
  if (f.Has("plot")) {
    absl::Status st = WriteBenchPlots(results, f.Get("plot"));
    if (!st.ok()) return st;
    std::fprintf(stderr, "plots: %s/throughput.png %s/latency.png\n", f.Get("plot").c_str(), f.Get("plot").c_str());
  }
  return absl::OkStatus();
}

// How to reach the server: TLS files and the API key (--api-key, else $RWKV_API_KEY, so that a key
// need not appear in the process list).
absl::StatusOr<ConnectOptions> Connection(const Flags& f) {
  ConnectOptions o;
  const char* key = std::getenv("RWKV_API_KEY");
  o.api_key = f.Get("api-key", key != nullptr ? key : "");
  o.tls = f.Bool("tls") || f.Has("tls-ca") || f.Has("tls-cert");
  auto read = [](const std::string& flag, const std::string& path, std::string* out) -> absl::Status {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::InvalidArgumentError(absl::StrCat("--", flag, ": cannot read ", path));
    std::stringstream ss;
    ss << in.rdbuf();
    *out = ss.str();
    return absl::OkStatus();
  };
  if (f.Has("tls-ca")) {
    if (absl::Status st = read("tls-ca", f.Get("tls-ca"), &o.root_certs_pem); !st.ok()) return st;
  }
  if (f.Has("tls-cert") != f.Has("tls-key")) return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  if (f.Has("tls-cert")) {
    if (absl::Status st = read("tls-cert", f.Get("tls-cert"), &o.cert_chain_pem); !st.ok()) return st;
    if (absl::Status st = read("tls-key", f.Get("tls-key"), &o.private_key_pem); !st.ok()) return st;
  }
  o.server_name = f.Get("tls-server-name");
  return o;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const std::string command = FindCommand(args);
  const FlagTable table = CommandFlags(command);
  std::set<std::string> boolean, known;
  for (const auto& [name, type] : table) {
    known.insert(name);
    if (type == FlagType::kBool) boolean.insert(name);
  }
  absl::StatusOr<Flags> flags = Flags::Parse(args, boolean, &known);
  if (flags.ok() && flags->Bool("help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  absl::Status usage = flags.ok() ? CheckFlags(*flags, table, command) : flags.status();
  if (!flags.ok() && absl::StartsWith(flags.status().message(), "unknown flag") && !command.empty()) {
    usage = absl::InvalidArgumentError(absl::StrCat(flags.status().message(), " for ", command));
  }
  if (usage.ok() && flags->positional().empty()) usage = absl::InvalidArgumentError("no command given");
  if (!usage.ok()) {
    std::fprintf(stderr, "rwkv-client: %s\n%s", std::string(usage.message()).c_str(), kUsage);
    return 2;
  }
  absl::StatusOr<ConnectOptions> connect = Connection(*flags);
  if (!connect.ok()) {
    std::fprintf(stderr, "rwkv-client: %s\n", std::string(connect.status().message()).c_str());
    return 2;
  }
  const char* env = std::getenv("RWKV_SERVER");
  Client client(flags->Get("server", env && *env ? env : "localhost:50051"), *connect);
  struct sigaction sa = {};
  sa.sa_handler = [](int) { g_interrupted = true; };
  sigaction(SIGINT, &sa, nullptr);

  const std::string cmd = flags->positional()[0];
  absl::Status st;
  if (cmd == "generate") {
    st = Generate(client, *flags);
  } else if (cmd == "chat") {
    st = Chat(client, *flags);
  } else if (cmd == "session") {
    st = SessionCmd(client, *flags);
  } else if (cmd == "info") {
    st = Info(client, *flags);
  } else if (cmd == "tokenize") {
    absl::StatusOr<std::vector<int32_t>> ids =
        client.Tokenize(flags->positional().size() > 1 ? flags->positional()[1] : "", Options(*flags));
    st = ids.status();
    if (ids.ok()) {
      for (size_t i = 0; i < ids->size(); ++i) std::printf("%s%d", i ? "," : "", (*ids)[i]);
      std::printf("\n");
    }
  } else if (cmd == "detokenize") {
    absl::StatusOr<std::vector<int32_t>> ids = Ids(flags->positional().size() > 1 ? flags->positional()[1] : "");
    if (!ids.ok()) {
      std::fprintf(stderr, "rwkv-client: detokenize: %s\n", std::string(ids.status().message()).c_str());
      return 2;
    }
    absl::StatusOr<std::string> text = client.Detokenize(*ids, Options(*flags));
    st = text.status();
    if (text.ok()) std::printf("%s\n", text->c_str());
  } else if (cmd == "health") {
    st = Health(client, *flags);
  } else if (cmd == "bench") {
    st = Bench(client, *flags);
  } else {
    std::fprintf(stderr, "rwkv-client: unknown command '%s'\n%s", cmd.c_str(), kUsage);
    return 2;
  }
  if (!st.ok()) {
    std::fprintf(stderr, "rwkv-client: %s: %s\n", absl::StatusCodeToString(st.code()).c_str(),
                 std::string(st.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace rwkv::client

int main(int argc, char** argv) { return rwkv::client::Main(argc, argv); }
