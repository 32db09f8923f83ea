// The Prometheus scrape endpoint: a small HTTP/1.1 server that answers GET /metrics with the
// registry in the text exposition format (prometheus-cpp's TextSerializer) and closes the
// connection. Ours rather than prometheus-cpp's civetweb exposer: civetweb runs its workers on
// 100 KiB stacks, which the static TLS of libraries in this process (cuBLASLt alone has 92 KiB)
// overflows on the first scrape.
//
// Thread safety: Start and Stop from one thread; the server thread reads the registry, which is
// itself thread-safe.
#ifndef RWKV_SERVER_METRICS_HTTP_H_
#define RWKV_SERVER_METRICS_HTTP_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include <prometheus/registry.h>

#include "absl/status/statusor.h"

namespace rwkv::server {

class MetricsHttpServer {
 public:
  explicit MetricsHttpServer(std::shared_ptr<prometheus::Registry> registry) : registry_(std::move(registry)) {}
  ~MetricsHttpServer() { Stop(); }

  // Listens on host:port (port 0 picks one) and serves until Stop. Returns the bound port;
  // UNAVAILABLE naming the address when it cannot listen.
  absl::StatusOr<int> Start(const std::string& host, int port);
  void Stop();

 private:
  void Serve();
  void Handle(int fd);

  std::shared_ptr<prometheus::Registry> registry_;
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_METRICS_HTTP_H_
