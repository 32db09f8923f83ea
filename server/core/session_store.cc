#include "server/core/session_store.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/absl_compat.h"
#include "engine/status.h"
#include "server/core/auth.h"
#include "server/core/log.h"

namespace rwkv::server {
namespace {

constexpr size_t kHeaderProbeBytes = 4096;  // A state header is a few hundred bytes.


// A stored file must hold the session its name says (not a copy of another's).
absl::Status CheckOwner(const StateHeader& h, std::string_view id) {
  if (h.session_id == id) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("file holds session ", LogValue(h.session_id.substr(0, 128))));
}

int64_t UnixMs(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::chrono::system_clock::time_point FromUnixMs(int64_t ms) {
  return std::chrono::system_clock::time_point(std::chrono::milliseconds(ms));
}

}  // namespace

SessionStore::~SessionStore() {
  writer_.reset();  // Finishes queued writes; their results are dropped with the store.
}

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

std::string SessionStore::NewId() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return absl::StrFormat("s-%016x%016x", rng(), rng());
}

absl::Status SessionStore::ValidateKey(std::string_view key) {
  const size_t colon = key.find(':');
  if (colon == std::string_view::npos) return ValidateId(key, "session_id");
  RWKV_RETURN_IF_ERROR(ValidateTenant(key.substr(0, colon), "tenant"));
  return ValidateId(key.substr(colon + 1), "session_id");
}

void SessionStore::CountOwner(std::string_view id, int delta) {
  const std::string_view owner = SessionOwner(id);
  auto it = owner_counts_.find(owner);
  if (it == owner_counts_.end()) it = owner_counts_.emplace(std::string(owner), 0).first;
  it->second += delta;
  if (it->second == 0) owner_counts_.erase(it);
}

int SessionStore::OwnerCount(std::string_view owner) const {
  auto it = owner_counts_.find(owner);
  return it == owner_counts_.end() ? 0 : it->second;
}

absl::Status SessionStore::OpenDisk(const std::string& dir, StateCodec codec, std::function<void()> wake,
                                    TimePoint now) {
  const auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<StateDir>> d = StateDir::Open(dir);
  if (!d.ok()) return d.status();
  absl::StatusOr<std::vector<StateDir::Entry>> entries = (*d)->List();
  if (!entries.ok()) return entries.status();
  dir_ = std::move(*d);
  codec_ = std::move(codec);
  writer_ = std::make_unique<StateWriter>(dir_.get(), std::move(wake));
  const auto wall = std::chrono::system_clock::now();
  for (StateDir::Entry& e : *entries) {
    if (!ValidateKey(e.id).ok() || sessions_.count(e.id)) {
      absl::StatusOr<std::string> to = dir_->Quarantine(e.id);
      Log("warn", "stored session quarantined", absl::StrCat("reason=", LogValue("file name is not a session id"),
                                                            " path=", LogValue(to.ok() ? *to : dir_->SessionPath(e.id))));
      if (observer_) observer_->OnQuarantine();
      continue;
    }
    CountOwner(e.id, +1);
    Session& s = sessions_[e.id];
    s.id = std::move(e.id);
    s.incarnation = ++incarnations_;
    s.header_loaded = false;
    s.version = s.queued = s.durable = 1;
    s.file_bytes = e.bytes;
    s.created_wall = s.last_used_wall = e.mtime;  // The header has the creation time.
    s.last_used = now - std::chrono::duration_cast<Clock::duration>(wall - e.mtime);
    SetTier(s, Tier::kDisk);
    disk_bytes_ += e.bytes;
  }
  Log("info", "state dir indexed",
      absl::StrFormat("dir=%s sessions=%d bytes=%d seconds=%.3f persist_interval_s=%g disk_bytes_max=%d "
                      "host_bytes_max=%d",
                      LogValue(dir_->root()), disk_sessions_, disk_bytes_,
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                      limits_.persist_interval.count() / 1000.0, limits_.disk_bytes, limits_.host_bytes));
  if (count() > limits_.max_sessions) {
    Log("warn", "more stored sessions than --max-sessions; new sessions are refused until some go",
        absl::StrFormat("sessions=%d max_sessions=%d", count(), limits_.max_sessions));
  }
  return absl::OkStatus();
}

void SessionStore::SetTier(Session& s, Tier t) {
  if (s.tier == Tier::kDisk) --disk_sessions_;
  if (t == Tier::kDisk) ++disk_sessions_;
  s.tier = t;
}

void SessionStore::StopSpilling(Session& s) {
  if (s.spilling) {
    spilling_bytes_ -= static_cast<int64_t>(s.host.size()) * 4;
    s.spilling = false;
  }
}

void SessionStore::SetHost(Session& s, std::vector<float> host) {
  StopSpilling(s);
  host_bytes_ += (static_cast<int64_t>(host.size()) - static_cast<int64_t>(s.host.size())) * 4;
  s.host = std::move(host);
  s.host.shrink_to_fit();
}

absl::StatusOr<Session*> SessionStore::Add(std::string id, TimePoint now) {
  if (id.empty()) {
    do id = NewId(); while (sessions_.count(id));
  } else {
    RWKV_RETURN_IF_ERROR(ValidateKey(id));
    if (sessions_.count(id)) return absl::AlreadyExistsError(absl::StrCat("session ", id, " already exists"));
  }
  if (count() >= limits_.max_sessions) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("session limit reached (max_sessions %d); delete or let idle sessions expire", limits_.max_sessions));
  }
  if (owner_limit_) {
    const std::string_view owner = SessionOwner(id);
    const int limit = owner_limit_(owner);
    if (limit > 0 && OwnerCount(owner) >= limit) {
      return TenantLimitError("sessions", absl::StrFormat(
          "tenant %s has %d sessions; its limit is %d (sessions); delete or let idle sessions expire",
          AV(owner), OwnerCount(owner), limit));
    }
  }
  CountOwner(id, +1);
  Session& s = sessions_[id];
  s.id = std::move(id);
  s.incarnation = ++incarnations_;
  s.created_wall = s.last_used_wall = std::chrono::system_clock::now();
  s.last_used = now;
  return &s;
}

absl::StatusOr<Session*> SessionStore::Create(std::string id, TimePoint now) { return Add(std::move(id), now); }

void SessionStore::SetStart(Session& s, const ExportedState& start) {
  SetHost(s, start.state);
  s.pending = start.pending;
  s.token_count = start.token_count;
}

Session* SessionStore::Find(std::string_view id) {
  auto it = sessions_.find(id);
  return it == sessions_.end() || it->second.doomed ? nullptr : &it->second;
}

absl::StatusOr<Session*> SessionStore::Get(std::string_view id) {
  Session* s = Find(id);
  if (s == nullptr) return absl::NotFoundError(absl::StrCat("session ", AV(id), " not found"));
  RWKV_RETURN_IF_ERROR(EnsureHeader(*s));
  return s;
}

void SessionStore::DropSlot(Session& s) {
  if (s.slot >= 0) {
    pool_->Release(s.slot).IgnoreError();  // The store acquired it; it is in use.
    s.slot = -1;
    --device_sessions_;
  }
}

void SessionStore::Erase(Map::iterator it) {
  Session& s = it->second;
  DropSlot(s);
  SetHost(s, {});
  SetTier(s, Tier::kHost);  // Only to keep the tier counts: the session goes.
  if (dir_ != nullptr && (s.file_bytes > 0 || s.queued > 0)) {
    disk_bytes_ -= s.file_bytes;
    writer_->Enqueue({s.id, nullptr, {}}, 0);  // After any write of it: the writer keeps order.
  }
  CountOwner(s.id, -1);
  sessions_.erase(it);
}

absl::Status SessionStore::Delete(std::string_view id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second.doomed) {
    return absl::NotFoundError(absl::StrCat("session ", AV(id), " not found"));
  }
  if (it->second.busy) {
    return absl::FailedPreconditionError(absl::StrCat("session ", AV(id), " is running a turn; delete it after the turn ends"));
  }
  Erase(it);
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
  SetHost(*s, std::move(state));
  s->pending = pending;
  s->token_count = token_count;
  MarkDirty(*s, now);
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
  std::vector<float> host(pool_->slot_floats());
  RWKV_RETURN_IF_ERROR(pool_->Read(lru->slot, host));
  SetHost(*lru, std::move(host));
  DropSlot(*lru);
  SetTier(*lru, Tier::kHost);
  return pool_->Acquire();
}

absl::StatusOr<int> SessionStore::CheckOut(Session& s) {
  std::optional<ExportedState> stored;
  if (s.tier == Tier::kDisk) {
    absl::StatusOr<ExportedState> loaded = Load(s);
    if (!loaded.ok()) return loaded.status();
    stored = std::move(*loaded);
  }
  RWKV_ASSIGN_OR_RETURN(int slot, AcquireSlot());  // May move `s` itself to the host first.
  absl::Status st;
  if (stored) {
    st = pool_->Write(slot, stored->state);
  } else if (s.slot >= 0) {
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
  SetHost(s, {});
  s.slot = slot;
  ++device_sessions_;
  SetTier(s, Tier::kDevice);
  s.pending = pending;
  s.token_count += added_tokens;
  MarkDirty(s, now);
  Abandon(s, now);
}

void SessionStore::Abandon(Session& s, TimePoint now) {
  s.busy = false;
  if (s.doomed) {
    Erase(sessions_.find(s.id));
    return;
  }
  s.last_used = now;
  s.last_used_wall = std::chrono::system_clock::now();
}

absl::Status SessionStore::ReadState(Session& s, std::vector<float>* out) {
  switch (s.tier) {
    case Tier::kDevice:
      out->resize(pool_->slot_floats());
      return pool_->Read(s.slot, *out);
    case Tier::kHost:
      if (s.host.empty()) {
        out->assign(pool_->slot_floats(), 0.0f);  // The initial state is all zeros (spec section 7).
      } else {
        *out = s.host;
      }
      return absl::OkStatus();
    case Tier::kDisk: {
      absl::StatusOr<ExportedState> loaded = Load(s);
      if (!loaded.ok()) return loaded.status();
      *out = std::move(loaded->state);
      return absl::OkStatus();
    }
  }
  return absl::InternalError("unknown tier");
}

int SessionStore::ExpireIdle(TimePoint now) {
  if (limits_.idle_ttl.count() == 0) return 0;
  int n = 0;
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    auto next = std::next(it);
    Session& s = it->second;
    if (!s.busy && !s.doomed && now - s.last_used >= limits_.idle_ttl) {
      Erase(it);
      ++n;
    }
    it = next;
  }
  return n;
}

std::vector<const Session*> SessionStore::List() {
  std::vector<const Session*> out;
  out.reserve(sessions_.size());
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    Session& s = (it++)->second;  // EnsureHeader may erase `s`.
    if (!s.doomed && EnsureHeader(s).ok()) out.push_back(&s);
  }
  return out;
}

// The disk tier.

void SessionStore::MarkDirty(Session& s, TimePoint now) {
  ++s.version;
  if (dir_ == nullptr || s.dirty_since) return;
  s.dirty_since = now;
  dirty_.push_back({now, s.id, s.incarnation});
}

void SessionStore::PersistNow(Session& s, TimePoint now, std::function<void()> done) {
  std::vector<float> state;
  if (dir_ == nullptr || s.tier == Tier::kDisk || !ReadState(s, &state).ok()) {
    // Nothing to write (no disk tier, or the state is the file already); a slot that cannot be
    // read fails every later step too, which the scheduler reports.
    if (done) done();
    return;
  }
  Persist(s, state, std::move(done));
}

StateHeader SessionStore::Header(const Session& s) {
  StateHeader h;
  h.pending = s.pending;
  h.token_count = s.token_count;
  h.session_id = s.id;
  h.created_unix_ms = UnixMs(s.created_wall);
  h.last_used_unix_ms = UnixMs(s.last_used_wall);
  return h;
}

void SessionStore::Persist(Session& s, std::span<const float> state, std::function<void()> done) {
  auto bytes = std::make_shared<const std::string>(codec_.Encode(state, Header(s)));
  const int64_t size = static_cast<int64_t>(bytes->size());
  MakeDiskRoom(s, size - s.file_bytes);
  disk_bytes_ += size - s.file_bytes;
  s.file_bytes = size;
  s.queued = s.version;
  s.dirty_since.reset();
  const uint64_t tag = next_tag_++;
  jobs_[tag] = Job{s.id, s.incarnation, s.version, std::move(done)};
  writer_->Enqueue({s.id, std::move(bytes), s.last_used_wall}, tag);
}

SessionStore::Map::iterator SessionStore::Oldest(const std::function<bool(const Session&)>& eligible) {
  auto best = sessions_.end();
  for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
    if (eligible(it->second) && (best == sessions_.end() || it->second.last_used < best->second.last_used)) best = it;
  }
  return best;
}

void SessionStore::MakeDiskRoom(const Session& keep, int64_t bytes) {
  if (limits_.disk_bytes <= 0) return;
  while (disk_bytes_ + bytes > limits_.disk_bytes) {
    auto victim = Oldest([&](const Session& s) { return &s != &keep && !s.busy && !s.doomed && s.file_bytes > 0; });
    if (victim == sessions_.end()) {
      if (!warned_disk_full_) {
        Log("warn", "state disk over its budget; nothing idle to expire, writing anyway",
            absl::StrFormat("disk_bytes=%d budget=%d", disk_bytes_ + bytes, limits_.disk_bytes));
        warned_disk_full_ = true;
      }
      return;
    }
    Log("info", "session expired: state disk full",
        absl::StrFormat("session=%s disk_bytes=%d budget=%d", LogValue(victim->first), disk_bytes_ + bytes,
                        limits_.disk_bytes));
    if (observer_) observer_->OnDiskExpire();
    Erase(victim);
  }
  warned_disk_full_ = false;
}

void SessionStore::SpillHost(TimePoint now) {
  if (dir_ == nullptr || limits_.host_bytes <= 0 || now < spill_retry_after_) return;
  while (host_bytes_ - spilling_bytes_ > limits_.host_bytes) {
    auto it = Oldest([](const Session& s) { return s.tier == Tier::kHost && !s.spilling && !s.host.empty(); });
    if (it == sessions_.end()) return;
    Session& s = it->second;
    if (s.durable == s.version) {  // The file is current: nothing to write.
      SetHost(s, {});
      SetTier(s, Tier::kDisk);
      continue;
    }
    s.spilling = true;
    spilling_bytes_ += static_cast<int64_t>(s.host.size()) * 4;
    Persist(s, s.host, nullptr);  // The host copy goes once the file is durable.
  }
}

void SessionStore::TakeWriterResults(TimePoint now) {
  for (StateWriter::Done& d : writer_->TakeDone()) {
    if (d.remove) {
      if (!d.status.ok()) Log("error", "stored session not removed", absl::StrCat("error=", LogValue(d.status.ToString())));
      continue;
    }
    auto job_it = jobs_.find(d.tag);
    if (job_it == jobs_.end()) continue;
    Job job = std::move(job_it->second);
    jobs_.erase(job_it);
    if (observer_) observer_->OnDiskWrite(d.seconds, d.status.ok());
    auto it = sessions_.find(job.id);
    Session* s = it != sessions_.end() && it->second.incarnation == job.incarnation ? &it->second : nullptr;
    if (d.status.ok()) {
      if (s != nullptr) {
        s->durable = std::max(s->durable, job.version);
        if (s->spilling && s->durable == s->version) {
          SetHost(*s, {});
          SetTier(*s, Tier::kDisk);
        }
      }
    } else {
      Log("error", "session state write failed; retried after the persist interval",
          absl::StrCat("session=", LogValue(job.id), " error=", LogValue(d.status.ToString())));
      // No spilling for a while: a failing disk is not retried every iteration.
      spill_retry_after_ = now + std::max<Clock::duration>(limits_.persist_interval, std::chrono::seconds(1));
      if (s != nullptr) {
        StopSpilling(*s);  // It stays on the host tier.
        if (s->queued == job.version && s->durable < job.version) {
          s->queued = s->durable;
          if (!s->dirty_since) {
            s->dirty_since = now;
            dirty_.push_back({now, s->id, s->incarnation});
          }
        }
      }
    }
    if (job.done) job.done();
  }
}

void SessionStore::Maintain(TimePoint now) {
  if (dir_ == nullptr) return;
  TakeWriterResults(now);
  while (!dirty_.empty() && now - dirty_.front().since >= limits_.persist_interval) {
    DirtyEntry e = std::move(dirty_.front());
    dirty_.pop_front();
    auto it = sessions_.find(e.id);
    if (it == sessions_.end()) continue;
    Session& s = it->second;
    if (s.incarnation != e.incarnation || s.dirty_since != e.since || s.doomed) continue;  // Stale.
    PersistNow(s, now, nullptr);
  }
  SpillHost(now);
}

void SessionStore::Shutdown(TimePoint now) {
  if (dir_ == nullptr) return;
  TakeWriterResults(now);
  std::vector<std::string> dirty;
  for (const auto& [id, s] : sessions_) {
    if (!s.doomed && s.version > s.queued) dirty.push_back(id);
  }
  int written = 0;
  for (const std::string& id : dirty) {
    // Looked up again: making disk room for one may expire another.
    if (Session* s = Find(id)) {
      PersistNow(*s, now, nullptr);
      ++written;
    }
  }
  dirty_.clear();
  writer_->WaitIdle();
  TakeWriterResults(now);
  Log("info", "sessions persisted", absl::StrFormat("written=%d sessions=%d disk_bytes=%d", written, count(), disk_bytes_));
}

absl::Status SessionStore::EnsureHeader(Session& s) {
  if (s.header_loaded) return absl::OkStatus();
  absl::StatusOr<std::string> bytes = dir_->Read(s.id, kHeaderProbeBytes);
  if (bytes.ok()) {
    absl::StatusOr<size_t> need = codec_.HeaderBytes(*bytes);
    if (need.ok() && *need > bytes->size()) bytes = dir_->Read(s.id, *need);
  }
  absl::StatusOr<StateHeader> h = bytes.ok() ? codec_.DecodeHeader(*bytes) : absl::StatusOr<StateHeader>(bytes.status());
  if (h.ok()) {
    if (absl::Status owner = CheckOwner(*h, s.id); !owner.ok()) h = owner;
  }
  if (!h.ok()) return Discard(s, h.status());
  s.pending = h->pending;
  s.token_count = h->token_count;
  if (h->created_unix_ms > 0) s.created_wall = FromUnixMs(h->created_unix_ms);
  if (h->last_used_unix_ms > 0) s.last_used_wall = FromUnixMs(h->last_used_unix_ms);
  s.header_loaded = true;
  return absl::OkStatus();
}

absl::StatusOr<ExportedState> SessionStore::Load(Session& s) {
  absl::StatusOr<std::string> bytes = dir_->Read(s.id, codec_.MaxBytes() + 1);
  absl::StatusOr<ExportedState> state = bytes.ok() ? codec_.Decode(*bytes) : absl::StatusOr<ExportedState>(bytes.status());
  if (state.ok()) {
    if (absl::Status owner = CheckOwner(*state, s.id); !owner.ok()) state = owner;
  }
  if (!state.ok()) return Discard(s, state.status());
  if (observer_) observer_->OnDiskRead();
  s.pending = state->pending;
  s.token_count = state->token_count;
  s.header_loaded = true;
  return state;
}

absl::Status SessionStore::Discard(Session& s, const absl::Status& why) {
  absl::StatusOr<std::string> to = dir_->Quarantine(s.id);
  Log("warn", "stored session quarantined",
      absl::StrCat("session=", LogValue(s.id), " reason=", LogValue(why.ToString()),
                   " path=", LogValue(to.ok() ? *to : to.status().ToString())));
  if (observer_) observer_->OnQuarantine();
  const absl::Status out = absl::DataLossError(absl::StrCat(
      "the stored state of session ", s.id, " could not be loaded (", why.message(), "); it was moved to quarantine"));
  disk_bytes_ -= s.file_bytes;
  s.file_bytes = 0;
  s.queued = 0;
  if (s.busy) {
    s.doomed = true;
  } else {
    Erase(sessions_.find(s.id));
  }
  return out;
}

}  // namespace rwkv::server
