// The gRPC service rwkv.v1.Rwkv over the callback API. Handlers validate, then hand work to the
// scheduler; they never block (session operations are posted to the scheduler's loop, which
// finishes the RPC). Until Attach() the service answers UNAVAILABLE ("loading").
//
// Thread safety: gRPC calls handlers on its threads; Attach and SetDraining from any thread.
#ifndef RWKV_SERVER_SERVICE_H_
#define RWKV_SERVER_SERVICE_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "engine/tokenizer.h"
#include "rwkv/v1/rwkv.grpc.pb.h"
#include "server/metrics.h"
#include "server/scheduler.h"
#include "server/start_states.h"
#include "server/state_codec.h"
#include "server/validation.h"

namespace rwkv::server {

struct ServiceOptions {
  RequestLimits limits;
  std::chrono::milliseconds default_deadline{0};  // For requests without one; 0 = none.
  int stream_buffer = 16;                          // Responses queued per stream before it pauses.
  size_t export_chunk_bytes = 1 << 20;
  bool access_log = false;                         // One log line per finished Generate.
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
  // Runs `fn` on the scheduler loop and finishes the RPC with its status.
  grpc::ServerUnaryReactor* OnLoop(grpc::CallbackServerContext* ctx, const char* method, bool mutating,
                                   std::function<absl::Status()> fn);
  void FillSession(const Session& s, v1::Session* out) const;
  std::optional<TimePoint> Deadline(grpc::CallbackServerContext* ctx) const;

  ServiceOptions options_;
  Metrics* metrics_;
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

#endif  // RWKV_SERVER_SERVICE_H_
