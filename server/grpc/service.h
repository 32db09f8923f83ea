// The gRPC service rwkv.v1.Rwkv over the callback API. Handlers validate, then hand work to the
// scheduler; they never block (session operations are posted to the scheduler's loop, which
// finishes the RPC). Until Attach() the service answers UNAVAILABLE ("loading").
//
// With API keys (SetApiKeys), every call authenticates first (UNAUTHENTICATED otherwise) and
// works within its tenant: session ids are scoped by tenant in the store (server/auth.h), so
// another tenant's session is NOT_FOUND and List shows the caller's alone.
//
// Thread safety: gRPC calls handlers on its threads; Attach and SetDraining from any thread.
#ifndef RWKV_SERVER_GRPC_SERVICE_H_
#define RWKV_SERVER_GRPC_SERVICE_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "engine/tokenizer.h"
#include "server/core/auth.h"
#include "rwkv/v1/rwkv.grpc.pb.h"
#include "server/metrics.h"
#include "server/core/scheduler.h"
#include "server/core/start_states.h"
#include "server/core/state_codec.h"
#include "server/grpc/validation.h"

namespace rwkv::server {

struct ServiceOptions {
  RequestLimits limits;
  std::chrono::milliseconds default_deadline{0};  // For requests without one; 0 = none.
  int stream_buffer = 16;                          // Responses queued per stream before it pauses.
  size_t export_chunk_bytes = 1 << 20;
  bool access_log = false;                         // One log line per finished Generate.
  TenantLimits tenant_limits;  // Defaults of keys-file lines; without API keys, the server's one tenant's.
};

class RwkvService final : public v1::Rwkv::CallbackService {
 public:
  // REQUIRES: metrics outlives the service.
  RwkvService(ServiceOptions options, Metrics* metrics) : options_(std::move(options)), metrics_(metrics) {}

  // Starts serving requests. REQUIRES: scheduler and tokenizer outlive the service; called once.
  // `states`: the named start states requests may give (none by default).
  void Attach(Scheduler* scheduler, const Tokenizer* tokenizer, StateCodec codec, std::string backend_name,
              StartStates states = {});
  // New generations and sessions get UNAVAILABLE; reads and exports go on.
  void SetDraining() { draining_ = true; }
  // The keys calls must present; null = none (one anonymous tenant). Any thread (SIGHUP reload):
  // calls already authenticated keep their tenant.
  void SetApiKeys(std::shared_ptr<const ApiKeys> keys);

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(grpc::CallbackServerContext* ctx,
                                                           const v1::GenerateRequest* req) override;
  grpc::ServerUnaryReactor* CreateSession(grpc::CallbackServerContext* ctx, const v1::CreateSessionRequest* req,
                                          v1::Session* resp) override;
  grpc::ServerUnaryReactor* GetSession(grpc::CallbackServerContext* ctx, const v1::GetSessionRequest* req,
                                       v1::Session* resp) override;
  grpc::ServerUnaryReactor* ListSessions(grpc::CallbackServerContext* ctx, const v1::ListSessionsRequest* req,
                                         v1::ListSessionsResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteSession(grpc::CallbackServerContext* ctx, const v1::DeleteSessionRequest* req,
                                          v1::DeleteSessionResponse* resp) override;
  grpc::ServerUnaryReactor* ForkSession(grpc::CallbackServerContext* ctx, const v1::ForkSessionRequest* req,
                                        v1::Session* resp) override;
  grpc::ServerWriteReactor<v1::StateChunk>* ExportSession(grpc::CallbackServerContext* ctx,
                                                          const v1::ExportSessionRequest* req) override;
  grpc::ServerReadReactor<v1::ImportSessionRequest>* ImportSession(grpc::CallbackServerContext* ctx,
                                                                   v1::Session* resp) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx, const v1::TokenizeRequest* req,
                                     v1::TokenizeResponse* resp) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* ctx, const v1::DetokenizeRequest* req,
                                       v1::DetokenizeResponse* resp) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* ctx, const v1::GetModelInfoRequest* req,
                                         v1::ModelInfo* resp) override;

 private:
  class GenerateReactor;
  class StreamSink;
  class ExportReactor;
  class ImportReactor;

  // UNAVAILABLE while loading (or, with `mutating`, draining); OK otherwise.
  absl::Status Ready(bool mutating) const;
  grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* ctx, const char* method, const absl::Status& s);
  // Authenticates, then runs `fn` on the scheduler loop and finishes the RPC with its status.
  grpc::ServerUnaryReactor* OnLoop(grpc::CallbackServerContext* ctx, const char* method, bool mutating,
                                   std::function<absl::Status(const Tenant&)> fn);
  // The caller's tenant from `authorization: Bearer KEY`; UNAUTHENTICATED (counted) otherwise.
  absl::StatusOr<Tenant> Authenticate(grpc::CallbackServerContext* ctx) const;
  // A session limit for the store (loop thread).
  int SessionLimitOf(std::string_view tenant) const;
  // A client's session id, validated, as the store knows it for `tenant`.
  static absl::StatusOr<std::string> ScopeId(const Tenant& tenant, const std::string& id, const char* field);
  // A fresh id in the tenant's scope.
  static std::string NewSessionId(const Tenant& tenant);
  // `s` with the tenant's scope taken out of its message (a client names its ids unscoped).
  static absl::Status Unscope(const std::string& tenant, const absl::Status& s);
  // Counts a refusal by a tenant limit.
  void CountLimit(const Tenant& tenant, const absl::Status& s) const;
  void FillSession(const Session& s, const std::string& tenant, v1::Session* out) const;
  std::optional<TimePoint> Deadline(grpc::CallbackServerContext* ctx) const;

  ServiceOptions options_;
  Metrics* metrics_;
  mutable std::mutex keys_mu_;
  std::shared_ptr<const ApiKeys> keys_;  // Guarded by keys_mu_.
  std::shared_ptr<TenantUsage> usage_ = std::make_shared<TenantUsage>();  // Shared with stream sinks.
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

#endif  // RWKV_SERVER_GRPC_SERVICE_H_
