// rwkv-server: loads a model, serves rwkv.v1.Rwkv, grpc.health.v1 and reflection on the gRPC port,
// the OpenAI-compatible API on the HTTP port and Prometheus metrics on their own port. SIGTERM/SIGINT drain: readiness goes NOT_SERVING, new
// work gets UNAVAILABLE, running streams get --grace seconds to finish, then the process exits 0.
// SIGHUP re-reads the TLS certificates and the API keys; a file that fails to load is logged and
// the ones in use stay.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/backend.h"
#include "engine/model.h"
#include "engine/status.h"
#include "engine/tensor_file.h"
#include "engine/vision/encoder.h"
#include "engine/tokenizer.h"
#include "server/config.h"
#include "server/core/log.h"
#include "server/metrics.h"
#include "server/core/scheduler.h"
#include "server/grpc/service.h"
#include "server/core/state_codec.h"
#include "server/core/vision.h"
#include "server/grpc/tls_stage.h"
#include "server/http/http_server.h"
#include "server/http/openai_api.h"

namespace rwkv::server {
namespace {

constexpr char kServiceName[] = "rwkv.v1.Rwkv";
constexpr char kLivenessService[] = "liveness";

// Forwards the scheduler's reports to the metrics, and takes the server out of rotation (health
// NOT_SERVING) when the backend reports a sticky device failure.
class ServerObserver final : public SchedulerObserver {
 public:
  explicit ServerObserver(Metrics* m) : m_(m) {}
  void SetHealth(grpc::HealthCheckServiceInterface* h) { health_ = h; }
  void OnAdmit(double q, int p) override { m_->OnAdmit(q, p); }
  void OnPrefixLookup(int tokens, int cached) override { m_->OnPrefixLookup(tokens, cached); }
  void OnImageEncoded(double seconds, bool ok) override { m_->OnImageEncoded(seconds, ok); }
  void OnImageCached() override { m_->OnImageCached(); }
  void OnToken(bool first, double s) override { m_->OnToken(first, s); }
  void OnStep(int seqs, int tokens, double s) override { m_->OnStep(seqs, tokens, s); }
  void OnFinish(const FinalEvent& f) override { m_->OnFinish(f); }
  void OnOccupancy(const Occupancy& o) override { m_->OnOccupancy(o); }
  void OnDiskWrite(double s, bool ok) override { m_->OnDiskWrite(s, ok); }
  void OnDiskRead() override { m_->OnDiskRead(); }
  void OnQuarantine() override { m_->OnQuarantine(); }
  void OnDiskExpire() override { m_->OnDiskExpire(); }
  void OnBackendBroken(const absl::Status& why) override {
    if (broken_.exchange(true)) return;
    Log("error", "backend failed; health NOT_SERVING", absl::StrCat("error=", LogValue(why.ToString())));
    m_->SetServing(false);
    m_->SetLive(false);
    if (health_ != nullptr) {
      health_->SetServingStatus(false);
      health_->SetServingStatus(kServiceName, false);
      health_->SetServingStatus(kLivenessService, false);  // A restart is what helps now.
    }
  }

 private:
  Metrics* m_;
  grpc::HealthCheckServiceInterface* health_ = nullptr;
  std::atomic<bool> broken_{false};
};

// "/models/RWKV-x070-World-0.1B.pth" -> "RWKV-x070-World-0.1B".
std::string ModelStem(const std::string& path) {
  std::string name = path.substr(path.find_last_of('/') + 1);
  if (const size_t dot = name.find_last_of('.'); dot != std::string::npos && dot > 0) name.resize(dot);
  return name.empty() ? "rwkv" : name;
}

struct Engine {
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Scheduler> scheduler;
  StateCodec codec;
  StartStates states;
  std::string backend;
};

// A VisualRWKV-7 checkpoint's vision encoder (vit.* towers, proj.*) for images in prompts.
absl::Status LoadVision(const ServerConfig& cfg, Scheduler* scheduler) {
  absl::StatusOr<std::unique_ptr<TensorFile>> file = TensorFile::Open(cfg.model);
  if (!file.ok()) return file.status();
  if (!vision::VisionEncoder::Present(**file)) return absl::OkStatus();  // Text only.
  if (!scheduler->backend().takes_embedding_rows()) {
    Log("warning", "images off",
        absl::StrCat("reason=", LogValue(absl::StrCat("the ", std::string(scheduler->backend().name()),
                                                      " backend does not take image rows yet; requests with images "
                                                      "get INVALID_ARGUMENT"))));
    return absl::OkStatus();
  }
  vision::VisionEncoderOptions vo;
  vo.tokens_per_image = cfg.image_tokens;
  vo.dino_heads = cfg.dino_heads;
  vo.siglip_heads = cfg.siglip_heads;
  absl::StatusOr<vision::VisionEncoder> enc = vision::VisionEncoder::Load(**file, vo);
  if (!enc.ok()) return absl::Status(enc.status().code(), absl::StrCat("vision encoder: ", enc.status().message()));
  const int threads = cfg.threads > 0 ? cfg.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto worker = std::make_unique<ImageWorker>(std::make_shared<const vision::VisionEncoder>(std::move(*enc)), threads);
  RWKV_RETURN_IF_ERROR(scheduler->SetImageWorker(std::move(worker)));
  Log("info", "vision encoder loaded",
      absl::StrFormat("image_tokens=%d max_images=%d max_image_bytes=%d max_image_pixels=%d", cfg.image_tokens,
                      cfg.max_images, cfg.max_image_bytes, cfg.max_image_pixels));
  return absl::OkStatus();
}

absl::StatusOr<Engine> LoadEngine(const ServerConfig& cfg, SchedulerObserver* observer) {
  Engine e;
  BackendOptions bo;
  bo.kind = cfg.backend;
  bo.device = cfg.device;
  bo.dtype = cfg.dtype;
  bo.threads = cfg.threads;
  absl::StatusOr<ModelOptions> mo = ModelOptionsFor(bo);
  if (!mo.ok()) return mo.status();
  absl::StatusOr<std::unique_ptr<Model>> model = Model::Load(cfg.model, *mo);
  if (!model.ok()) return model.status();
  std::shared_ptr<const Model> m = std::move(*model);
  const ModelConfig& mc = m->config();
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = LoadTokenizer(cfg.vocab, cfg.tokenizer, mc.vocab);
  if (!tok.ok()) return tok.status();
  e.tokenizer = std::move(*tok);
  if (e.tokenizer->id_limit() > mc.vocab) {
    return absl::InvalidArgumentError(absl::StrFormat("--vocab has ids up to %d but the model's vocabulary is %d",
                                                      e.tokenizer->id_limit() - 1, mc.vocab));
  }
  e.codec.config = mc;
  e.codec.fingerprint = ModelFingerprint(*m);
  absl::StatusOr<StartStates> states = StartStates::Load(cfg.states, cfg.default_state, e.codec);
  if (!states.ok()) return states.status();
  e.states = std::move(*states);

  bo.max_step_tokens = cfg.step_tokens;
  bo.pool_slots = cfg.state_slots > 0 ? cfg.state_slots : StatePool::SlotsForBudget(cfg.state_memory, mc.StateBytes());
  if (bo.pool_slots < 1) {
    return absl::InvalidArgumentError(absl::StrFormat("--state-memory %d bytes holds no state of %d bytes",
                                                      cfg.state_memory, mc.StateBytes()));
  }
  bo.pool_slots = std::min(bo.pool_slots, kMaxPoolSlots);
  SchedulerOptions so;
  so.token_budget = cfg.step_tokens;
  so.max_running = cfg.max_running > 0 ? cfg.max_running : std::min(bo.pool_slots, cfg.step_tokens);
  if (so.max_running > bo.pool_slots) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--max-running %d exceeds the pool's %d slots", so.max_running, bo.pool_slots));
  }
  if (so.max_running > so.token_budget) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--max-running %d exceeds --step-tokens %d: each running sequence needs a token per step", so.max_running,
        so.token_budget));
  }
  so.queue_length = cfg.queue_length;
  so.prefix_cache.max_bytes = cfg.prefix_cache_bytes;
  so.prefix_cache.interval = cfg.prefix_cache_interval;
  so.sessions.max_sessions = cfg.max_sessions;
  so.sessions.persist_interval = std::chrono::milliseconds(static_cast<int64_t>(cfg.persist_interval * 1000));
  so.sessions.disk_bytes = cfg.state_disk_bytes;
  if (!cfg.state_dir.empty()) {
    so.sessions.host_bytes = cfg.session_memory;  // Beyond it, idle sessions move to disk.
  } else if (cfg.session_memory > 0) {
    // Every session may end up on the host tier, so the byte budget bounds the count.
    const int64_t fit = cfg.session_memory / mc.StateBytes();
    if (fit < 1) {
      return absl::InvalidArgumentError(absl::StrFormat("--session-memory %d bytes holds no session state of %d bytes",
                                                        cfg.session_memory, mc.StateBytes()));
    }
    so.sessions.max_sessions = static_cast<int>(std::min<int64_t>(cfg.max_sessions, fit));
  }
  so.sessions.idle_ttl = std::chrono::seconds(static_cast<int64_t>(cfg.session_ttl));
  absl::StatusOr<std::unique_ptr<Backend>> backend = CreateBackend(m, bo);
  if (!backend.ok()) return backend.status();
  e.backend = std::string((*backend)->name());
  e.scheduler = std::make_unique<Scheduler>(std::move(*backend), e.tokenizer.get(), so, observer);
  if (absl::Status st = LoadVision(cfg, e.scheduler.get()); !st.ok()) return st;
  if (!cfg.state_dir.empty()) {
    if (absl::Status st = e.scheduler->OpenStateDir(cfg.state_dir, e.codec); !st.ok()) {
      return absl::Status(st.code(), absl::StrCat("--state-dir: ", st.message()));
    }
  }
  Log("info", "model loaded",
      absl::StrFormat(
          "model=%s arch=%s config=%s matrices=%s fingerprint=%s backend=%s tokenizer=%s state_bytes=%d slots=%d max_running=%d "
          "step_tokens=%d queue_length=%d max_sessions=%d host_state_bytes_max=%d session_ttl_s=%g "
          "prefix_cache_bytes=%d",
          LogValue(cfg.model), ArchitectureName(mc.arch), LogValue(mc.Describe()), MatrixTypeName(m->matrix_type()),
          e.codec.fingerprint, e.backend,
          std::string(e.tokenizer->kind()), mc.StateBytes(), bo.pool_slots, so.max_running, so.token_budget,
          so.queue_length, so.sessions.max_sessions,
          so.sessions.host_bytes > 0 ? so.sessions.host_bytes : static_cast<int64_t>(so.sessions.max_sessions) * mc.StateBytes(),
          cfg.session_ttl, cfg.prefix_cache_bytes));
  if (!e.states.names().empty()) {
    Log("info", "start states loaded",
        absl::StrCat("states=", LogValue(absl::StrJoin(e.states.names(), ",")),
                     " default=", LogValue(e.states.default_name())));
  }
  return e;
}

int Run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  bool help = false;
  absl::StatusOr<ServerConfig> parsed = ParseServerConfig(args, [](const char* n) { return std::getenv(n); }, &help);
  if (help) {
    fputs(ServerUsage().c_str(), stdout);
    return 0;
  }
  if (!parsed.ok()) {
    fprintf(stderr, "rwkv-server: %s\n", std::string(parsed.status().message()).c_str());
    return 2;
  }
  const ServerConfig cfg = *parsed;

  // Signals are taken by sigwait below; every thread started from here on inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const TlsFiles tls_files{cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca};
  std::optional<TlsMaterial> tls;
  std::unique_ptr<TlsStage> tls_stage;
  if (tls_files.enabled()) {
    absl::StatusOr<TlsMaterial> m = LoadTls(tls_files);
    absl::StatusOr<std::unique_ptr<TlsStage>> stage = m.ok() ? TlsStage::Create(*m) : m.status();
    if (!stage.ok()) {
      Log("error", "TLS failed", absl::StrCat("error=", LogValue(stage.status().ToString())));
      return 1;
    }
    tls = std::move(*m);
    tls_stage = std::move(*stage);
  }
  TenantLimits tenant_limits;
  tenant_limits.max_sessions = cfg.tenant_max_sessions;
  tenant_limits.max_streams = cfg.tenant_max_streams;
  tenant_limits.tokens_per_minute = cfg.tenant_tokens_per_minute;
  std::shared_ptr<const ApiKeys> keys;
  if (!cfg.api_keys.empty()) {
    absl::StatusOr<std::shared_ptr<const ApiKeys>> k = ApiKeys::Load(cfg.api_keys, tenant_limits);
    if (!k.ok()) {
      Log("error", "API keys failed", absl::StrCat("error=", LogValue(absl::StrCat("--api-keys: ", k.status().message()))));
      return 1;
    }
    keys = std::move(*k);
    Log("info", "API keys loaded", absl::StrFormat("keys=%d tenants=%d", keys->size(), keys->tenants()));
  }

  Metrics metrics;
  metrics.SetTenantLabel(cfg.metrics_tenant_label);
  ServerObserver observer(&metrics);
  if (cfg.metrics_port >= 0) {
    absl::StatusOr<int> port = metrics.Serve(cfg.host, cfg.metrics_port, tls ? &*tls : nullptr);
    if (!port.ok()) {
      Log("error", "metrics endpoint failed", absl::StrCat("error=", LogValue(port.status().ToString())));
      return 1;
    }
    Log("info", "metrics listening",
        absl::StrFormat("address=%s:%d path=/metrics scheme=%s", cfg.host, *port, tls ? "https" : "http"));
  }

  FrontendOptions fo;
  fo.default_deadline = std::chrono::milliseconds(static_cast<int64_t>(cfg.default_deadline * 1000));
  fo.limits.max_prompt_tokens = cfg.max_prompt_tokens;
  fo.limits.max_tokens = cfg.max_tokens;
  fo.vision.max_images = cfg.max_images;
  fo.vision.image.max_bytes = cfg.max_image_bytes;
  fo.vision.image.max_pixels = cfg.max_image_pixels;
  fo.tenant_limits = tenant_limits;
  if (!cfg.chat_template.empty()) {
    absl::StatusOr<ChatTemplate> t = ChatTemplate::Load(cfg.chat_template);
    if (!t.ok()) {
      Log("error", "chat template failed", absl::StrCat("error=", LogValue(std::string(t.status().message()))));
      return 1;
    }
    fo.chat = std::move(*t);
  }
  Frontend frontend(std::move(fo));
  frontend.SetApiKeys(keys);
  ServiceOptions so;
  so.stream_buffer = cfg.stream_buffer;
  so.write_threads = cfg.stream_write_threads;
  so.access_log = cfg.access_log;
  RwkvService service(so, &frontend, &metrics);

  // The OpenAI-compatible API. Declared before the engine: its connections outlive every sequence.
  OpenAiOptions ao;
  ao.model_name = cfg.model_name.empty() ? ModelStem(cfg.model) : cfg.model_name;
  ao.created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  ao.stream_buffer = static_cast<size_t>(cfg.stream_buffer);
  ao.access_log = cfg.access_log;
  OpenAiApi api(ao, &frontend, &metrics, metrics.Routes());
  std::unique_ptr<HttpServer> http;
  if (cfg.http_port >= 0) {
    HttpServerOptions ho;
    ho.name = "http";
    // A prompt of max_prompt_tokens is at most 64 bytes a token, JSON escaping up to 6 per byte.
    // Images come base64-encoded: 4 bytes for 3.
    ho.max_body_bytes = std::min<size_t>(static_cast<size_t>(cfg.max_prompt_tokens) * 64 * 6 + (1 << 20) +
                                             static_cast<size_t>(cfg.max_images) * cfg.max_image_bytes / 3 * 4,
                                         size_t{1} << 31);
    http = std::make_unique<HttpServer>(ho, [&api](std::shared_ptr<HttpExchange> ex) { api.Handle(std::move(ex)); });
    if (tls) {
      if (absl::Status st = http->SetTls(*tls); !st.ok()) {
        Log("error", "HTTP TLS failed", absl::StrCat("error=", LogValue(st.ToString())));
        return 1;
      }
    }
    absl::StatusOr<int> port = http->Start(cfg.host, cfg.http_port);
    if (!port.ok()) {
      Log("error", "HTTP API failed", absl::StrCat("error=", LogValue(port.status().ToString())));
      return 1;
    }
    Log("info", "http listening",
        absl::StrFormat("address=%s:%d model=%s scheme=%s", cfg.host, *port, LogValue(ao.model_name), tls ? "https" : "http"));
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::StrCat(cfg.host, ":", cfg.port),
                           tls_stage ? tls_stage->Credentials() : grpc::InsecureServerCredentials(), &port);
  // Without this gRPC binds with SO_REUSEPORT, and a second server on a port in use would start
  // and take half the connections.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // A request may carry a prompt and its images (gRPC's default is 4 MiB).
  builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<int64_t>(
      static_cast<int64_t>(cfg.max_prompt_tokens) * 64 + (1 << 20) + cfg.max_images * cfg.max_image_bytes,
      std::numeric_limits<int>::max())));
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    Log("error", "gRPC server failed to start",
        absl::StrFormat("address=%s:%d error=%s", cfg.host, cfg.port,
                        LogValue("cannot listen: the port is in use by another process or the address is not local")));
    return 1;
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus(false);  // Loading.
  // Liveness (Kubernetes livenessProbe): up while the process serves, loading and draining
  // included; only a failed backend turns it NOT_SERVING.
  health->SetServingStatus(kLivenessService, true);
  observer.SetHealth(health);
  Log("info", "grpc listening",
      absl::StrFormat("address=%s:%d tls=%s api_keys=%s", cfg.host, port,
                      !tls ? "off" : cfg.tls_client_ca.empty() ? "on" : "mtls", keys ? "on" : "off"));

  absl::StatusOr<Engine> engine = [&]() -> absl::StatusOr<Engine> {
    const auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<Engine> e = LoadEngine(cfg, &observer);
    if (e.ok()) {
      Log("info", "ready", absl::StrFormat("load_seconds=%.3f",
                                           std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()));
    }
    return e;
  }();
  if (!engine.ok()) {
    Log("error", "loading failed", absl::StrCat("error=", LogValue(engine.status().ToString())));
    server->Shutdown(std::chrono::system_clock::now());
    return 1;
  }
  // A limit the validation needs from the model.
  Scheduler* scheduler = engine->scheduler.get();
  frontend.Attach(scheduler, engine->tokenizer.get(), engine->codec, engine->backend, engine->states);
  scheduler->Start();
  health->SetServingStatus(kServiceName, true);
  health->SetServingStatus(true);
  metrics.SetServing(true);

  // SIGHUP reloads; SIGTERM/SIGINT drain.
  int sig = 0;
  while (true) {
    sigwait(&signals, &sig);
    if (sig != SIGHUP) break;
    if (tls_stage) {
      absl::StatusOr<TlsMaterial> m = LoadTls(tls_files);
      absl::Status st = m.status();
      if (st.ok()) st = tls_stage->Update(*m);
      if (st.ok()) st = metrics.ReloadTls(*m);
      if (st.ok() && http) st = http->SetTls(*m);
      if (st.ok()) {
        Log("info", "TLS certificates reloaded", "");
      } else {
        Log("error", "TLS reload failed; the certificates in use stay", absl::StrCat("error=", LogValue(st.ToString())));
      }
    }
    if (!cfg.api_keys.empty()) {
      absl::StatusOr<std::shared_ptr<const ApiKeys>> k = ApiKeys::Load(cfg.api_keys, tenant_limits);
      if (k.ok()) {
        frontend.SetApiKeys(*k);
        Log("info", "API keys reloaded", absl::StrFormat("keys=%d tenants=%d", (*k)->size(), (*k)->tenants()));
      } else {
        Log("error", "API keys reload failed; the keys in use stay",
            absl::StrCat("error=", LogValue(std::string(k.status().message()))));
      }
    }
  }
  Log("info", "draining", absl::StrFormat("signal=%d grace_seconds=%g active=%d", sig, cfg.grace, scheduler->active()));
  // By name: the no-name overload would take "liveness" down with them.
  health->SetServingStatus("", false);
  health->SetServingStatus(kServiceName, false);
  metrics.SetServing(false);
  frontend.SetDraining();
  scheduler->StopAccepting();
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(cfg.grace * 1000));
  while (scheduler->active() > 0 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const int left = scheduler->active();
  if (left > 0) scheduler->AbortAll(absl::UnavailableError("server shut down before the request finished (grace period over)"));
  // In-flight RPCs (aborted streams finishing, unary calls) get a moment; then they are cancelled.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  engine->scheduler.reset();  // Writes every session state not yet on disk (--state-dir).
  Log("info", "stopped", absl::StrFormat("aborted=%d", left));
  return 0;
}

}  // namespace
}  // namespace rwkv::server

int main(int argc, char** argv) { return rwkv::server::Run(argc, argv); }
