// The Prometheus scrape endpoint: GET /metrics answers the registry in the text exposition
// format (prometheus-cpp's TextSerializer); /readyz and /livez mirror the health services. HTTP/1.1 by Boost.Beast on Boost.Asio: connections
// are served concurrently on a small thread pool, each with a deadline for its request (a slow
// or silent client holds one connection, never the others), keep-alive, and optional TLS whose
// certificate a reload swaps for new connections. Ours rather than prometheus-cpp's civetweb
// exposer: civetweb runs its workers on 100 KiB stacks, which the static TLS of libraries in
// this process (cuBLASLt alone has 92 KiB) overflows on the first scrape.
//
// Thread safety: Start, SetTls and Stop from one thread; the pool reads the registry, which is
// itself thread-safe.
#ifndef RWKV_SERVER_HTTP_METRICS_HTTP_H_
#define RWKV_SERVER_HTTP_METRICS_HTTP_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "server/core/tls_files.h"

namespace rwkv::server {

struct MetricsHttpOptions {
  std::chrono::milliseconds request_timeout{10000};  // From accept (or the last response) to a whole request.
  int max_connections = 256;                          // Beyond it, new connections are closed at once.
  int threads = 2;
  // GET /readyz and /livez answer 200 while these hold, else 503 (probes that cannot speak gRPC
  // over TLS: Kubernetes' grpc probes are plaintext). Unset = always 200.
  std::function<bool()> ready, live;
};

class MetricsHttpServer {
 public:
  explicit MetricsHttpServer(std::shared_ptr<prometheus::Registry> registry, MetricsHttpOptions options = {});
  ~MetricsHttpServer();

  // Listens on host:port (port 0 picks one) and serves until Stop. Returns the bound port;
  // UNAVAILABLE naming the address when it cannot listen (in use included).
  absl::StatusOr<int> Start(const std::string& host, int port);
  // HTTPS from now on for new connections (`m` with cert and key); before Start or any time
  // after (a reload). INVALID_ARGUMENT when OpenSSL refuses the material.
  absl::Status SetTls(const TlsMaterial& m);
  void Stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_HTTP_METRICS_HTTP_H_
