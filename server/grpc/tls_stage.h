// The gRPC port's TLS: gRPC reads the certificates through a file watcher on a private staging
// directory (mode 0700) that an update switches atomically (a new directory, then a renamed
// symlink), so gRPC never sees a key from one pair with the certificate of another. New
// handshakes get the new certificate within a second; established connections and their streams
// go on.
//
// Thread safety: Update from one thread at a time; the paths are fixed.
#ifndef RWKV_SERVER_GRPC_TLS_STAGE_H_
#define RWKV_SERVER_GRPC_TLS_STAGE_H_

#include <memory>
#include <string>

#include <grpcpp/security/server_credentials.h>

#include "absl/status/statusor.h"
#include "server/core/tls_files.h"

namespace rwkv::server {

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

#endif  // RWKV_SERVER_GRPC_TLS_STAGE_H_
