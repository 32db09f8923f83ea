#include "server/core/auth.h"

#include <openssl/evp.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/absl_compat.h"

namespace rwkv::server {
namespace {

constexpr size_t kMinKeyBytes = 16, kMaxKeyBytes = 256, kMaxTenantBytes = 64;

bool PrintableKey(std::string_view key) {
  for (char c : key) {
    if (c <= ' ' || c > '~') return false;
  }
  return true;
}

// A name from the file for a message: at most 32 bytes, non-printable bytes as '?'.
std::string Shown(absl::string_view s) {
  std::string out(s.substr(0, 32));
  for (char& c : out) {
    if (c < ' ' || c > '~') c = '?';
  }
  return s.size() > 32 ? out + "..." : out;
}

}  // namespace

std::string Sha256(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(digest), len);
}

absl::Status ValidateTenant(std::string_view tenant, const char* field) {
  if (tenant.empty() || tenant.size() > kMaxTenantBytes) {
    return absl::InvalidArgumentError(absl::StrFormat("%s must be 1..%d bytes", field, kMaxTenantBytes));
  }
  for (char c : tenant) {
    const bool ok = absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    if (!ok) return absl::InvalidArgumentError(absl::StrCat(field, " may contain only [A-Za-z0-9._-]"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const ApiKeys>> ApiKeys::Parse(std::string_view text, const std::string& name,
                                                              const TenantLimits& defaults) {
  auto keys = std::make_shared<ApiKeys>();
  int line_no = 0;
  for (absl::string_view raw : absl::StrSplit(AV(text), '\n')) {
    ++line_no;
    absl::string_view line = raw;
    if (const size_t hash = line.find('#'); hash != absl::string_view::npos) line = line.substr(0, hash);
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (f.empty()) continue;
    auto bad = [&](const std::string& what) {
      return absl::InvalidArgumentError(absl::StrFormat("%s:%d: %s", name, line_no, what));
    };
    if (f.size() < 2) return bad("expected KEY TENANT [sessions=N] [streams=N] [tokens_per_minute=N]");
    std::string digest;
    if (absl::StartsWith(f[0], "sha256:")) {
      const absl::string_view hex = f[0].substr(7);
      bool hex_ok = hex.size() == 64;
      for (char c : hex) hex_ok = hex_ok && absl::ascii_isxdigit(static_cast<unsigned char>(c));
      if (!hex_ok) return bad("a sha256: key needs 64 hex digits");
      digest = absl::HexStringToBytes(hex);
    } else {
      if (f[0].size() < kMinKeyBytes || f[0].size() > kMaxKeyBytes || !PrintableKey(SV(f[0]))) {
        return bad(absl::StrFormat("a key must be %d..%d printable characters", kMinKeyBytes, kMaxKeyBytes));
      }
      digest = Sha256(SV(f[0]));
    }
    Tenant t;
    t.name = std::string(f[1]);
    if (absl::Status st = ValidateTenant(t.name, "tenant"); !st.ok()) return bad(std::string(st.message()));
    t.limits = defaults;
    for (size_t i = 2; i < f.size(); ++i) {
      std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(f[i], absl::MaxSplits('=', 1));
      int64_t v = 0;
      if (!absl::SimpleAtoi(kv.second, &v) || v < 0 || v > (int64_t{1} << 40)) {
        return bad(absl::StrCat("'", Shown(kv.first), "' needs a non-negative integer"));
      }
      if (kv.first == "sessions" && v <= INT32_MAX) {
        t.limits.max_sessions = static_cast<int>(v);
      } else if (kv.first == "streams" && v <= INT32_MAX) {
        t.limits.max_streams = static_cast<int>(v);
      } else if (kv.first == "tokens_per_minute") {
        t.limits.tokens_per_minute = v;
      } else {
        return bad(absl::StrCat("unknown limit '", Shown(kv.first), "' (sessions, streams, tokens_per_minute)"));
      }
    }
    auto [lim, added] = keys->limits_.emplace(t.name, t.limits);
    if (!added && (lim->second.max_sessions != t.limits.max_sessions || lim->second.max_streams != t.limits.max_streams ||
                   lim->second.tokens_per_minute != t.limits.tokens_per_minute)) {
      return bad(absl::StrCat("tenant ", t.name, " has other limits on an earlier line; give each line the same"));
    }
    if (!keys->by_hash_.emplace(std::move(digest), std::move(t)).second) {
      return bad("this key is already listed on an earlier line");
    }
  }
  if (keys->by_hash_.empty()) return absl::InvalidArgumentError(absl::StrCat(name, ": no API keys listed"));
  return std::shared_ptr<const ApiKeys>(std::move(keys));
}

absl::StatusOr<std::shared_ptr<const ApiKeys>> ApiKeys::Load(const std::string& path, const TenantLimits& defaults) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return Parse(ss.str(), path, defaults);
}

const Tenant* ApiKeys::Find(std::string_view key) const {
  if (key.empty() || key.size() > kMaxKeyBytes) return nullptr;
  auto it = by_hash_.find(Sha256(key));
  return it == by_hash_.end() ? nullptr : &it->second;
}

size_t ApiKeys::tenants() const { return limits_.size(); }

const TenantLimits* ApiKeys::LimitsOf(std::string_view tenant) const {
  auto it = limits_.find(tenant);
  return it == limits_.end() ? nullptr : &it->second;
}

namespace {
constexpr char kTenantLimitPayload[] = "type.rwkv-serve/tenant-limit";
}  // namespace

absl::Status TenantLimitError(std::string_view limit, std::string_view message) {
  absl::Status s = absl::ResourceExhaustedError(AV(message));
  s.SetPayload(kTenantLimitPayload, absl::Cord(AV(limit)));
  return s;
}

std::optional<std::string> TenantLimitOf(const absl::Status& s) {
  absl::optional<absl::Cord> p = s.GetPayload(kTenantLimitPayload);
  if (!p) return std::nullopt;
  return std::string(*p);
}

std::string ScopedSessionId(std::string_view tenant, std::string_view id) {
  if (tenant.empty()) return std::string(id);
  return absl::StrCat(AV(tenant), ":", AV(id));
}

std::string_view SessionOwner(std::string_view scoped) {
  const size_t colon = scoped.find(':');
  return colon == std::string_view::npos ? std::string_view() : scoped.substr(0, colon);
}

std::string_view UnscopedSessionId(std::string_view tenant, std::string_view scoped) {
  return tenant.empty() ? scoped : scoped.substr(tenant.size() + 1);
}

void TenantUsage::Trim(Usage& u, int64_t now_s) {
  while (!u.seconds.empty() && u.seconds.front().first <= now_s - 60) {
    u.window_tokens -= u.seconds.front().second;
    u.seconds.pop_front();
  }
}

namespace {
int64_t SecondOf(TenantUsage::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}
std::string Who(std::string_view tenant) {
  return tenant.empty() ? std::string("this server's") : absl::StrCat("tenant ", AV(tenant), "'s");
}
}  // namespace

absl::Status TenantUsage::BeginStream(const Tenant& tenant, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  Usage& u = usage_[tenant.name];
  Trim(u, SecondOf(now));
  if (tenant.limits.max_streams > 0 && u.streams >= tenant.limits.max_streams) {
    return TenantLimitError("streams", absl::StrFormat("%s concurrent stream limit is %d (streams); retry when one ends",
                                                       Who(tenant.name), tenant.limits.max_streams));
  }
  if (tenant.limits.tokens_per_minute > 0 && u.window_tokens >= tenant.limits.tokens_per_minute) {
    return TenantLimitError("tokens_per_minute", absl::StrFormat(
        "%s limit of %d generated tokens per minute (tokens_per_minute) is used up (%d in the last 60 s)",
        Who(tenant.name), tenant.limits.tokens_per_minute, u.window_tokens));
  }
  ++u.streams;
  return absl::OkStatus();
}

void TenantUsage::EndStream(const std::string& tenant) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = usage_.find(tenant);
  if (it != usage_.end() && it->second.streams > 0) --it->second.streams;
}

void TenantUsage::AddTokens(const std::string& tenant, int64_t n, Clock::time_point now) {
  const int64_t s = SecondOf(now);
  std::lock_guard<std::mutex> lock(mu_);
  Usage& u = usage_[tenant];
  Trim(u, s);
  if (u.seconds.empty() || u.seconds.back().first < s) u.seconds.emplace_back(s, 0);  // A late caller joins the newest second.
  u.seconds.back().second += n;
  u.window_tokens += n;
}

int64_t TenantUsage::TokensLastMinute(const std::string& tenant, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = usage_.find(tenant);
  if (it == usage_.end()) return 0;
  Trim(it->second, SecondOf(now));
  return it->second.window_tokens;
}

int TenantUsage::Streams(const std::string& tenant) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = usage_.find(tenant);
  return it == usage_.end() ? 0 : it->second.streams;
}

}  // namespace rwkv::server
