// Sessions: committed states with metadata, kept in state-pool slots (tier "device") or in host
// RAM (tier "host"). Idle sessions move to the host, least recently used first, when the pool
// needs a slot; they come back on their next turn. Sessions idle longer than the TTL are deleted.
//
// A turn never writes a committed state: it checks out a copy into a fresh slot and commits that
// slot only when it finishes normally, so a failed turn leaves the session byte-identical.
//
// Thread safety: none; the scheduler thread owns the store, like the pool it uses.
#ifndef RWKV_SERVER_SESSION_STORE_H_
#define RWKV_SERVER_SESSION_STORE_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/state_pool.h"
#include "server/sequence.h"

namespace rwkv::server {

enum class Tier { kDevice, kHost };

struct Session {
  std::string id;
  int slot = -1;                  // Device tier: the pool slot holding the committed state.
  std::vector<float> host;        // Host tier: the committed state; empty = the initial state.
  std::optional<int32_t> pending; // The last token of the last turn, not yet fed (spec: it is
                                  // part of the conversation; the next turn feeds it first).
  int64_t token_count = 0;        // Tokens the session covers, the pending one included.
  bool busy = false;              // A turn holds it.
  std::chrono::system_clock::time_point created_wall, last_used_wall;
  TimePoint last_used;
  Tier tier() const { return slot >= 0 ? Tier::kDevice : Tier::kHost; }
};

struct SessionLimits {
  int max_sessions = 1024;
  std::chrono::seconds idle_ttl{3600};  // 0 = never expire.
};

class SessionStore {
 public:
  // REQUIRES: `pool` outlives the store.
  SessionStore(StatePool* pool, SessionLimits limits) : pool_(pool), limits_(limits) {}

  // INVALID_ARGUMENT for a malformed id, ALREADY_EXISTS, RESOURCE_EXHAUSTED at max_sessions.
  // An empty id gets a random one. The new session holds the initial state on the host tier.
  absl::StatusOr<Session*> Create(std::string id, TimePoint now);
  // nullptr when unknown.
  Session* Find(std::string_view id);
  absl::StatusOr<Session*> Get(std::string_view id);  // NOT_FOUND naming the id.
  // FAILED_PRECONDITION when busy.
  absl::Status Delete(std::string_view id);
  // A new session with a copy of `src`'s committed state (allowed while `src` runs a turn).
  absl::StatusOr<Session*> Fork(std::string_view src, std::string new_id, TimePoint now);
  // Sets a session's committed state from host floats (import). REQUIRES: size == slot_floats.
  absl::StatusOr<Session*> Install(std::string id, std::vector<float> state, std::optional<int32_t> pending,
                                   int64_t token_count, TimePoint now);

  // A slot for a new sequence, evicting the least recently used device-tier session to the host
  // when the pool is full. RESOURCE_EXHAUSTED when nothing can be evicted.
  absl::StatusOr<int> AcquireSlot();
  // Acquires a slot holding a copy of the session's committed state.
  absl::StatusOr<int> CheckOut(Session& s);
  // Makes `slot` the session's committed state (releasing the old one) and frees the session.
  void Commit(Session& s, int slot, std::optional<int32_t> pending, int64_t added_tokens, TimePoint now);
  // Frees the session without changing its state (failed, cancelled or expired turn).
  void Abandon(Session& s, TimePoint now);

  // The committed state as host floats.
  absl::Status ReadState(const Session& s, std::vector<float>* out) const;
  // Deletes idle sessions whose TTL passed; returns how many.
  int ExpireIdle(TimePoint now);

  // Slots admission may take: free ones plus those of device-tier sessions.
  int AvailableSlots() const { return pool_->capacity() - pool_->used() + device_sessions_; }
  int count() const { return static_cast<int>(sessions_.size()); }
  int device_sessions() const { return device_sessions_; }
  const SessionLimits& limits() const { return limits_; }
  // In id order.
  std::vector<const Session*> List() const;

  static absl::Status ValidateId(std::string_view id, const char* field);

 private:
  absl::StatusOr<Session*> Add(std::string id, TimePoint now);
  void DropSlot(Session& s);

  StatePool* pool_;
  SessionLimits limits_;
  std::map<std::string, Session, std::less<>> sessions_;
  int device_sessions_ = 0;
  uint64_t id_counter_ = 0;
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_SESSION_STORE_H_
