// The metrics endpoint over real sockets: scrapes, probes, keep-alive, errors, and connections
// that stall or never speak (closed at the request deadline; they never hold up the others).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/counter.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/http/metrics_http.h"

namespace rwkv::server {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  return fd;
}

// Reads until `n` responses' bodies are complete or the peer closes; bounded by `wait_ms`.
std::string ReadFor(int fd, int wait_ms) {
  std::string out;
  char buf[65536];
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  while (std::chrono::steady_clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

bool ClosedWithin(int fd, int wait_ms) {
  char c;
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, wait_ms) <= 0) return false;
  return read(fd, &c, 1) == 0;
}

struct Endpoint {
  explicit Endpoint(MetricsHttpOptions o = {}, std::function<bool()> ready = {}) {
    registry = std::make_shared<prometheus::Registry>();
    prometheus::BuildCounter().Name("rwkv_test_total").Help("a test counter").Register(*registry).Add({}).Increment(3);
    server = std::make_unique<MetricsHttpServer>(MetricsRoutes{registry, std::move(ready), {}}, o);
    absl::StatusOr<int> p = server->Start("127.0.0.1", 0);
    EXPECT_TRUE(p.ok()) << p.status();
    port = p.ok() ? *p : 0;
  }
  std::shared_ptr<prometheus::Registry> registry;
  std::unique_ptr<MetricsHttpServer> server;
  int port = 0;
};

TEST(MetricsHttp, ScrapesProbesAndErrors) {
  std::atomic<bool> ready{false};
  Endpoint e({}, [&] { return ready.load(); });
  auto get = [&](const std::string& request) {
    const int fd = Connect(e.port);
    EXPECT_EQ(write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
    std::string r = ReadFor(fd, 2000);
    close(fd);
    return r;
  };
  std::string r = get("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(r, StartsWith("HTTP/1.1 200 OK"));
  EXPECT_THAT(r, HasSubstr("text/plain; version=0.0.4"));
  EXPECT_THAT(r, HasSubstr("rwkv_test_total 3"));
  EXPECT_THAT(get("GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), StartsWith("HTTP/1.1 503"));
  ready = true;
  EXPECT_THAT(get("GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(get("GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(get("GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(get("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(get("GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), StartsWith("HTTP/1.1 404"));
  EXPECT_THAT(get("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
              StartsWith("HTTP/1.1 405"));
  // Not HTTP: the connection is closed, the server serves on.
  EXPECT_THAT(get("\x16\x03\x01 garbage\r\n\r\n"), ::testing::Not(HasSubstr("200 OK")));
  EXPECT_THAT(get("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), StartsWith("HTTP/1.1 200"));
}

TEST(MetricsHttp, KeepAliveServesRequestsInTurn) {
  Endpoint e;
  const int fd = Connect(e.port);
  const std::string two = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /livez HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(write(fd, two.data(), two.size()), static_cast<ssize_t>(two.size()));
  const std::string r = ReadFor(fd, 1000);
  EXPECT_THAT(r, HasSubstr("rwkv_test_total 3"));
  EXPECT_EQ(r.find("HTTP/1.1 200", 1) != std::string::npos, true) << "two responses on one connection";
  close(fd);
}

// Silent and trickling connections are closed at the request deadline, and while they are open
// other scrapes are answered.
TEST(MetricsHttp, StalledConnectionsNeverBlockScrapes) {
  MetricsHttpOptions o;
  o.request_timeout = std::chrono::milliseconds(300);
  Endpoint e(o);
  std::vector<int> silent;
  for (int i = 0; i < 20; ++i) silent.push_back(Connect(e.port));
  const int trickle = Connect(e.port);
  ASSERT_EQ(write(trickle, "GET /met", 8), 8);
  const int scrape = Connect(e.port);
  const std::string req = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(write(scrape, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  EXPECT_THAT(ReadFor(scrape, 2000), HasSubstr("rwkv_test_total 3"));
  close(scrape);
  for (int fd : silent) {
    EXPECT_TRUE(ClosedWithin(fd, 5000)) << "a silent connection outlived the request deadline";
    close(fd);
  }
  EXPECT_TRUE(ClosedWithin(trickle, 5000));
  close(trickle);
}

TEST(MetricsHttp, ConnectionsBeyondTheLimitAreClosedAtOnce) {
  MetricsHttpOptions o;
  o.max_connections = 2;
  Endpoint e(o);
  const int a = Connect(e.port), b = Connect(e.port);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // Both accepted.
  const int c = Connect(e.port);
  EXPECT_TRUE(ClosedWithin(c, 2000));
  close(a);
  close(b);
  close(c);
}

TEST(MetricsHttp, APortInUseIsAnError) {
  Endpoint e;
  MetricsHttpServer second(MetricsRoutes{std::make_shared<prometheus::Registry>(), {}, {}});
  absl::StatusOr<int> p = second.Start("127.0.0.1", e.port);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("cannot listen"));
}

}  // namespace
}  // namespace rwkv::server
