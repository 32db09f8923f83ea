#include "server/core/tls_files.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <fstream>
#include <memory>
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

}  // namespace rwkv::server
