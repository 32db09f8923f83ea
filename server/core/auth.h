// API keys and tenants. A keys file maps keys to tenants; every RPC but the health service
// presents one as `authorization: Bearer KEY`. A session belongs to the tenant that created it:
// the edge scopes session ids by tenant ("TENANT:ID" inside the store), so another tenant's
// session is simply not there. Per-tenant limits bound sessions, concurrent streams and
// generated tokens per minute.
//
// Keys file (--api-keys), one entry per line, `#` starts a comment:
//   KEY TENANT [sessions=N] [streams=N] [tokens_per_minute=N]
//   sha256:HEX TENANT [...]        the key's SHA-256 (64 hex digits) instead of the key itself
// Keys are 16..256 printable ASCII characters without spaces; tenants 1..64 of [A-Za-z0-9._-].
// Limits on a line override the server-wide defaults (0 = no limit); every line of a tenant must
// give it the same limits. Keys are kept only as their
// SHA-256, compared by lookup of the presented key's hash, and never reach logs or messages.
//
// Thread safety: ApiKeys is immutable after Parse; TenantUsage is thread-safe.
#ifndef RWKV_SERVER_CORE_AUTH_H_
#define RWKV_SERVER_CORE_AUTH_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rwkv::server {

struct TenantLimits {
  int max_sessions = 0;           // 0 = no limit (the server's --max-sessions still applies).
  int max_streams = 0;            // Concurrent Generate streams.
  int64_t tokens_per_minute = 0;  // Generated tokens over the last 60 s.
};

struct Tenant {
  std::string name;  // Empty: the one tenant of a server without API keys.
  TenantLimits limits;
};

class ApiKeys {
 public:
  // INVALID_ARGUMENT naming `name` and the line (never the key) for a malformed entry, a
  // duplicate key or an unknown limit. A file with no entries is an error too.
  static absl::StatusOr<std::shared_ptr<const ApiKeys>> Parse(std::string_view text, const std::string& name,
                                                              const TenantLimits& defaults);
  static absl::StatusOr<std::shared_ptr<const ApiKeys>> Load(const std::string& path, const TenantLimits& defaults);

  // The tenant of a presented key; nullptr when no entry has it.
  const Tenant* Find(std::string_view key) const;
  // A listed tenant's limits; nullptr when no key names it.
  const TenantLimits* LimitsOf(std::string_view tenant) const;
  size_t size() const { return by_hash_.size(); }
  size_t tenants() const;

 private:
  absl::flat_hash_map<std::string, Tenant> by_hash_;  // Raw SHA-256 of the key -> its tenant.
  std::map<std::string, TenantLimits, std::less<>> limits_;  // By tenant.
};

// The SHA-256 of `data`, as 32 raw bytes.
std::string Sha256(std::string_view data);

// 1..64 bytes of [A-Za-z0-9._-]; INVALID_ARGUMENT naming `field` otherwise.
absl::Status ValidateTenant(std::string_view tenant, const char* field);

// RESOURCE_EXHAUSTED for a tenant limit, carrying which one ("sessions", "streams",
// "tokens_per_minute") as a payload that TenantLimitOf reads back (for the metrics).
absl::Status TenantLimitError(std::string_view limit, std::string_view message);
std::optional<std::string> TenantLimitOf(const absl::Status& s);

// Session ids inside the store: "TENANT:ID" for a tenant, the bare id without one.
std::string ScopedSessionId(std::string_view tenant, std::string_view id);
// The tenant part of a store id ("" for a bare id).
std::string_view SessionOwner(std::string_view scoped);
// The id a tenant sees; REQUIRES: SessionOwner(scoped) == tenant.
std::string_view UnscopedSessionId(std::string_view tenant, std::string_view scoped);

// Streams and generated tokens per tenant, against each tenant's limits.
class TenantUsage {
 public:
  using Clock = std::chrono::steady_clock;

  // Admits a stream: RESOURCE_EXHAUSTED naming the tenant and the limit when it has max_streams
  // running or generated tokens_per_minute in the last 60 s. Pair with EndStream.
  absl::Status BeginStream(const Tenant& tenant, Clock::time_point now);
  void EndStream(const std::string& tenant);
  void AddTokens(const std::string& tenant, int64_t n, Clock::time_point now);
  // Tokens generated over the last 60 s.
  int64_t TokensLastMinute(const std::string& tenant, Clock::time_point now);
  int Streams(const std::string& tenant);

 private:
  struct Usage {
    int streams = 0;
    std::deque<std::pair<int64_t, int64_t>> seconds;  // (second since epoch of Clock, tokens), oldest first.
    int64_t window_tokens = 0;
  };
  static void Trim(Usage& u, int64_t now_s);

  std::mutex mu_;
  std::map<std::string, Usage, std::less<>> usage_;
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_CORE_AUTH_H_
