// The gRPC service rwkv.v1.Rwkv over the callback API. Handlers validate, then hand work to the
// scheduler; they never block (session operations are posted to the scheduler's loop, which
// finishes the RPC). Readiness, keys, tenants and limits are the Frontend's (shared with the HTTP
// edge): until it is attached the service answers UNAVAILABLE ("loading").
//
// With API keys, every call authenticates first (UNAUTHENTICATED otherwise) and works within its
// tenant: session ids are scoped by tenant in the store (server/core/auth.h), so another tenant's
// session is NOT_FOUND and List shows the caller's alone.
//
// Thread safety: gRPC calls handlers on its threads.
#ifndef RWKV_SERVER_GRPC_SERVICE_H_
#define RWKV_SERVER_GRPC_SERVICE_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "engine/tokenizer.h"
#include "rwkv/v1/rwkv.grpc.pb.h"
#include "server/core/auth.h"
#include "server/core/frontend.h"
#include "server/core/scheduler.h"
#include "server/core/start_states.h"
#include "server/core/state_codec.h"
#include "server/grpc/validation.h"
#include "server/grpc/write_pump.h"
#include "server/metrics.h"

namespace rwkv::server {

struct ServiceOptions {
  int stream_buffer = 16;                          // Responses queued per stream before it pauses.
  size_t export_chunk_bytes = 1 << 20;
  bool access_log = false;                         // One log line per finished Generate.
  // Threads that start Generate streams' writes (the scheduler's thread only queues them).
  int write_threads = 2;
};

class RwkvService final : public v1::Rwkv::CallbackService {
 public:
  // REQUIRES: frontend and metrics outlive the service.
  RwkvService(ServiceOptions options, Frontend* frontend, Metrics* metrics)
      : options_(options),
        frontend_(frontend),
        metrics_(metrics),
        pump_(std::make_shared<WritePump>(options.write_threads)) {}

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

  grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* ctx, const char* method, const absl::Status& s);
  // Authenticates, then runs `fn` on the scheduler loop and finishes the RPC with its status.
  grpc::ServerUnaryReactor* OnLoop(grpc::CallbackServerContext* ctx, const char* method, bool mutating,
                                   std::function<absl::Status(const Tenant&)> fn);
  // The caller's tenant from `authorization: Bearer KEY`; UNAUTHENTICATED (counted) otherwise.
  absl::StatusOr<Tenant> Authenticate(grpc::CallbackServerContext* ctx) const;
  // Counts a refusal by a tenant limit.
  void CountLimit(const Tenant& tenant, const absl::Status& s) const;
  void FillSession(const Session& s, const std::string& tenant, v1::Session* out) const;
  std::optional<TimePoint> Deadline(grpc::CallbackServerContext* ctx) const;

  ServiceOptions options_;
  Frontend* frontend_;
  Metrics* metrics_;
  // Streams hold it weakly: a chunk made after the service is gone starts its write inline.
  std::shared_ptr<WritePump> pump_;
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_GRPC_SERVICE_H_
