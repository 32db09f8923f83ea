// C++ client library for rwkv.v1.Rwkv: streaming Generate with a callback per chunk, sessions,
// export/import, deadlines and cancellation. Errors come back as absl::Status with the server's
// gRPC code and message.
//
// Thread safety: a Client may be used from many threads at once (one channel, many calls).
#ifndef RWKV_CLIENT_CLIENT_H_
#define RWKV_CLIENT_CLIENT_H_

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "rwkv/v1/rwkv.grpc.pb.h"

namespace rwkv::client {

// Metadata header carrying the session id on every session call, so that an L7 proxy can route
// all turns of a session to the replica holding its state (consistent hashing on this header).
inline constexpr char kSessionHeader[] = "x-rwkv-session-id";
inline constexpr size_t kMaxSessionIdBytes = 128;  // The server's limit on session ids.

// How the channel reaches the server.
struct ConnectOptions {
  std::string api_key;          // Sent as `authorization: Bearer KEY` on every call; empty = none.
  bool tls = false;             // Plaintext when false (loopback development).
  std::string root_certs_pem;   // The CA that signed the server's certificate; empty = system roots.
  std::string cert_chain_pem;   // A client certificate (mTLS) and its key; empty = none.
  std::string private_key_pem;
  std::string server_name;      // Checked against the certificate instead of the target's host.
};

// The channel credentials and arguments for `o`.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target, const ConnectOptions& o);

struct CallOptions {
  std::optional<std::chrono::milliseconds> timeout;  // Deadline from the call's start.
};

class Client {
 public:
  // `target` as gRPC takes it: "localhost:50051", "dns:///rwkv:50051".
  explicit Client(const std::string& target, const ConnectOptions& options = {});
  explicit Client(std::shared_ptr<grpc::Channel> channel, std::string api_key = "");

  // Called for each chunk in order; return false to cancel the request (the call then returns
  // CANCELLED and the session, if any, is left as it was).
  using ChunkFn = std::function<bool(const v1::Chunk&)>;
  absl::StatusOr<v1::Final> Generate(const v1::GenerateRequest& req, const ChunkFn& on_chunk,
                                     const CallOptions& opts = {});

  absl::StatusOr<v1::Session> CreateSession(const v1::CreateSessionRequest& req, const CallOptions& opts = {});
  absl::StatusOr<v1::Session> GetSession(const std::string& id, const CallOptions& opts = {});
  absl::StatusOr<std::vector<v1::Session>> ListSessions(const CallOptions& opts = {});
  absl::Status DeleteSession(const std::string& id, const CallOptions& opts = {});
  absl::StatusOr<v1::Session> ForkSession(const std::string& id, const std::string& new_id = "",
                                          const CallOptions& opts = {});
  // The export's bytes (header and payload), as ImportSession takes them.
  absl::StatusOr<std::string> ExportSession(const std::string& id, const CallOptions& opts = {});
  absl::StatusOr<v1::Session> ImportSession(const std::string& data, const std::string& new_id = "",
                                            const CallOptions& opts = {});
  absl::StatusOr<std::vector<int32_t>> Tokenize(const std::string& text, const CallOptions& opts = {});
  absl::StatusOr<std::string> Detokenize(const std::vector<int32_t>& ids, const CallOptions& opts = {});
  absl::StatusOr<v1::ModelInfo> GetModelInfo(const CallOptions& opts = {});

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  void Prepare(grpc::ClientContext* ctx, const CallOptions& opts, const std::string& session = "") const;

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Rwkv::Stub> stub_;
  std::string api_key_;
};

absl::Status FromGrpc(const grpc::Status& s);

}  // namespace rwkv::client

#endif  // RWKV_CLIENT_CLIENT_H_
