#include "server/http/http_server.h"

#include <atomic>
#include <deque>
#include <mutex>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/absl_compat.h"

namespace rwkv::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

}  // namespace

std::optional<std::string_view> HttpRequest::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return std::string_view(v);
  }
  return std::nullopt;
}

std::string_view HttpRequest::Path() const {
  const std::string_view t = target;
  return t.substr(0, t.find('?'));
}

class HttpServer::Impl {
 public:
  Impl(HttpServerOptions options, Handler handler)
      : options_(std::move(options)), handler_(std::move(handler)), acceptor_(io_) {}

  absl::StatusOr<int> Start(const std::string& host, int port) {
    beast::error_code ec;
    tcp::resolver resolver(io_);
    auto results = resolver.resolve(host, std::to_string(port), tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    if (ec || results.empty()) {
      return absl::UnavailableError(absl::StrCat(options_.name, ": cannot resolve ", host, ": ", ec.message()));
    }
    const tcp::endpoint ep = results.begin()->endpoint();
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);  // Not SO_REUSEPORT: a second server fails.
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(absl::StrCat(options_.name, ": cannot listen on ", host, ":", port, ": ", ec.message()));
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
    if (ec) return absl::InvalidArgumentError(absl::StrCat(options_.name, " TLS: ", ec.message()));
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
  template <typename Stream>
  class Conn;

  // One request's side of a connection: what the handler holds. Every answer is posted to the
  // connection's strand.
  template <typename Stream>
  class Exchange final : public HttpExchange {
   public:
    Exchange(std::shared_ptr<Conn<Stream>> conn, HttpRequest req) : conn_(std::move(conn)), req_(std::move(req)) {}
    const HttpRequest& request() const override { return req_; }
    void Respond(int status, std::string type, std::string body, HttpHeaders headers) override {
      auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(status), 11);
      conn_->Fill(*res, type, headers);
      res->body() = std::move(body);
      res->prepare_payload();
      asio::post(conn_->executor(), [c = conn_, res] { c->Push(Item{Item::kWhole, res, nullptr, {}}); });
    }
    void BeginStream(int status, std::string type, HttpHeaders headers) override {
      auto res = std::make_shared<http::response<http::empty_body>>(static_cast<http::status>(status), 11);
      conn_->Fill(*res, type, headers);
      res->chunked(true);
      auto sr = std::make_shared<http::response_serializer<http::empty_body>>(*res);
      asio::post(conn_->executor(), [c = conn_, res, sr] { c->Push(Item{Item::kHeader, res, sr, {}}); });
    }
    void Send(std::string data) override {
      if (data.empty()) return;  // An empty chunk would end the body.
      ++conn_->queued_;
      asio::post(conn_->executor(), [c = conn_, d = std::move(data)]() mutable {
        c->Push(Item{Item::kChunk, nullptr, nullptr, std::move(d)});
      });
    }
    void End() override {
      asio::post(conn_->executor(), [c = conn_] { c->Push(Item{Item::kLast, nullptr, nullptr, {}}); });
    }
    size_t queued() const override { return conn_->queued_.load(); }
    bool closed() const override { return conn_->closed_.load(); }
    void SetOnProgress(std::function<void()> fn) override {
      std::lock_guard<std::mutex> lock(conn_->progress_mu_);
      conn_->on_progress_ = std::move(fn);
    }

   private:
    std::shared_ptr<Conn<Stream>> conn_;
    HttpRequest req_;
  };

  struct Item {
    enum Kind { kWhole, kHeader, kChunk, kLast } kind;
    std::shared_ptr<void> res;  // The response message (kWhole, kHeader).
    std::shared_ptr<void> sr;   // The header's serializer (kHeader).
    std::string data;           // kChunk.
  };

  // One connection: requests in turn (keep-alive). Strand-only state below the atomics.
  template <typename Stream>
  class Conn final : public std::enable_shared_from_this<Conn<Stream>> {
   public:
    Conn(Impl* server, Stream stream) : server_(server), stream_(std::move(stream)), idle_(stream_.get_executor()) {}
    ~Conn() { --server_->connections_; }

    void Run() { Read(); }
    Stream& stream() { return stream_; }
    auto executor() { return stream_.get_executor(); }

    template <typename Res>
    void Fill(Res& res, const std::string& type, const HttpHeaders& headers) {
      res.set(http::field::server, "rwkv-server");
      if (!type.empty()) res.set(http::field::content_type, type);
      for (const auto& [k, v] : headers) res.set(k, v);
      res.keep_alive(keep_alive_.load());
    }

    void Push(Item item) {
      outbox_.push_back(std::move(item));
      Pump();
    }

    std::atomic<size_t> queued_{0};
    std::atomic<bool> closed_{false};
    std::mutex progress_mu_;
    std::function<void()> on_progress_;  // Guarded by progress_mu_.

   private:
    beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }

    void Read() {
      parser_.emplace();
      parser_->header_limit(static_cast<uint32_t>(server_->options_.max_header_bytes));
      parser_->body_limit(server_->options_.max_body_bytes);
      Lowest().expires_after(server_->options_.request_timeout);
      http::async_read_header(stream_, buffer_, *parser_,
                              [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
    }

    // The header is in: a client that sent "Expect: 100-continue" (curl does for bodies over 1 KiB)
    // waits for the interim response before it sends the body.
    void OnHeader(beast::error_code ec) {
      if (ec || parser_->is_done()) return OnRead(ec);
      auto body = [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); };
      if (!beast::iequals(parser_->get()[http::field::expect], "100-continue")) {
        return http::async_read(stream_, buffer_, *parser_, body);
      }
      auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_, 11);
      http::async_write(stream_, *cont, [self = this->shared_from_this(), cont, body](beast::error_code ec, size_t) {
        if (ec) return self->Close();
        http::async_read(self->stream_, self->buffer_, *self->parser_, body);
      });
    }

    void OnRead(beast::error_code ec) {
      if (ec == http::error::body_limit) {
        // The rest of the body is not read: answer, then close.
        keep_alive_ = false;
        auto res = std::make_shared<http::response<http::string_body>>(http::status::payload_too_large, 11);
        Fill(*res, "application/json", {});
        res->body() = absl::StrCat(R"({"error":{"message":"the request body is over )", server_->options_.max_body_bytes,
                                   R"( bytes","type":"invalid_request_error","param":null,"code":null}})");
        res->prepare_payload();
        in_exchange_ = true;
        return Push(Item{Item::kWhole, res, nullptr, {}});
      }
      if (ec) return Close();  // Timeout, malformed request, client gone: the connection ends.
      Lowest().expires_never();  // An answer may take as long as its generation.
      http::request<http::string_body> msg = parser_->release();
      HttpRequest req;
      req.method = std::string(msg.method_string().data(), msg.method_string().size());
      req.target = std::string(msg.target().data(), msg.target().size());
      for (const auto& f : msg) {
        req.headers.emplace_back(absl::AsciiStrToLower(absl::string_view(f.name_string().data(), f.name_string().size())),
                                 std::string(f.value().data(), f.value().size()));
      }
      req.body = std::move(msg.body());
      keep_alive_ = msg.keep_alive();
      in_exchange_ = true;
      Watch();
      server_->handler_(std::make_shared<Exchange<Stream>>(this->shared_from_this(), std::move(req)));
    }

    // While an answer is pending, a read notices a client that leaves. Bytes it gets (a pipelined
    // request) stay in the buffer for the next request.
    void Watch() {
      if (watching_ || buffer_.size() > 0) return;
      watching_ = true;
      stream_.async_read_some(buffer_.prepare(4096), [self = this->shared_from_this()](beast::error_code ec, size_t n) {
        self->watching_ = false;
        if (ec) return self->Close();  // The client left (or half-closed): a pending answer is cancelled.
        self->buffer_.commit(n);
        if (!self->in_exchange_) {
          self->idle_.cancel();
          self->Read();
        }
      });
    }

    void Pump() {
      if (writing_ || outbox_.empty()) return;
      if (closed_) {
        outbox_.clear();
        queued_ = 0;
        return Close();
      }
      Item item = std::move(outbox_.front());
      outbox_.pop_front();
      writing_ = true;
      Lowest().expires_after(server_->options_.write_timeout);
      auto done = [self = this->shared_from_this(), item](beast::error_code ec, size_t) {
        self->OnWritten(ec, item);
      };
      switch (item.kind) {
        case Item::kWhole:
          http::async_write(stream_, *std::static_pointer_cast<http::response<http::string_body>>(item.res), done);
          break;
        case Item::kHeader:
          http::async_write_header(
              stream_, *std::static_pointer_cast<http::response_serializer<http::empty_body>>(item.sr), done);
          break;
        case Item::kChunk:
          asio::async_write(stream_, http::make_chunk(asio::buffer(item.data)), done);
          break;
        case Item::kLast:
          asio::async_write(stream_, http::make_chunk_last(), done);
          break;
      }
    }

    void OnWritten(beast::error_code ec, const Item& item) {
      writing_ = false;
      if (item.kind == Item::kChunk) --queued_;
      if (ec) {
        MarkClosed();
        return Close();
      }
      Progress();
      if (item.kind == Item::kWhole || item.kind == Item::kLast) return Answered();
      Pump();
    }

    // The answer is written: the next request, or the end of the connection.
    void Answered() {
      in_exchange_ = false;
      if (!keep_alive_ || closed_) return Close();
      if (!watching_) return Read();
      // The watch read is still out: it becomes the next request's first bytes; until they come,
      // the idle timer bounds the wait.
      idle_.expires_after(server_->options_.request_timeout);
      idle_.async_wait([self = this->shared_from_this()](beast::error_code ec) {
        if (!ec && !self->in_exchange_) self->Close();
      });
    }

    void MarkClosed() {
      if (closed_.exchange(true)) return;
      Progress();
    }

    void Progress() {
      std::function<void()> fn;
      {
        std::lock_guard<std::mutex> lock(progress_mu_);
        fn = on_progress_;
      }
      if (fn) fn();
    }

    void Close() {
      MarkClosed();
      idle_.cancel();
      beast::error_code ec;
      Lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
      Lowest().socket().close(ec);
    }

    Impl* server_;
    Stream stream_;
    asio::steady_timer idle_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    std::deque<Item> outbox_;
    bool writing_ = false;
    bool watching_ = false;
    bool in_exchange_ = false;
    std::atomic<bool> keep_alive_{true};  // Read by Fill on the handler's thread.
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
      std::make_shared<Conn<beast::tcp_stream>>(this, beast::tcp_stream(std::move(socket)))->Run();
      return;
    }
    using TlsStream = beast::ssl_stream<beast::tcp_stream>;
    auto c = std::make_shared<Conn<TlsStream>>(this, TlsStream(beast::tcp_stream(std::move(socket)), *tls));
    beast::get_lowest_layer(c->stream()).expires_after(options_.request_timeout);
    // The context lives as long as the handshake needs it (the stream keeps its SSL object).
    c->stream().async_handshake(asio::ssl::stream_base::server, [c, tls](beast::error_code ec) {
      if (!ec) c->Run();
    });
  }

  // What connections touch comes before io_: handlers still queued at destruction are destroyed
  // with io_, after the members declared below it.
  HttpServerOptions options_;
  Handler handler_;
  std::atomic<int> connections_{0};
  std::mutex tls_mu_;
  std::shared_ptr<asio::ssl::context> tls_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::vector<std::thread> threads_;
};

HttpServer::HttpServer(HttpServerOptions options, Handler handler)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler))) {}

HttpServer::~HttpServer() { Stop(); }

absl::StatusOr<int> HttpServer::Start(const std::string& host, int port) { return impl_->Start(host, port); }

absl::Status HttpServer::SetTls(const TlsMaterial& m) { return impl_->SetTls(m); }

void HttpServer::Stop() { impl_->Stop(); }

}  // namespace rwkv::server
