// TLS material: certificate files read and checked (the key matches the certificate, the
// client CA parses) before use, at start and on SIGHUP, for both edges (the gRPC port through
// server/grpc/tls_stage.h, the metrics port through server/http/metrics_http.h). A reload that
// fails keeps the certificates in use.
//
// Thread safety: LoadTls is a pure function of the files.
#ifndef RWKV_SERVER_CORE_TLS_FILES_H_
#define RWKV_SERVER_CORE_TLS_FILES_H_

#include <string>

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

}  // namespace rwkv::server

#endif  // RWKV_SERVER_CORE_TLS_FILES_H_
