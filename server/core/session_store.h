// Sessions: committed states with metadata, in three tiers: a state-pool slot ("device"), host
// RAM ("host") and, with a state directory, a file on disk ("disk"). Idle sessions move down:
// device -> host when the pool needs a slot, host -> disk when host bytes pass their budget, least
// recently used first; they come back on their next turn, byte-identical. Sessions idle longer
// than the TTL are deleted, their files too.
//
// A turn never writes a committed state: it checks out a copy into a fresh slot and commits that
// slot only when it finishes normally, so a failed turn leaves the session byte-identical.
//
// With a state directory (OpenDisk), committed states are written behind: a session's first
// commit not yet on disk is written `persist_interval` later (later commits in that interval ride
// along: a busy session is written at most once per interval); with an interval of 0 the caller
// waits for each commit's write (PersistNow). On start the directory is indexed, not read: a
// stored session's header is read on its first Get or List, its state on its next turn. A file
// that fails to load (truncated, corrupt, another model's) is moved to DIR/quarantine, logged and
// counted, and its session is gone. With a disk budget, writes that would pass it expire the
// oldest idle stored sessions first; a live turn's commit never fails for lack of disk.
//
// Thread safety: none; the scheduler thread owns the store, like the pool it uses. (The writer
// thread behind it touches only files; its results are taken in by Maintain.)
#ifndef RWKV_SERVER_CORE_SESSION_STORE_H_
#define RWKV_SERVER_CORE_SESSION_STORE_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/state_pool.h"
#include "server/core/sequence.h"
#include "server/core/state_codec.h"
#include "server/core/state_dir.h"

namespace rwkv::server {

enum class Tier { kDevice, kHost, kDisk };

struct Session {
  std::string id;
  Tier tier = Tier::kHost;
  int slot = -1;                   // Device tier: the pool slot holding the committed state.
  std::vector<float> host;         // Host tier: the committed state; empty = the initial state.
  std::optional<int32_t> pending;  // The last token of the last turn, not yet fed (spec: it is
                                   // part of the conversation; the next turn feeds it first).
  int64_t token_count = 0;         // Tokens the session covers, the pending one included.
  bool busy = false;               // A turn holds it.
  std::chrono::system_clock::time_point created_wall, last_used_wall;
  TimePoint last_used;

  // The disk tier's bookkeeping (with a state directory).
  uint64_t incarnation = 0;              // Tells a session from an earlier one of the same id.
  uint64_t version = 0;                  // Committed states so far; 0 = the initial state only.
  uint64_t queued = 0;                   // The latest version handed to the writer.
  uint64_t durable = 0;                  // The version its file holds (0 = none).
  std::optional<TimePoint> dirty_since;  // Its first commit since the last write was queued.
  int64_t file_bytes = 0;                // Its file's size (as last queued); 0 = no file.
  bool spilling = false;                 // Host tier, being written to move to the disk tier.
  bool header_loaded = true;             // False when indexed at start and not read yet.
  bool doomed = false;                   // Its file failed to load during a turn: erased after it.
};

struct SessionLimits {
  int max_sessions = 1024;
  std::chrono::seconds idle_ttl{3600};  // 0 = never expire.
  // With a state directory:
  int64_t host_bytes = 0;                              // Host-tier bytes before spilling; 0 = no bound.
  std::chrono::milliseconds persist_interval{5000};  // 0 = PersistNow at every commit.
  int64_t disk_bytes = 0;                              // Session files' bytes; 0 = no bound.
};

// How the store reports disk activity (metrics live at the edge). Called on the owner's thread.
class SessionObserver {
 public:
  virtual ~SessionObserver() = default;
  virtual void OnDiskWrite(double seconds, bool ok) {}
  virtual void OnDiskRead() {}
  virtual void OnQuarantine() {}
  virtual void OnDiskExpire() {}  // A session expired to keep the disk within its budget.
};

class SessionStore {
 public:
  // REQUIRES: `pool` and `observer` (may be null) outlive the store.
  SessionStore(StatePool* pool, SessionLimits limits, SessionObserver* observer = nullptr)
      : pool_(pool), limits_(limits), observer_(observer) {}
  ~SessionStore();  // Persist() and the writer's wait are the owner's to call first (Shutdown).

  // Opens the disk tier on `dir` and indexes the sessions stored there (a directory listing; no
  // file is read). `wake` is called from the writer thread when results wait for Maintain.
  // INVALID_ARGUMENT/INTERNAL naming the path when the directory cannot be used.
  absl::Status OpenDisk(const std::string& dir, StateCodec codec, std::function<void()> wake, TimePoint now);
  bool has_disk() const { return dir_ != nullptr; }
  // True when commits wait for their write (persist interval 0).
  bool persists_each_commit() const { return has_disk() && limits_.persist_interval.count() == 0; }

  // INVALID_ARGUMENT for a malformed id, ALREADY_EXISTS, RESOURCE_EXHAUSTED at max_sessions.
  // An empty id gets a random one. The new session holds the initial state on the host tier.
  absl::StatusOr<Session*> Create(std::string id, TimePoint now);
  // The session's start state (a new session, before its first commit).
  void SetStart(Session& s, const ExportedState& start);
  // nullptr when unknown. Does not read a stored header.
  Session* Find(std::string_view id);
  // NOT_FOUND naming the id; DATA_LOSS when its stored header fails to load (then it is gone).
  absl::StatusOr<Session*> Get(std::string_view id);
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
  // Acquires a slot holding a copy of the session's committed state. DATA_LOSS when a disk-tier
  // state fails to load (the file is quarantined; the session is erased when the turn ends).
  absl::StatusOr<int> CheckOut(Session& s);
  // Makes `slot` the session's committed state (releasing the old one) and frees the session.
  void Commit(Session& s, int slot, std::optional<int32_t> pending, int64_t added_tokens, TimePoint now);
  // Frees the session without changing its state (failed, cancelled or expired turn). A doomed
  // session is erased; `s` is then dangling.
  void Abandon(Session& s, TimePoint now);

  // Hands the session's committed state to the writer now; `done` runs (on this thread, from
  // Maintain) once it is on disk or the write failed. Without a disk tier `done` runs at once.
  void PersistNow(Session& s, TimePoint now, std::function<void()> done);
  // Disk-tier upkeep, once per scheduler iteration: takes in the writer's results (running
  // PersistNow callbacks), queues writes whose interval passed, spills host bytes over budget.
  void Maintain(TimePoint now);
  // Writes every committed state not yet on disk and waits for all writes (drain, shutdown).
  void Shutdown(TimePoint now);

  // The committed state as host floats (a disk-tier state is read; DATA_LOSS as CheckOut).
  absl::Status ReadState(Session& s, std::vector<float>* out);
  // Deletes idle sessions whose TTL passed; returns how many.
  int ExpireIdle(TimePoint now);

  // Slots admission may take: free ones plus those of device-tier sessions.
  int AvailableSlots() const { return pool_->capacity() - pool_->used() + device_sessions_; }
  int count() const { return static_cast<int>(sessions_.size()); }
  int device_sessions() const { return device_sessions_; }
  int disk_sessions() const { return disk_sessions_; }
  int64_t host_bytes() const { return host_bytes_; }
  int64_t disk_bytes() const { return disk_bytes_; }
  const SessionLimits& limits() const { return limits_; }
  // In id order; reads the headers of stored sessions not read yet (dropping those that fail).
  std::vector<const Session*> List();

  static constexpr size_t kMaxIdBytes = 128;
  // A client's session id: 1..kMaxIdBytes bytes of [A-Za-z0-9._-]. INVALID_ARGUMENT naming `field`.
  static absl::Status ValidateId(std::string_view id, const char* field);
  // A fresh random session id (any thread).
  static std::string NewId();
  // A store id: a session id, or "TENANT:ID" (server/auth.h) for a tenant's session.
  static absl::Status ValidateKey(std::string_view key);
  // Sessions whose store id has the owner (tenant) part `owner` ("" = bare ids).
  int OwnerCount(std::string_view owner) const;
  // The session limit of an owner (0 = none), asked on every new session. Set before the store
  // is used.
  void SetOwnerLimit(std::function<int(std::string_view owner)> fn) { owner_limit_ = std::move(fn); }
  // What a state file of the session records besides the state.
  static StateHeader Header(const Session& s);

 private:
  using Map = std::map<std::string, Session, std::less<>>;
  struct Job {
    std::string id;
    uint64_t incarnation = 0;
    uint64_t version = 0;
    std::function<void()> done;
  };
  struct DirtyEntry {
    TimePoint since;
    std::string id;
    uint64_t incarnation;
  };

  absl::StatusOr<Session*> Add(std::string id, TimePoint now);
  void CountOwner(std::string_view id, int delta);
  void SetTier(Session& s, Tier t);
  void SetHost(Session& s, std::vector<float> host);
  void DropSlot(Session& s);
  void MarkDirty(Session& s, TimePoint now);
  // Encodes the committed state and queues its write; `done` as PersistNow.
  void Persist(Session& s, std::span<const float> state, std::function<void()> done);
  // Expires the oldest idle stored sessions (never `keep`) until `bytes` more fit the budget.
  void MakeDiskRoom(const Session& keep, int64_t bytes);
  void SpillHost(TimePoint now);
  void StopSpilling(Session& s);
  void TakeWriterResults(TimePoint now);
  absl::Status EnsureHeader(Session& s);
  // Reads a disk-tier state; on failure quarantines the file and drops the session.
  absl::StatusOr<ExportedState> Load(Session& s);
  // Quarantines the session's file and erases it (or dooms it while busy). Returns DATA_LOSS.
  absl::Status Discard(Session& s, const absl::Status& why);
  // Removes the session and its file (queued behind any write of it).
  void Erase(Map::iterator it);
  Map::iterator Oldest(const std::function<bool(const Session&)>& eligible);

  StatePool* pool_;
  SessionLimits limits_;
  SessionObserver* observer_;
  Map sessions_;
  int device_sessions_ = 0;
  int disk_sessions_ = 0;
  int64_t host_bytes_ = 0;      // Host-tier states.
  int64_t spilling_bytes_ = 0;  // The part of host_bytes_ being written out.
  int64_t disk_bytes_ = 0;      // Session files, as queued.
  uint64_t id_counter_ = 0;
  std::map<std::string, int, std::less<>> owner_counts_;
  std::function<int(std::string_view)> owner_limit_;
  uint64_t incarnations_ = 0;

  // Disk tier.
  StateCodec codec_;
  std::unique_ptr<StateDir> dir_;
  std::unique_ptr<StateWriter> writer_;
  std::unordered_map<uint64_t, Job> jobs_;  // By writer tag.
  uint64_t next_tag_ = 1;
  std::deque<DirtyEntry> dirty_;  // In `since` order; stale entries are skipped.
  bool warned_disk_full_ = false;
  TimePoint spill_retry_after_{};  // After a failed write.
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_CORE_SESSION_STORE_H_
