#include "server/http/metrics_http.h"

#include <prometheus/text_serializer.h>

namespace rwkv::server {

bool HandleMetricsRoutes(HttpExchange& ex, const MetricsRoutes& routes) {
  const HttpRequest& req = ex.request();
  const std::string_view path = req.Path();
  const bool ready = path == "/readyz" || path == "/ready";
  const bool live = path == "/livez" || path == "/health";
  const bool metrics = path == "/metrics";
  if (!ready && !live && !metrics) return false;
  if (req.method != "GET" && req.method != "HEAD") {
    ex.Respond(405, "text/plain", "only GET\n", {{"Allow", "GET, HEAD"}});
    return true;
  }
  if (metrics) {
    std::string body;
    if (req.method == "GET") body = prometheus::TextSerializer().Serialize(routes.registry->Collect());
    ex.Respond(200, "text/plain; version=0.0.4; charset=utf-8", std::move(body));
    return true;
  }
  const std::function<bool()>& check = ready ? routes.ready : routes.live;
  const bool ok = !check || check();
  ex.Respond(ok ? 200 : 503, "text/plain", ok ? "ok\n" : "not serving\n");
  return true;
}

namespace {

HttpServerOptions ServerOptions(const MetricsHttpOptions& o) {
  HttpServerOptions h;
  h.name = "metrics";
  h.request_timeout = o.request_timeout;
  h.write_timeout = o.request_timeout;  // A reader that stalls the response ends too.
  h.max_connections = o.max_connections;
  h.max_body_bytes = 16 * 1024;
  h.threads = o.threads;
  return h;
}

}  // namespace

MetricsHttpServer::MetricsHttpServer(MetricsRoutes routes, MetricsHttpOptions options)
    : routes_(std::move(routes)), http_(ServerOptions(options), [this](std::shared_ptr<HttpExchange> ex) {
        if (HandleMetricsRoutes(*ex, routes_)) return;
        const bool root = ex->request().Path() == "/";
        if (root && (ex->request().method == "GET" || ex->request().method == "HEAD")) {
          ex->Respond(200, "text/plain", "rwkv-server metrics: see /metrics, /readyz, /livez\n");
        } else {
          ex->Respond(404, "text/plain", "not found; see /metrics, /readyz, /livez\n");
        }
      }) {}

MetricsHttpServer::~MetricsHttpServer() { http_.Stop(); }

}  // namespace rwkv::server
