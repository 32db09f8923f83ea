#include "client/client.h"

namespace rwkv::client {
namespace {

// Takes the response by pointer so that it is read after the call that fills it.
template <typename Resp>
absl::StatusOr<Resp> Result(const grpc::Status& s, Resp* resp) {
  if (!s.ok()) return FromGrpc(s);
  return std::move(*resp);
}

}  // namespace

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target, const ConnectOptions& o) {
  if (!o.tls) return grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = o.root_certs_pem;
  ssl.pem_cert_chain = o.cert_chain_pem;
  ssl.pem_private_key = o.private_key_pem;
  grpc::ChannelArguments args;
  if (!o.server_name.empty()) args.SetSslTargetNameOverride(o.server_name);
  return grpc::CreateCustomChannel(target, grpc::SslCredentials(ssl), args);
}

Client::Client(const std::string& target, const ConnectOptions& options)
    : Client(MakeChannel(target, options), options.api_key) {}

Client::Client(std::shared_ptr<grpc::Channel> channel, std::string api_key)
    : channel_(std::move(channel)), stub_(v1::Rwkv::NewStub(channel_)), api_key_(std::move(api_key)) {}

void Client::Prepare(grpc::ClientContext* ctx, const CallOptions& opts, const std::string& session) const {
  if (opts.timeout) ctx->set_deadline(std::chrono::system_clock::now() + *opts.timeout);
  // The routing header only for ids of a valid length: the server refuses longer ones in the
  // request itself, with INVALID_ARGUMENT, and a huge header would fail the call before that.
  if (!session.empty() && session.size() <= kMaxSessionIdBytes) ctx->AddMetadata(kSessionHeader, session);
  // Plain metadata rather than call credentials: gRPC sends those only over TLS, and a key on a
  // loopback plaintext port is a supported setup.
  if (!api_key_.empty()) ctx->AddMetadata("authorization", "Bearer " + api_key_);
}

absl::StatusOr<v1::Final> Client::Generate(const v1::GenerateRequest& req, const ChunkFn& on_chunk,
                                           const CallOptions& opts) {
  grpc::ClientContext ctx;
  Prepare(&ctx, opts, req.session_id());
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader = stub_->Generate(&ctx, req);
  v1::GenerateResponse msg;
  std::optional<v1::Final> final;
  bool cancelled = false;
  while (reader->Read(&msg)) {
    if (msg.has_chunk()) {
      if (!cancelled && on_chunk && !on_chunk(msg.chunk())) {
        ctx.TryCancel();
        cancelled = true;
      }
    } else if (msg.has_final()) {
      final = msg.final();
    }
  }
  const grpc::Status s = reader->Finish();
  if (!s.ok()) return FromGrpc(s);
  if (!final) return absl::InternalError("the stream ended without a final message");
  return *final;
}

absl::StatusOr<v1::Session> Client::CreateSession(const v1::CreateSessionRequest& req, const CallOptions& opts) {
  grpc::ClientContext ctx;
  Prepare(&ctx, opts, req.session_id());
  v1::Session resp;
  return Result(stub_->CreateSession(&ctx, req, &resp), &resp);
}

absl::StatusOr<v1::Session> Client::GetSession(const std::string& id, const CallOptions& opts) {
  grpc::ClientContext ctx;
  Prepare(&ctx, opts, id);
  v1::GetSessionRequest req;
  req.set_session_id(id);
  v1::Session resp;
  return Result(stub_->GetSession(&ctx, req, &resp), &resp);
}

absl::StatusOr<std::vector<v1::Session>> Client::ListSessions(const CallOptions& opts) {
  grpc::ClientContext ctx;
  Prepare(&ctx, opts);
  v1::ListSessionsResponse resp;
  const grpc::Status s = stub_->ListSessions(&ctx, v1::ListSessionsRequest(), &resp);
  if (!s.ok()) return FromGrpc(s);
  return std::vector<v1::Session>(resp.sessions().begin(), resp.sessions().end());
}

absl::Status Client::DeleteSession(const std::string& id, const CallOptions& opts) {
  grpc::ClientContext ctx;
  Prepare(&ctx, opts, id);
  v1::DeleteSessionRequest req;
  req.set_session_id(id);
  v1::DeleteSessionResponse resp;
  return FromGrpc(stub_->DeleteSession(&ctx, req, &resp));
}

absl::StatusOr<v1::Session> Client::ForkSession(const std::string& id, const std::string& new_id,
                                                const CallOptions& opts) {
  grpc::ClientContext ctx;
  Prepare(&ctx, opts, id);
  v1::ForkSessionRequest req;
  req.set_session_id(id);
  req.set_new_session_id(new_id);
  v1::Session resp;
  return Result(stub_->ForkSession(&ctx, req, &resp), &resp);
}

absl::StatusOr<std::string> Client::ExportSession(const std::string& id, const CallOptions& opts) {
  grpc::ClientContext ctx;
  Prepare(&ctx, opts, id);
  v1::ExportSessionRequest req;
  req.set_session_id(id);
  std::unique_ptr<grpc::ClientReader<v1::StateChunk>> reader = stub_->ExportSession(&ctx, req);
  std::string data;
  v1::StateChunk chunk;
  while (reader->Read(&chunk)) data += chunk.data();
  const grpc::Status s = reader->Finish();
  if (!s.ok()) return FromGrpc(s);
  return data;
}

absl::StatusOr<v1::Session> Client::ImportSession(const std::string& data, const std::string& new_id,
                                                  const CallOptions& opts) {
  grpc::ClientContext ctx;
  Prepare(&ctx, opts, new_id);
  v1::Session resp;
  std::unique_ptr<grpc::ClientWriter<v1::ImportSessionRequest>> writer = stub_->ImportSession(&ctx, &resp);
  constexpr size_t kChunk = 1 << 20;
  for (size_t off = 0; off == 0 || off < data.size(); off += kChunk) {
    v1::ImportSessionRequest req;
    if (off == 0) req.set_session_id(new_id);
    req.set_data(data.substr(off, kChunk));
    if (!writer->Write(req)) break;  // The server answered early; Finish says why.
  }
  writer->WritesDone();
  return Result(writer->Finish(), &resp);
}

absl::StatusOr<std::vector<int32_t>> Client::Tokenize(const std::string& text, const CallOptions& opts) {
  grpc::ClientContext ctx;
  Prepare(&ctx, opts);
  v1::TokenizeRequest req;
  req.set_text(text);
  v1::TokenizeResponse resp;
  const grpc::Status s = stub_->Tokenize(&ctx, req, &resp);
  if (!s.ok()) return FromGrpc(s);
  return std::vector<int32_t>(resp.token_ids().begin(), resp.token_ids().end());
}

absl::StatusOr<std::string> Client::Detokenize(const std::vector<int32_t>& ids, const CallOptions& opts) {
  grpc::ClientContext ctx;
  Prepare(&ctx, opts);
  v1::DetokenizeRequest req;
  req.mutable_token_ids()->Add(ids.begin(), ids.end());
  v1::DetokenizeResponse resp;
  const grpc::Status s = stub_->Detokenize(&ctx, req, &resp);
  if (!s.ok()) return FromGrpc(s);
  return resp.text();
}

absl::StatusOr<v1::ModelInfo> Client::GetModelInfo(const CallOptions& opts) {
  grpc::ClientContext ctx;
  Prepare(&ctx, opts);
  v1::ModelInfo resp;
  return Result(stub_->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &resp), &resp);
}

}  // namespace rwkv::client
