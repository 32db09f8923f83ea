// The Prometheus scrape endpoint: GET /metrics answers the registry in the text exposition
// format (prometheus-cpp's TextSerializer); /readyz and /livez mirror the health services. It runs
// on HttpServer (Boost.Beast): concurrent connections, a deadline for each request, keep-alive,
// optional TLS. The OpenAI-compatible API answers the same routes on its port
// (HandleMetricsRoutes). Ours rather than prometheus-cpp's civetweb exposer: civetweb runs its
// workers on 100 KiB stacks, which the static TLS of libraries in this process (cuBLASLt alone
// has 92 KiB) overflows on the first scrape.
//
// Thread safety: Start, SetTls and Stop from one thread; the I/O threads read the registry, which
// is itself thread-safe.
#ifndef RWKV_SERVER_HTTP_METRICS_HTTP_H_
#define RWKV_SERVER_HTTP_METRICS_HTTP_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "server/core/tls_files.h"
#include "server/http/http_server.h"

namespace rwkv::server {

struct MetricsRoutes {
  std::shared_ptr<prometheus::Registry> registry;
  // GET /readyz (/ready) and /livez (/health) answer 200 while these hold, else 503 (probes that
  // cannot speak gRPC over TLS: Kubernetes' grpc probes are plaintext). Unset = always 200.
  std::function<bool()> ready, live;
};

// Answers /metrics, /readyz, /ready, /livez and /health (GET or HEAD; other methods 405) and
// returns true; false for any other path (the caller answers it).
bool HandleMetricsRoutes(HttpExchange& ex, const MetricsRoutes& routes);

struct MetricsHttpOptions {
  std::chrono::milliseconds request_timeout{10000};  // From accept (or the last response) to a whole request.
  int max_connections = 256;                          // Beyond it, new connections are closed at once.
  int threads = 2;
};

class MetricsHttpServer {
 public:
  MetricsHttpServer(MetricsRoutes routes, MetricsHttpOptions options = {});
  ~MetricsHttpServer();

  // Listens on host:port (port 0 picks one) and serves until Stop. Returns the bound port;
  // UNAVAILABLE naming the address when it cannot listen (in use included).
  absl::StatusOr<int> Start(const std::string& host, int port) { return http_.Start(host, port); }
  // HTTPS from now on for new connections; before Start or any time after (a reload).
  absl::Status SetTls(const TlsMaterial& m) { return http_.SetTls(m); }
  void Stop() { http_.Stop(); }

 private:
  MetricsRoutes routes_;
  HttpServer http_;
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_HTTP_METRICS_HTTP_H_
