#include "server/session_store.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/absl_compat.h"
#include "engine/status.h"

namespace rwkv::server {
namespace {

constexpr size_t kMaxIdBytes = 128;

std::string RandomId() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return absl::StrFormat("s-%016x%016x", rng(), rng());
}

}  // namespace

absl::Status SessionStore::ValidateId(std::string_view id, const char* field) {
  if (id.empty() || id.size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s must be 1..%d bytes (got %d)", field, kMaxIdBytes, id.size()));
  }
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.';
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(field, " may contain only [A-Za-z0-9._-]"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Session*> SessionStore::Add(std::string id, TimePoint now) {
  if (id.empty()) {
    do id = RandomId(); while (sessions_.count(id));
  } else {
    RWKV_RETURN_IF_ERROR(ValidateId(id, "session_id"));
    if (sessions_.count(id)) return absl::AlreadyExistsError(absl::StrCat("session ", id, " already exists"));
  }
  if (count() >= limits_.max_sessions) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("session limit reached (max_sessions %d); delete or let idle sessions expire", limits_.max_sessions));
  }
  Session& s = sessions_[id];
  s.id = std::move(id);
  s.created_wall = s.last_used_wall = std::chrono::system_clock::now();
  s.last_used = now;
  return &s;
}

absl::StatusOr<Session*> SessionStore::Create(std::string id, TimePoint now) { return Add(std::move(id), now); }

Session* SessionStore::Find(std::string_view id) {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : &it->second;
}

absl::StatusOr<Session*> SessionStore::Get(std::string_view id) {
  Session* s = Find(id);
  if (s == nullptr) return absl::NotFoundError(absl::StrCat("session ", AV(id), " not found"));
  return s;
}

void SessionStore::DropSlot(Session& s) {
  if (s.slot >= 0) {
    pool_->Release(s.slot).IgnoreError();  // The store acquired it; it is in use.
    s.slot = -1;
    --device_sessions_;
  }
}

absl::Status SessionStore::Delete(std::string_view id) {
  RWKV_ASSIGN_OR_RETURN(Session * s, Get(id));
  if (s->busy) {
    return absl::FailedPreconditionError(absl::StrCat("session ", AV(id), " is running a turn; delete it after the turn ends"));
  }
  DropSlot(*s);
  sessions_.erase(sessions_.find(id));
  return absl::OkStatus();
}

absl::StatusOr<Session*> SessionStore::Fork(std::string_view src_id, std::string new_id, TimePoint now) {
  RWKV_ASSIGN_OR_RETURN(Session * src, Get(src_id));
  std::vector<float> state;
  RWKV_RETURN_IF_ERROR(ReadState(*src, &state));
  const std::optional<int32_t> pending = src->pending;
  const int64_t tokens = src->token_count;
  src->last_used = now;
  src->last_used_wall = std::chrono::system_clock::now();
  return Install(std::move(new_id), std::move(state), pending, tokens, now);
}

absl::StatusOr<Session*> SessionStore::Install(std::string id, std::vector<float> state,
                                               std::optional<int32_t> pending, int64_t token_count, TimePoint now) {
  RWKV_ASSIGN_OR_RETURN(Session * s, Add(std::move(id), now));
  s->host = std::move(state);
  s->pending = pending;
  s->token_count = token_count;
  return s;
}

absl::StatusOr<int> SessionStore::AcquireSlot() {
  if (pool_->used() < pool_->capacity()) return pool_->Acquire();
  Session* lru = nullptr;
  for (auto& [id, s] : sessions_) {
    if (s.slot >= 0 && (lru == nullptr || s.last_used < lru->last_used)) lru = &s;
  }
  if (lru == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("state pool full: all %d slots run sequences", pool_->capacity()));
  }
  lru->host.resize(pool_->slot_floats());
  RWKV_RETURN_IF_ERROR(pool_->Read(lru->slot, lru->host));
  DropSlot(*lru);
  return pool_->Acquire();
}

absl::StatusOr<int> SessionStore::CheckOut(Session& s) {
  RWKV_ASSIGN_OR_RETURN(int slot, AcquireSlot());  // May move `s` itself to the host first.
  absl::Status st;
  if (s.slot >= 0) {
    st = pool_->Copy(s.slot, slot);
  } else if (!s.host.empty()) {
    st = pool_->Write(slot, s.host);
  }  // else: the initial state, which Acquire provides.
  if (!st.ok()) {
    pool_->Release(slot).IgnoreError();
    return st;
  }
  return slot;
}

void SessionStore::Commit(Session& s, int slot, std::optional<int32_t> pending, int64_t added_tokens, TimePoint now) {
  DropSlot(s);
  s.host.clear();
  s.host.shrink_to_fit();
  s.slot = slot;
  ++device_sessions_;
  s.pending = pending;
  s.token_count += added_tokens;
  Abandon(s, now);
}

void SessionStore::Abandon(Session& s, TimePoint now) {
  s.busy = false;
  s.last_used = now;
  s.last_used_wall = std::chrono::system_clock::now();
}

absl::Status SessionStore::ReadState(const Session& s, std::vector<float>* out) const {
  if (s.slot >= 0) {
    out->resize(pool_->slot_floats());
    return pool_->Read(s.slot, *out);
  }
  if (s.host.empty()) {
    out->assign(pool_->slot_floats(), 0.0f);  // The initial state is all zeros (spec section 7).
  } else {
    *out = s.host;
  }
  return absl::OkStatus();
}

int SessionStore::ExpireIdle(TimePoint now) {
  if (limits_.idle_ttl.count() == 0) return 0;
  int n = 0;
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    Session& s = it->second;
    if (!s.busy && now - s.last_used >= limits_.idle_ttl) {
      DropSlot(s);
      it = sessions_.erase(it);
      ++n;
    } else {
      ++it;
    }
  }
  return n;
}

std::vector<const Session*> SessionStore::List() const {
  std::vector<const Session*> out;
  out.reserve(sessions_.size());
  for (const auto& [id, s] : sessions_) out.push_back(&s);
  return out;
}

}  // namespace rwkv::server
