// The disk tier's files: one state file per session (server/state_codec.h format) under
//
//   DIR/sessions/ID.state   the committed state of session ID
//   DIR/tmp/                files being written (removed on open: a crash leaves them half-written)
//   DIR/quarantine/         files that failed to load, moved aside, never read again
//
// Writes are atomic: temp file, fsync, rename over the old file, fsync of the directory. A reader
// sees the old file or the new one, never part of either. StateWriter runs the writes on a thread
// of its own, in the order given, a batch at a time with one directory fsync per batch.
//
// Thread safety: StateDir's methods may be called from any thread (they share no state but the
// path). StateWriter: Enqueue and TakeDone from any thread.
#ifndef RWKV_SERVER_CORE_STATE_DIR_H_
#define RWKV_SERVER_CORE_STATE_DIR_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rwkv::server {

class StateDir {
 public:
  struct Entry {
    std::string id;
    int64_t bytes = 0;
    std::chrono::system_clock::time_point mtime;  // Set to the session's last use when written.
  };
  struct Write {
    std::string id;
    std::shared_ptr<const std::string> bytes;  // Null: remove the session's file.
    std::chrono::system_clock::time_point mtime;
  };

  // Creates DIR and its subfolders as needed and empties DIR/tmp. INTERNAL naming the path and the
  // OS error when the directory cannot be used.
  static absl::StatusOr<std::unique_ptr<StateDir>> Open(std::string root);

  // The session files, from the directory listing and one stat each (no file is opened). Names
  // that are not ID.state are left alone.
  absl::StatusOr<std::vector<Entry>> List() const;
  // At most `max_bytes` from the start of ID's file (the whole file when it is shorter). NOT_FOUND
  // when there is none.
  absl::StatusOr<std::string> Read(std::string_view id, size_t max_bytes) const;
  // Applies the writes and removals in order, then syncs the directory once. One status per entry.
  std::vector<absl::Status> Apply(const std::vector<Write>& batch) const;
  // Moves ID's file to DIR/quarantine/ID.<unix ms>.state. Returns the new path.
  absl::StatusOr<std::string> Quarantine(std::string_view id) const;

  const std::string& root() const { return root_; }
  std::string SessionPath(std::string_view id) const;

 private:
  explicit StateDir(std::string root) : root_(std::move(root)) {}
  absl::Status WriteOne(const Write& w, uint64_t serial) const;
  absl::Status SyncDir(const std::string& dir) const;

  std::string root_;
};

// Runs StateDir::Apply on its own thread. Each job's result comes back through TakeDone, in
// order; `on_done` (called on the writer thread, after results are queued) wakes whoever polls.
class StateWriter {
 public:
  struct Done {
    uint64_t tag = 0;  // The caller's, from Enqueue.
    std::string id;
    bool remove = false;
    int64_t bytes = 0;
    double seconds = 0;  // The whole batch the job was in: write, fsync, rename, directory fsync.
    absl::Status status;
  };

  // REQUIRES: `dir` outlives the writer.
  StateWriter(const StateDir* dir, std::function<void()> on_done);
  ~StateWriter();  // Finishes every queued job first.

  void Enqueue(StateDir::Write job, uint64_t tag);
  std::vector<Done> TakeDone();
  // Blocks until every job enqueued so far has finished (and its on_done call returned).
  void WaitIdle();

 private:
  void Run();

  const StateDir* dir_;
  std::function<void()> on_done_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<StateDir::Write, uint64_t>> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<Done> done_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_CORE_STATE_DIR_H_
