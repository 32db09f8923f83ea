// The OpenAI-compatible HTTP API (--http-port): GET /v1/models, POST /v1/completions and
// POST /v1/chat/completions, streamed as Server-Sent Events or answered whole; /metrics and the
// probes (/health, /ready, /livez, /readyz) on the same port. Requests go through the Frontend,
// so keys, tenants, limits, readiness, start states and the prefix-state cache are the gRPC API's.
//
// A chat runs through the server's chat template; n > 1 forks the prompt's state (one prefill, n
// continuations); a client that disconnects cancels its sequences at the next step; a stream whose
// client reads slowly pauses its sequences (never the batch) until it catches up.
//
// Errors are OpenAI's JSON shape with the HTTP status of their code (openai_json.h): an error
// known before the first token is the response's status; one after it is an `error` event, then
// `data: [DONE]`.
//
// Thread safety: Handle runs on the HTTP server's I/O threads; sequences' events arrive on the
// scheduler's loop thread.
#ifndef RWKV_SERVER_HTTP_OPENAI_API_H_
#define RWKV_SERVER_HTTP_OPENAI_API_H_

#include <cstdint>
#include <memory>
#include <string>

#include "server/core/frontend.h"
#include "server/http/http_server.h"
#include "server/http/metrics_http.h"

namespace rwkv::server {

struct OpenAiOptions {
  std::string model_name;  // /v1/models' id, echoed in every response.
  int64_t created = 0;     // Unix seconds, /v1/models' "created".
  size_t stream_buffer = 16;  // Chunks queued per stream before its sequences pause.
  bool access_log = true;
};

class OpenAiApi {
 public:
  // REQUIRES: frontend and observer outlive the API.
  OpenAiApi(OpenAiOptions options, Frontend* frontend, EdgeObserver* observer, MetricsRoutes routes);

  // The HttpServer handler.
  void Handle(std::shared_ptr<HttpExchange> ex);

 private:
  class Call;
  class ChoiceSink;
  void Generate(std::shared_ptr<HttpExchange> ex, const Tenant& tenant, bool chat);

  OpenAiOptions options_;
  Frontend* frontend_;
  EdgeObserver* observer_;
  MetricsRoutes routes_;
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_HTTP_OPENAI_API_H_
