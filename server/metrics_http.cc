#include "server/metrics_http.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <prometheus/text_serializer.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace rwkv::server {
namespace {

constexpr size_t kMaxRequestBytes = 16 * 1024;

void WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return;  // The scraper went away.
    }
    off += static_cast<size_t>(n);
  }
}

std::string Response(const char* status, const char* type, const std::string& body) {
  return absl::StrFormat("HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", status,
                         type, body.size(), body);
}

}  // namespace

absl::StatusOr<int> MetricsHttpServer::Start(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  if (int e = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res); e != 0) {
    return absl::UnavailableError(absl::StrCat("metrics: cannot resolve ", host, ": ", gai_strerror(e)));
  }
  std::string why = "no address";
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 64) == 0) {
      listen_fd_ = fd;
      break;
    }
    why = std::strerror(errno);
    close(fd);
  }
  freeaddrinfo(res);
  if (listen_fd_ < 0) return absl::UnavailableError(absl::StrCat("metrics: cannot listen on ", host, ":", port, ": ", why));
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
  const int bound_port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                           : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  thread_ = std::thread([this] { Serve(); });
  return bound_port;
}

void MetricsHttpServer::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
  listen_fd_ = -1;
}

void MetricsHttpServer::Serve() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;  // Timeout: look at stop_ again.
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    timeval tv{2, 0};  // A scraper that sends nothing does not hold the endpoint.
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    Handle(fd);
    close(fd);
  }
}

void MetricsHttpServer::Handle(int fd) {
  std::string req;
  char buf[2048];
  while (req.find("\r\n\r\n") == std::string::npos && req.size() < kMaxRequestBytes) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return;
    }
    req.append(buf, static_cast<size_t>(n));
  }
  const size_t eol = req.find("\r\n");
  const std::string line = req.substr(0, eol);
  if (line.rfind("GET ", 0) != 0 && line.rfind("HEAD ", 0) != 0) {
    return WriteAll(fd, Response("405 Method Not Allowed", "text/plain", "only GET /metrics\n"));
  }
  const size_t sp = line.find(' '), sp2 = line.find(' ', sp + 1);
  std::string path = line.substr(sp + 1, sp2 == std::string::npos ? std::string::npos : sp2 - sp - 1);
  path = path.substr(0, path.find('?'));
  if (path != "/metrics" && path != "/") return WriteAll(fd, Response("404 Not Found", "text/plain", "see /metrics\n"));
  const std::string body = prometheus::TextSerializer().Serialize(registry_->Collect());
  std::string resp = Response("200 OK", "text/plain; version=0.0.4; charset=utf-8", body);
  if (line.rfind("HEAD ", 0) == 0) resp.resize(resp.size() - body.size());
  WriteAll(fd, resp);
}

}  // namespace rwkv::server
