// The sessions' disk tier over the fake model: a real temporary directory, the real writer thread,
// an injected clock. Continuations are checked against FakeModel::Greedy over the whole history,
// so a state that came back from disk must be exact to give the same tokens.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/scheduler.h"
#include "tests/server/fake_backend.h"
#include "tests/server/test_sink.h"

namespace rwkv::server {
namespace {

namespace fs = std::filesystem;
using ::rwkv::testing::FakeBackend;
using ::rwkv::testing::FakeModel;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

class CountingObserver final : public SchedulerObserver {
 public:
  void OnDiskWrite(double, bool ok) override { (ok ? writes : write_errors)++; }
  void OnDiskRead() override { reads++; }
  void OnQuarantine() override { quarantined++; }
  void OnDiskExpire() override { expired++; }
  std::atomic<int> writes{0}, write_errors{0}, reads{0}, quarantined{0}, expired{0};
};

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class DiskTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/rwkv-disk-tier-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    // The fake's slot is two floats: a config whose state is two floats (1 layer, 1 channel).
    codec_.fingerprint = "fake-0001";
    codec_.config.vocab = FakeModel::kVocab;
    codec_.config.n_layer = 1;
    codec_.config.n_embd = 1;
    codec_.config.n_head = 0;
    codec_.config.head_size = 0;
  }
  void TearDown() override {
    sched_.reset();
    fs::remove_all(dir_);
  }

  // A scheduler (a "server process") on the state directory.
  void Start(int slots, SessionLimits limits) {
    sched_.reset();
    SchedulerOptions o;
    o.max_running = std::min(slots, 8);
    o.sessions = limits;
    auto backend = std::make_unique<FakeBackend>(slots);
    tokenizer_ = *Tokenizer::Load(std::string(RWKV_SOURCE_DIR) + "/tests/fixtures/byte-vocab.txt");
    obs_ = std::make_unique<CountingObserver>();
    sched_ = std::make_unique<Scheduler>(std::move(backend), tokenizer_.get(), o, obs_.get(), [this] { return now_; });
    ASSERT_TRUE(sched_->OpenStateDir(dir_.string(), codec_).ok());
  }

  std::shared_ptr<TestSink> Run(SequenceRequest r) {
    auto sink = std::make_shared<TestSink>();
    EXPECT_TRUE(sched_->Submit(std::move(r), sink).ok());
    for (int i = 0; i < 100000 && !sink->finished(); ++i) {
      sched_->Iterate();
      if (!sink->finished()) std::this_thread::yield();
    }
    EXPECT_TRUE(sink->finished());
    return sink;
  }
  void Create(const std::string& id) {
    SequenceRequest r;
    r.kind = SequenceRequest::Kind::kCreateSession;
    r.session_id = id;
    ASSERT_TRUE(Run(std::move(r))->final().status.ok());
  }
  // One greedy turn of `n` tokens on `id`; `history` gets the prompt and the output.
  std::vector<int32_t> Turn(const std::string& id, std::vector<int32_t> prompt, int n, std::vector<int32_t>* history) {
    SequenceRequest r;
    r.session_id = id;
    r.prompt = prompt;
    r.max_tokens = n;
    r.sampling.temperature = 0;
    r.want_token_ids = true;
    auto sink = Run(std::move(r));
    EXPECT_TRUE(sink->final().status.ok()) << sink->final().status;
    const std::vector<int32_t> expect = [&] {
      std::vector<int32_t> h = *history;
      h.insert(h.end(), prompt.begin(), prompt.end());
      return FakeModel::Greedy(h, n);
    }();
    EXPECT_THAT(sink->ids(), ElementsAreArray(expect)) << id;
    history->insert(history->end(), prompt.begin(), prompt.end());
    history->insert(history->end(), sink->ids().begin(), sink->ids().end());
    return sink->ids();
  }
  // Iterates (taking in the writer's results) until `done` or 10 s of real time.
  void IterateUntil(const std::function<bool()>& done) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done() && std::chrono::steady_clock::now() < give_up) {
      sched_->Iterate();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_TRUE(done());
  }
  fs::path File(const std::string& id) const { return dir_ / "sessions" / (id + ".state"); }
  Session* Get(const std::string& id) {
    absl::StatusOr<Session*> s = sched_->sessions().Get(id);
    return s.ok() ? *s : nullptr;
  }

  fs::path dir_;
  StateCodec codec_;
  TimePoint now_{};
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<CountingObserver> obs_;
  std::unique_ptr<Scheduler> sched_;
};

TEST_F(DiskTierTest, WritesBehindOncePerIntervalPerSession) {
  SessionLimits l;
  l.persist_interval = std::chrono::seconds(5);
  Start(4, l);
  std::vector<int32_t> h;
  Create("a");
  for (int i = 0; i < 3; ++i) {  // Three commits within the interval.
    Turn("a", {static_cast<int32_t>(40 + i)}, 3, &h);
    now_ += std::chrono::seconds(1);
  }
  for (int i = 0; i < 20; ++i) sched_->Iterate();
  EXPECT_FALSE(fs::exists(File("a"))) << "nothing is written before the interval passes";
  now_ = TimePoint{} + std::chrono::seconds(5);
  IterateUntil([&] { return obs_->writes == 1; });
  ASSERT_TRUE(fs::exists(File("a")));
  absl::StatusOr<ExportedState> st = codec_.Decode(ReadFile(File("a")));
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->token_count, static_cast<int64_t>(h.size())) << "the file holds the last of the three commits";
  EXPECT_EQ(st->session_id, "a");
  // A commit right after the write waits a whole interval for the next.
  Turn("a", {50}, 2, &h);
  now_ += std::chrono::milliseconds(4900);
  for (int i = 0; i < 20; ++i) sched_->Iterate();
  EXPECT_EQ(obs_->writes, 1);
  now_ += std::chrono::milliseconds(200);
  IterateUntil([&] { return obs_->writes == 2; });
  EXPECT_EQ(codec_.Decode(ReadFile(File("a")))->token_count, static_cast<int64_t>(h.size()));
}

TEST_F(DiskTierTest, IntervalZeroWritesBeforeTheFinal) {
  SessionLimits l;
  l.persist_interval = std::chrono::milliseconds(0);
  Start(4, l);
  Create("z");
  std::vector<int32_t> h;
  for (int i = 0; i < 3; ++i) {
    Turn("z", {static_cast<int32_t>(60 + i)}, 4, &h);
    // The Final came after the write: the file holds this very turn.
    absl::StatusOr<ExportedState> st = codec_.Decode(ReadFile(File("z")));
    ASSERT_TRUE(st.ok()) << st.status();
    EXPECT_EQ(st->token_count, static_cast<int64_t>(h.size()));
    EXPECT_EQ(st->pending, h.back());
  }
}

TEST_F(DiskTierTest, RestartIndexesWithoutReadingAndRestoresExactly) {
  SessionLimits l;
  Start(4, l);
  std::map<std::string, std::vector<int32_t>> history;
  std::map<std::string, std::vector<float>> states;
  for (const char* id : {"a", "b", "c"}) {
    Create(id);
    Turn(id, {static_cast<int32_t>(id[0])}, 5, &history[id]);
    ASSERT_TRUE(sched_->sessions().ReadState(*Get(id), &states[id]).ok());
  }
  sched_.reset();  // SIGTERM: every session is written on the way out.
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(fs::exists(File(id))) << id;
  const std::string before = ReadFile(File("b"));

  for (int restart = 0; restart < 2; ++restart) {
    Start(4, l);
    EXPECT_EQ(sched_->sessions().count(), 3);
    EXPECT_EQ(sched_->sessions().disk_sessions(), 3);
    EXPECT_EQ(obs_->reads, 0) << "indexing reads no state";
    std::vector<const Session*> listed = sched_->sessions().List();
    ASSERT_EQ(listed.size(), 3u);
    EXPECT_EQ(listed[1]->token_count, static_cast<int64_t>(history["b"].size())) << "from the header";
    EXPECT_EQ(listed[1]->tier, Tier::kDisk);
    sched_.reset();  // Nothing changed: nothing is rewritten.
    EXPECT_EQ(ReadFile(File("b")), before) << "restart " << restart;
  }
  Start(4, l);
  for (const char* id : {"a", "b", "c"}) {
    std::vector<float> s;
    ASSERT_TRUE(sched_->sessions().ReadState(*Get(id), &s).ok());
    EXPECT_EQ(s, states[id]) << id << ": byte-identical state";
    Turn(id, {33}, 6, &history[id]);  // Checked against the model over the whole history.
    EXPECT_EQ(Get(id)->tier, Tier::kDevice);
  }
  EXPECT_EQ(obs_->reads, 6);
}

TEST_F(DiskTierTest, TimesSurviveARestart) {
  SessionLimits l;
  l.idle_ttl = std::chrono::seconds(3600);
  Start(2, l);
  Create("t");
  std::vector<int32_t> h;
  Turn("t", {40}, 2, &h);
  const auto created = Get("t")->created_wall;
  sched_.reset();
  Start(2, l);
  ASSERT_NE(Get("t"), nullptr);
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::milliseconds>(Get("t")->created_wall - created).count(), 0);
  // The idle clock goes on from the file's time: an hour later the session expires.
  now_ += std::chrono::seconds(3601);
  sched_->sessions().ExpireIdle(now_);
  EXPECT_EQ(sched_->sessions().count(), 0);
  IterateUntil([&] { return !fs::exists(File("t")); });
}

TEST_F(DiskTierTest, CorruptForeignAndTruncatedFilesAreQuarantined) {
  SessionLimits l;
  Start(2, l);
  std::vector<int32_t> h;
  for (const char* id : {"flipped", "truncated", "good"}) {
    Create(id);
    h.clear();
    Turn(id, {40}, 3, &h);
  }
  sched_.reset();
  const std::string good = ReadFile(File("good"));
  auto write = [&](const std::string& id, const std::string& bytes) { std::ofstream(File(id), std::ios::binary) << bytes; };
  std::string flipped = ReadFile(File("flipped"));
  flipped[flipped.size() - 6] ^= 0x10;  // A payload byte.
  write("flipped", flipped);
  write("renamed", good);  // Another session's file under this name.
  write("truncated", ReadFile(File("truncated")).substr(0, good.size() - 3));
  write("garbage", "not a state at all");
  StateCodec other = codec_;
  other.fingerprint = "fake-ffff";
  write("foreign", other.Encode(std::vector<float>{1, 2}, {std::nullopt, 0, "foreign", 0, 0}));
  std::ofstream(dir_ / "tmp" / "half.tmp") << "half-written by a crash";

  Start(2, l);
  EXPECT_FALSE(fs::exists(dir_ / "tmp" / "half.tmp")) << "temp files are removed on start";
  EXPECT_EQ(sched_->sessions().count(), 6) << "indexed, not read";
  // Headers are read by List: the foreign, renamed and garbage files fail there.
  std::vector<std::string> listed;
  for (const Session* s : sched_->sessions().List()) listed.push_back(s->id);
  EXPECT_THAT(listed, ElementsAreArray({"flipped", "good", "truncated"}));
  EXPECT_EQ(obs_->quarantined, 3);
  // The payload checks come with the state itself, on the next turn.
  for (const char* id : {"flipped", "truncated"}) {
    SequenceRequest r;
    r.session_id = id;
    r.prompt = {41};
    r.max_tokens = 2;
    auto sink = Run(std::move(r));
    EXPECT_EQ(sink->final().status.code(), absl::StatusCode::kDataLoss) << id;
    EXPECT_THAT(std::string(sink->final().status.message()), HasSubstr("quarantine"));
    EXPECT_EQ(Get(id), nullptr) << id << " is gone, never served";
    EXPECT_FALSE(fs::exists(File(id)));
  }
  EXPECT_EQ(obs_->quarantined, 5);
  int in_quarantine = 0;
  for (const auto& e : fs::directory_iterator(dir_ / "quarantine")) in_quarantine += e.is_regular_file();
  EXPECT_EQ(in_quarantine, 5);
  Turn("good", {41}, 3, &h);  // The intact one is unharmed.
}

TEST_F(DiskTierTest, HostBytesOverBudgetSpillToDiskAndComeBack) {
  SessionLimits l;
  l.host_bytes = 2 * 8;  // Two fake states on the host.
  l.persist_interval = std::chrono::seconds(3600);  // Only spilling writes here.
  Start(2, l);
  std::map<std::string, std::vector<int32_t>> history;
  const std::vector<std::string> ids = {"s0", "s1", "s2", "s3", "s4", "s5"};
  for (const std::string& id : ids) {
    Create(id);
    Turn(id, {static_cast<int32_t>(40 + id[1])}, 3, &history[id]);
    now_ += std::chrono::seconds(1);
  }
  IterateUntil([&] { return sched_->sessions().host_bytes() <= l.host_bytes && obs_->writes >= 3; });
  EXPECT_GE(sched_->sessions().disk_sessions(), 3);
  EXPECT_EQ(Get("s0")->tier, Tier::kDisk) << "least recently used first";
  EXPECT_EQ(Get("s5")->tier, Tier::kDevice);
  for (const std::string& id : ids) Turn(id, {35}, 4, &history[id]);  // Exact after the round trip.
  EXPECT_GE(obs_->reads, 3);
}

TEST_F(DiskTierTest, DiskBudgetExpiresTheOldestIdleSessions) {
  SessionLimits l;
  l.persist_interval = std::chrono::milliseconds(0);
  Start(4, l);
  Create("probe");
  std::vector<int32_t> h;
  Turn("probe", {40}, 1, &h);
  const int64_t file = static_cast<int64_t>(fs::file_size(File("probe")));
  sched_.reset();
  fs::remove(File("probe"));

  l.disk_bytes = 2 * file + file / 2;  // Room for two files.
  Start(4, l);
  std::map<std::string, std::vector<int32_t>> history;
  for (const char* id : {"old", "mid", "new"}) {
    Create(id);
    Turn(id, {50}, 2, &history[id]);
    now_ += std::chrono::seconds(1);
  }
  EXPECT_EQ(obs_->expired, 1);
  EXPECT_EQ(Get("old"), nullptr) << "the oldest idle session expired";
  EXPECT_FALSE(fs::exists(File("old")));
  EXPECT_TRUE(fs::exists(File("mid")) && fs::exists(File("new")));
  EXPECT_LE(sched_->sessions().disk_bytes(), l.disk_bytes);
  Turn("new", {51}, 2, &history["new"]);  // A live turn's commit never fails for want of disk.
}

TEST_F(DiskTierTest, DeleteRemovesTheFile) {
  SessionLimits l;
  l.persist_interval = std::chrono::milliseconds(0);
  Start(2, l);
  Create("d");
  std::vector<int32_t> h;
  Turn("d", {40}, 2, &h);
  ASSERT_TRUE(fs::exists(File("d")));
  ASSERT_TRUE(sched_->sessions().Delete("d").ok());
  IterateUntil([&] { return !fs::exists(File("d")); });
  sched_.reset();
  Start(2, l);
  EXPECT_EQ(sched_->sessions().count(), 0);
}

}  // namespace
}  // namespace rwkv::server
