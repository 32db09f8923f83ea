// HttpServer: HTTP/1.1 on Boost.Beast and Boost.Asio, the one HTTP implementation of the server
// (the OpenAI-compatible API and the metrics port both run on it). Connections are served
// concurrently on a small pool of I/O threads, each on its own strand; nothing blocks a thread,
// so thousands of idle or streaming connections cost memory, not threads.
//
// A request goes to the handler as an HttpExchange, which answers it from any thread, at once
// or later: a whole response, or a stream (chunked transfer encoding: Server-Sent Events).
// While an answer is pending the connection watches its socket, so a client that goes away is
// noticed (closed()) even before anything is written to it.
//
// Limits: a request (headers and body) must arrive within `request_timeout` of the connection's
// accept or of its previous response; each write must complete within `write_timeout` (a reader
// that stops reading loses its connection, never a thread); beyond `max_connections` new
// connections are closed at once; bodies over `max_body_bytes` get 413.
//
// Thread safety: Start, SetTls and Stop from one thread; exchanges from any thread.
// REQUIRES: every exchange is released before the server is destroyed.
#ifndef RWKV_SERVER_HTTP_HTTP_SERVER_H_
#define RWKV_SERVER_HTTP_HTTP_SERVER_H_

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "server/core/tls_files.h"

namespace rwkv::server {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // Path and query as sent.
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // Names lower-cased.
  // The first header of that (lower-case) name, or nullopt.
  std::optional<std::string_view> Header(std::string_view name) const;
  // The target without its query.
  std::string_view Path() const;
};

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

class HttpExchange {
 public:
  virtual ~HttpExchange() = default;
  virtual const HttpRequest& request() const = 0;

  // Any thread; exactly one of Respond, or BeginStream ... End, per exchange.
  virtual void Respond(int status, std::string content_type, std::string body, HttpHeaders headers = {}) = 0;
  virtual void BeginStream(int status, std::string content_type, HttpHeaders headers = {}) = 0;
  virtual void Send(std::string data) = 0;  // One chunk of a stream.
  virtual void End() = 0;

  // Any thread. Chunks sent and not yet written to the socket.
  virtual size_t queued() const = 0;
  // Any thread. True once the client is gone (closed, reset, timed out, or a write failed).
  virtual bool closed() const = 0;
  // Called on an I/O thread after a chunk is written and when the connection closes: a producer
  // paused on queued() or watching closed() is woken by it. Set before anything is sent.
  virtual void SetOnProgress(std::function<void()> fn) = 0;
};

struct HttpServerOptions {
  std::string name = "http";  // In error messages.
  std::chrono::milliseconds request_timeout{10000};
  std::chrono::milliseconds write_timeout{30000};
  int max_connections = 4096;
  size_t max_header_bytes = 16 * 1024;
  size_t max_body_bytes = 1 << 20;
  int threads = 2;
};

class HttpServer {
 public:
  using Handler = std::function<void(std::shared_ptr<HttpExchange>)>;
  // `handler` runs on an I/O thread for every request; it must not block.
  HttpServer(HttpServerOptions options, Handler handler);
  ~HttpServer();

  // Listens on host:port (port 0 picks one) and serves until Stop. Returns the bound port;
  // UNAVAILABLE naming the address when it cannot listen (in use included: no SO_REUSEPORT).
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

#endif  // RWKV_SERVER_HTTP_HTTP_SERVER_H_
