#include "server/http/metrics_http.h"

#include <atomic>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/version.hpp>
#include <prometheus/text_serializer.h>

#include "absl/strings/str_cat.h"

namespace rwkv::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr size_t kMaxHeaderBytes = 16 * 1024;

}  // namespace

class MetricsHttpServer::Impl {
 public:
  Impl(std::shared_ptr<prometheus::Registry> registry, MetricsHttpOptions options)
      : registry_(std::move(registry)), options_(options), acceptor_(io_) {}

  absl::StatusOr<int> Start(const std::string& host, int port) {
    beast::error_code ec;
    tcp::resolver resolver(io_);
    auto results = resolver.resolve(host, std::to_string(port), tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    if (ec || results.empty()) {
      return absl::UnavailableError(absl::StrCat("metrics: cannot resolve ", host, ": ", ec.message()));
    }
    const tcp::endpoint ep = results.begin()->endpoint();
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);  // Not SO_REUSEPORT: a second server fails.
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(absl::StrCat("metrics: cannot listen on ", host, ":", port, ": ", ec.message()));
    }
    const int bound = acceptor_.local_endpoint().port();
    Accept();
    for (int i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { io_.run(); });
    return bound;
  }

  absl::Status SetTls(const TlsMaterial& m) {
    auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
    beast::error_code ec;
    ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                         asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1,
                     ec);
    if (!ec) ctx->use_certificate_chain(asio::buffer(m.cert_pem), ec);
    if (!ec) ctx->use_private_key(asio::buffer(m.key_pem), asio::ssl::context::pem, ec);
    if (ec) return absl::InvalidArgumentError(absl::StrCat("metrics TLS: ", ec.message()));
    std::lock_guard<std::mutex> lock(tls_mu_);
    tls_ = std::move(ctx);
    return absl::OkStatus();
  }

  void Stop() {
    if (threads_.empty()) return;
    io_.stop();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
    beast::error_code ec;
    acceptor_.close(ec);
  }

 private:
  // One connection: requests in turn (keep-alive), each within the request timeout.
  template <typename Stream>
  class Session : public std::enable_shared_from_this<Session<Stream>> {
   public:
    Session(Impl* server, Stream stream) : server_(server), stream_(std::move(stream)) {}
    ~Session() { --server_->connections_; }

    void Run() { Read(); }
    Stream& stream() { return stream_; }

   private:
    beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }

    void Read() {
      parser_.emplace();
      parser_->header_limit(kMaxHeaderBytes);
      parser_->body_limit(kMaxHeaderBytes);
      Lowest().expires_after(server_->options_.request_timeout);
      http::async_read(stream_, buffer_, *parser_,
                       [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
    }

    void OnRead(beast::error_code ec) {
      if (ec) return Close();  // Timeout, malformed request, client gone: the connection ends.
      const http::request<http::string_body>& req = parser_->get();
      auto res = std::make_shared<http::response<http::string_body>>();
      res->version(req.version());
      res->set(http::field::server, "rwkv-server");
      res->keep_alive(req.keep_alive());
      const bool probe = req.target() == "/readyz" || req.target() == "/livez";
      if (probe && (req.method() == http::verb::get || req.method() == http::verb::head)) {
        const std::function<bool()>& check =
            req.target() == "/readyz" ? server_->options_.ready : server_->options_.live;
        const bool ok = !check || check();
        res->result(ok ? http::status::ok : http::status::service_unavailable);
        res->set(http::field::content_type, "text/plain");
        res->body() = ok ? "ok\n" : "not serving\n";
      } else if (req.target() != "/metrics" && req.target() != "/") {
        res->result(http::status::not_found);
        res->set(http::field::content_type, "text/plain");
        res->body() = "not found; see /metrics, /readyz, /livez\n";
      } else if (req.method() != http::verb::get && req.method() != http::verb::head) {
        res->result(http::status::method_not_allowed);
        res->set(http::field::allow, "GET, HEAD");
        res->set(http::field::content_type, "text/plain");
        res->body() = "only GET\n";
      } else {
        res->result(http::status::ok);
        res->set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
        if (req.method() == http::verb::get) res->body() = prometheus::TextSerializer().Serialize(server_->registry_->Collect());
      }
      res->prepare_payload();
      Lowest().expires_after(server_->options_.request_timeout);  // A reader that stalls the response ends too.
      http::async_write(stream_, *res, [self = this->shared_from_this(), res](beast::error_code ec, size_t) {
        if (ec || !res->keep_alive()) return self->Close();
        self->Read();
      });
    }

    void Close() {
      beast::error_code ec;
      Lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    }

    Impl* server_;
    Stream stream_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
  };

  void Accept() {
    acceptor_.async_accept(asio::make_strand(io_), [this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
      if (!ec) OnAccept(std::move(socket));
      Accept();
    });
  }

  void OnAccept(tcp::socket socket) {
    if (connections_.fetch_add(1) >= options_.max_connections) {
      --connections_;
      beast::error_code ec;
      socket.close(ec);
      return;
    }
    std::shared_ptr<asio::ssl::context> tls;
    {
      std::lock_guard<std::mutex> lock(tls_mu_);
      tls = tls_;
    }
    if (tls == nullptr) {
      std::make_shared<Session<beast::tcp_stream>>(this, beast::tcp_stream(std::move(socket)))->Run();
      return;
    }
    using TlsStream = beast::ssl_stream<beast::tcp_stream>;
    auto s = std::make_shared<Session<TlsStream>>(this, TlsStream(beast::tcp_stream(std::move(socket)), *tls));
    beast::get_lowest_layer(s->stream()).expires_after(options_.request_timeout);
    // The context lives as long as the handshake needs it (the stream keeps its SSL object).
    s->stream().async_handshake(asio::ssl::stream_base::server, [s, tls](beast::error_code ec) {
      if (!ec) s->Run();
    });
  }

  // What sessions touch comes before io_: handlers still queued at destruction are destroyed
  // with io_, after the members declared below it.
  std::shared_ptr<prometheus::Registry> registry_;
  MetricsHttpOptions options_;
  std::atomic<int> connections_{0};
  std::mutex tls_mu_;
  std::shared_ptr<asio::ssl::context> tls_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::vector<std::thread> threads_;
};

MetricsHttpServer::MetricsHttpServer(std::shared_ptr<prometheus::Registry> registry, MetricsHttpOptions options)
    : impl_(std::make_unique<Impl>(std::move(registry), options)) {}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

absl::StatusOr<int> MetricsHttpServer::Start(const std::string& host, int port) { return impl_->Start(host, port); }

absl::Status MetricsHttpServer::SetTls(const TlsMaterial& m) { return impl_->SetTls(m); }

void MetricsHttpServer::Stop() { impl_->Stop(); }

}  // namespace rwkv::server
