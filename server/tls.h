// TLS for the gRPC and metrics ports: certificate files read and checked (the key matches the
// certificate, the client CA parses) before use, at start and on SIGHUP. A reload that fails
// keeps the certificates in use; one that succeeds serves new handshakes with the new files
// while established connections and their streams go on.
//
// gRPC reads the certificates through a file watcher on a private staging directory (mode 0700)
// that a reload switches atomically (a new directory, then a renamed symlink), so gRPC never
// sees a key from one pair with the certificate of another.
//
// Thread safety: TlsStage::Update from one thread at a time; the paths are fixed.
#ifndef RWKV_SERVER_TLS_H_
#define RWKV_SERVER_TLS_H_

#include <memory>
#include <string>

#include <grpcpp/security/server_credentials.h>

#include "absl/status/statusor.h"

namespace rwkv::server {

struct TlsFiles {
  std::string cert, key;  // PEM; both or neither.
  std::string client_ca;  // PEM; set = client certificates required (mTLS).
  bool enabled() const { return !cert.empty(); }
};

struct TlsMaterial {
  std::string cert_pem, key_pem, client_ca_pem;
};

// INVALID_ARGUMENT naming the flag and file: unreadable, not PEM, a key that does not match the
// certificate, a CA bundle without a certificate.
absl::StatusOr<TlsMaterial> LoadTls(const TlsFiles& files);

class TlsStage {
 public:
  static absl::StatusOr<std::unique_ptr<TlsStage>> Create(const TlsMaterial& m);
  ~TlsStage();
  // Switches to `m` (gRPC picks it up within a second).
  absl::Status Update(const TlsMaterial& m);
  // gRPC server credentials watching the stage: TLS, and mTLS when the material has a client CA.
  std::shared_ptr<grpc::ServerCredentials> Credentials() const;

 private:
  explicit TlsStage(std::string dir) : dir_(std::move(dir)) {}
  std::string Path(const char* name) const { return dir_ + "/current/" + name; }

  std::string dir_;
  bool mtls_ = false;
  int generation_ = 0;
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_TLS_H_
