#include "server/tls.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace rwkv::server {
namespace {

absl::StatusOr<std::string> ReadPem(const char* flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--", flag, ": cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
Bio MemBio(const std::string& s) { return Bio(BIO_new_mem_buf(s.data(), static_cast<int>(s.size()))); }

absl::Status WriteFile(const std::string& path, const std::string& data) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return absl::InternalError(absl::StrCat("cannot write ", path));
  chmod(path.c_str(), 0600);
  const bool ok = std::fwrite(data.data(), 1, data.size(), f) == data.size();
  if (std::fclose(f) != 0 || !ok) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TlsMaterial> LoadTls(const TlsFiles& files) {
  TlsMaterial m;
  absl::StatusOr<std::string> cert = ReadPem("tls-cert", files.cert);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem("tls-key", files.key);
  if (!key.ok()) return key.status();
  m.cert_pem = std::move(*cert);
  m.key_pem = std::move(*key);
  Bio cb = MemBio(m.cert_pem), kb = MemBio(m.key_pem);
  X509* x = PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr);
  if (x == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat("--tls-cert: ", files.cert, " holds no PEM certificate"));
  }
  EVP_PKEY* k = PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr);
  if (k == nullptr) {
    X509_free(x);
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat("--tls-key: ", files.key, " holds no PEM private key"));
  }
  const bool match = X509_check_private_key(x, k) == 1;
  X509_free(x);
  EVP_PKEY_free(k);
  ERR_clear_error();
  if (!match) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-key: ", files.key, " is not the private key of --tls-cert ", files.cert));
  }
  if (!files.client_ca.empty()) {
    absl::StatusOr<std::string> ca = ReadPem("tls-client-ca", files.client_ca);
    if (!ca.ok()) return ca.status();
    m.client_ca_pem = std::move(*ca);
    Bio ab = MemBio(m.client_ca_pem);
    X509* c = PEM_read_bio_X509(ab.get(), nullptr, nullptr, nullptr);
    ERR_clear_error();
    if (c == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("--tls-client-ca: ", files.client_ca, " holds no PEM certificate"));
    }
    X509_free(c);
  }
  return m;
}

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
