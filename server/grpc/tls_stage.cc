#include "server/grpc/tls_stage.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace rwkv::server {
namespace {

absl::Status WriteFile(const std::string& path, const std::string& data) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return absl::InternalError(absl::StrCat("cannot write ", path));
  chmod(path.c_str(), 0600);
  const bool ok = std::fwrite(data.data(), 1, data.size(), f) == data.size();
  if (std::fclose(f) != 0 || !ok) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<TlsStage>> TlsStage::Create(const TlsMaterial& m) {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = absl::StrCat(tmp != nullptr && *tmp ? tmp : "/tmp", "/rwkv-tls-XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("cannot make a private directory for the TLS files under ", tmpl));
  }
  std::unique_ptr<TlsStage> stage(new TlsStage(tmpl));
  stage->mtls_ = !m.client_ca_pem.empty();
  if (absl::Status st = stage->Update(m); !st.ok()) return st;
  return stage;
}

TlsStage::~TlsStage() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

absl::Status TlsStage::Update(const TlsMaterial& m) {
  if (!m.client_ca_pem.empty() != mtls_) {
    return absl::FailedPreconditionError("--tls-client-ca cannot be added or removed by a reload; restart instead");
  }
  const std::string gen = absl::StrCat("g", ++generation_);
  const std::string gen_dir = absl::StrCat(dir_, "/", gen);
  std::error_code ec;
  std::filesystem::create_directory(gen_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot make ", gen_dir, ": ", ec.message()));
  if (absl::Status st = WriteFile(gen_dir + "/cert.pem", m.cert_pem); !st.ok()) return st;
  if (absl::Status st = WriteFile(gen_dir + "/key.pem", m.key_pem); !st.ok()) return st;
  if (absl::Status st = WriteFile(gen_dir + "/ca.pem", m.client_ca_pem); !st.ok()) return st;
  // The switch: a new symlink renamed over "current" (atomic), then the old generation goes.
  const std::string link_tmp = dir_ + "/current.tmp";
  unlink(link_tmp.c_str());
  if (symlink(gen.c_str(), link_tmp.c_str()) != 0 || rename(link_tmp.c_str(), (dir_ + "/current").c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot switch the TLS files in ", dir_));
  }
  if (generation_ > 2) std::filesystem::remove_all(absl::StrCat(dir_, "/g", generation_ - 2), ec);  // Kept one back: a read may be in flight.
  return absl::OkStatus();
}

std::shared_ptr<grpc::ServerCredentials> TlsStage::Credentials() const {
  auto provider = mtls_ ? std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
                              Path("key.pem"), Path("cert.pem"), Path("ca.pem"), /*refresh_interval_sec=*/1)
                        : std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
                              Path("key.pem"), Path("cert.pem"), /*refresh_interval_sec=*/1);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (mtls_) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

}  // namespace rwkv::server
