#include "server/core/state_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/absl_compat.h"

namespace rwkv::server {
namespace {

constexpr std::string_view kSuffix = ".state";

absl::Status OsError(std::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(AV(what), " ", path, ": ", std::strerror(errno)));
}

absl::Status MakeDir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) == 0 || errno == EEXIST) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) return OsError("cannot stat", path);
    if (!S_ISDIR(st.st_mode)) return absl::InvalidArgumentError(absl::StrCat(path, " exists and is not a directory"));
    return absl::OkStatus();
  }
  return OsError("cannot create directory", path);
}

int64_t UnixMs(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// Closes a descriptor on every path out.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<StateDir>> StateDir::Open(std::string root) {
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  if (root.empty()) return absl::InvalidArgumentError("--state-dir is empty");
  for (const std::string& d : {root, root + "/sessions", root + "/tmp", root + "/quarantine"}) {
    if (absl::Status st = MakeDir(d); !st.ok()) return st;
  }
  // What a crash left half-written is never loaded: it is removed.
  const std::string tmp = root + "/tmp";
  if (DIR* dir = opendir(tmp.c_str())) {
    while (dirent* e = readdir(dir)) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) unlinkat(dirfd(dir), e->d_name, 0);
    }
    closedir(dir);
  }
  // A probe write: a read-only or full volume fails here, at start, not at the first commit.
  const std::string probe = tmp + "/probe";
  Fd f{open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644)};
  if (f.fd < 0 || write(f.fd, "ok", 2) != 2 || fsync(f.fd) != 0) return OsError("cannot write in", tmp);
  unlink(probe.c_str());
  return std::unique_ptr<StateDir>(new StateDir(std::move(root)));
}

std::string StateDir::SessionPath(std::string_view id) const {
  return absl::StrCat(root_, "/sessions/", AV(id), AV(kSuffix));
}

absl::StatusOr<std::vector<StateDir::Entry>> StateDir::List() const {
  const std::string path = root_ + "/sessions";
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return OsError("cannot list", path);
  std::vector<Entry> out;
  while (dirent* e = readdir(dir)) {
    std::string_view name(e->d_name);
    if (name.size() <= kSuffix.size() || !absl::EndsWith(AV(name), AV(kSuffix))) continue;
    struct stat st;
    if (fstatat(dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
    Entry entry;
    entry.id = std::string(name.substr(0, name.size() - kSuffix.size()));
    entry.bytes = st.st_size;
    entry.mtime = std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
        std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
    out.push_back(std::move(entry));
  }
  closedir(dir);
  return out;
}

absl::StatusOr<std::string> StateDir::Read(std::string_view id, size_t max_bytes) const {
  const std::string path = SessionPath(id);
  Fd f{open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("no stored state at ", path));
    return OsError("cannot open", path);
  }
  struct stat st;
  if (fstat(f.fd, &st) != 0) return OsError("cannot stat", path);
  std::string out(std::min<size_t>(max_bytes, static_cast<size_t>(st.st_size)), '\0');
  size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = read(f.fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return OsError("cannot read", path);
    if (n == 0) break;  // Shorter than it was a moment ago; the decoder reports the truncation.
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

absl::Status StateDir::WriteOne(const Write& w, uint64_t serial) const {
  const std::string final_path = SessionPath(w.id);
  if (w.bytes == nullptr) {
    if (unlink(final_path.c_str()) != 0 && errno != ENOENT) return OsError("cannot remove", final_path);
    return absl::OkStatus();
  }
  const std::string tmp = absl::StrFormat("%s/tmp/%s.%d.tmp", root_, w.id, serial);
  Fd f{open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
  if (f.fd < 0) return OsError("cannot create", tmp);
  // The error (errno read first), and no temp file left behind.
  const auto fail = [&](std::string_view what, const std::string& path) {
    absl::Status st = OsError(what, path);
    unlink(tmp.c_str());
    return st;
  };
  const std::string& data = *w.bytes;
  for (size_t off = 0; off < data.size();) {
    const ssize_t n = write(f.fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("cannot write", tmp);
    off += static_cast<size_t>(n);
  }
  // The file's mtime is the session's last use: the index on start reads it instead of the file.
  const int64_t ms = UnixMs(w.mtime);
  const timespec times[2] = {{ms / 1000, (ms % 1000) * 1000000}, {ms / 1000, (ms % 1000) * 1000000}};
  futimens(f.fd, times);
  if (fsync(f.fd) != 0) return fail("cannot fsync", tmp);
  if (rename(tmp.c_str(), final_path.c_str()) != 0) return fail("cannot rename into", final_path);
  return absl::OkStatus();
}

absl::Status StateDir::SyncDir(const std::string& dir) const {
  Fd f{open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (f.fd < 0 || fsync(f.fd) != 0) return OsError("cannot fsync directory", dir);
  return absl::OkStatus();
}

std::vector<absl::Status> StateDir::Apply(const std::vector<Write>& batch) const {
  static std::atomic<uint64_t> serial{0};
  std::vector<absl::Status> out;
  out.reserve(batch.size());
  bool any_ok = false;
  for (const Write& w : batch) {
    out.push_back(WriteOne(w, serial++));
    any_ok |= out.back().ok();
  }
  // The renames and removals are durable once the directory is.
  if (any_ok) {
    if (absl::Status st = SyncDir(root_ + "/sessions"); !st.ok()) {
      for (absl::Status& s : out) {
        if (s.ok()) s = st;
      }
    }
  }
  return out;
}

absl::StatusOr<std::string> StateDir::Quarantine(std::string_view id) const {
  const std::string from = SessionPath(id);
  const std::string to = absl::StrFormat("%s/quarantine/%s.%d%s", root_, AV(id),
                                         UnixMs(std::chrono::system_clock::now()), AV(kSuffix));
  if (rename(from.c_str(), to.c_str()) != 0) return OsError("cannot move to quarantine", from);
  SyncDir(root_ + "/sessions").IgnoreError();
  return to;
}

StateWriter::StateWriter(const StateDir* dir, std::function<void()> on_done)
    : dir_(dir), on_done_(std::move(on_done)), thread_([this] { Run(); }) {}

StateWriter::~StateWriter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void StateWriter::Enqueue(StateDir::Write job, uint64_t tag) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.emplace_back(std::move(job), tag);
  }
  cv_.notify_all();
}

std::vector<StateWriter::Done> StateWriter::TakeDone() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Done> out;
  out.swap(done_);
  return out;
}

void StateWriter::WaitIdle() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return queue_.empty() && in_flight_ == 0; });
}

void StateWriter::Run() {
  while (true) {
    std::vector<StateDir::Write> batch;
    std::vector<uint64_t> tags;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // Stopping, and everything is written.
      for (auto& [job, tag] : queue_) {
        batch.push_back(std::move(job));
        tags.push_back(tag);
      }
      queue_.clear();
      in_flight_ = static_cast<int>(batch.size());
    }
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<absl::Status> results = dir_->Apply(batch);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t i = 0; i < batch.size(); ++i) {
        Done d;
        d.tag = tags[i];
        d.id = std::move(batch[i].id);
        d.remove = batch[i].bytes == nullptr;
        d.bytes = d.remove ? 0 : static_cast<int64_t>(batch[i].bytes->size());
        d.seconds = seconds;
        d.status = results[i];
        done_.push_back(std::move(d));
      }
    }
    if (on_done_) on_done_();
    {
      // Idle only after on_done_ returned: WaitIdle's caller may then destroy what it calls.
      std::lock_guard<std::mutex> lock(mu_);
      in_flight_ = 0;
    }
    cv_.notify_all();
  }
}

}  // namespace rwkv::server
