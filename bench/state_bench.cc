// The sessions' disk tier without a server: the state file round trip (encode, write with fsync,
// rename and directory fsync, read, decode) at a model shape, a batch of writes sharing one
// directory fsync, and the index on start over many stored sessions.
//
//   state_bench [--layers 12 --embd 768] [--rounds 30] [--index-sessions 10000] [--dir DIR]
//   state_bench --model FILE --make DIR --count N     stored sessions of that model, for a server
//
// Medians of --rounds; the directory is a temporary one under /tmp unless --dir is given (the
// disk under it is what is measured).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "engine/model.h"
#include "engine/state_pool.h"
#include "server/core/session_store.h"
#include "server/core/state_codec.h"
#include "server/core/state_dir.h"

namespace rwkv::bench {
namespace {

using server::SessionLimits;
using server::SessionStore;
using server::StateCodec;
using server::StateDir;
using server::StateHeader;

std::map<std::string, std::string> ParseArgs(int argc, char** argv) {
  std::map<std::string, std::string> a;
  for (int i = 1; i + 1 < argc; i += 2) a[argv[i]] = argv[i + 1];
  return a;
}

std::string Get(const std::map<std::string, std::string>& a, const std::string& k, const std::string& d) {
  auto it = a.find(k);
  return it == a.end() ? d : it->second;
}

std::vector<float> RandomState(int64_t n) {
  std::vector<float> s(n);
  uint32_t x = 12345;
  for (float& v : s) {
    x = x * 1664525u + 1013904223u;
    v = static_cast<float>(x >> 8) / (1 << 24) - 0.5f;
  }
  return s;
}

// Writes `count` sessions' files (ids bench-N) for `codec` through the real writer path.
void MakeSessions(const StateDir& dir, const StateCodec& codec, int count) {
  const std::vector<float> state = RandomState(codec.config.StateFloats());
  std::vector<StateDir::Write> batch;
  for (int i = 0; i < count; ++i) {
    StateHeader h;
    h.session_id = absl::StrFormat("bench-%06d", i);
    h.token_count = 100 + i;
    h.pending = 1;
    h.created_unix_ms = h.last_used_unix_ms = 1700000000000 + i;
    batch.push_back({h.session_id, std::make_shared<const std::string>(codec.Encode(state, h)),
                     std::chrono::system_clock::now()});
    if (batch.size() == 256 || i + 1 == count) {
      for (const absl::Status& st : dir.Apply(batch)) {
        if (!st.ok()) {
          std::fprintf(stderr, "state_bench: %s\n", std::string(st.message()).c_str());
          std::exit(1);
        }
      }
      batch.clear();
    }
  }
}

int Run(int argc, char** argv) {
  const auto a = ParseArgs(argc, argv);
  if (a.count("--make")) {
    absl::StatusOr<std::unique_ptr<Model>> m = Model::Load(Get(a, "--model", ""));
    if (!m.ok()) {
      std::fprintf(stderr, "state_bench: %s\n", std::string(m.status().message()).c_str());
      return 1;
    }
    StateCodec codec{server::ModelFingerprint(**m), (*m)->config()};
    absl::StatusOr<std::unique_ptr<StateDir>> dir = StateDir::Open(Get(a, "--make", ""));
    if (!dir.ok()) return 1;
    MakeSessions(**dir, codec, std::atoi(Get(a, "--count", "10000").c_str()));
    return 0;
  }
  const int layers = std::atoi(Get(a, "--layers", "12").c_str());
  const int embd = std::atoi(Get(a, "--embd", "768").c_str());
  const int rounds = std::atoi(Get(a, "--rounds", "30").c_str());
  const int index_sessions = std::atoi(Get(a, "--index-sessions", "10000").c_str());
  std::string root = Get(a, "--dir", "");
  if (root.empty()) {
    char tmpl[] = "/tmp/rwkv-state-bench-XXXXXX";
    root = mkdtemp(tmpl);
  } else {
    std::filesystem::create_directories(root);
  }
  StateCodec codec;
  codec.fingerprint = "bench";
  codec.config = *BenchConfig("rwkv7", layers, embd, 65536);
  const std::vector<float> state = RandomState(codec.config.StateFloats());
  absl::StatusOr<std::unique_ptr<StateDir>> dir = StateDir::Open(root + "/trip");
  if (!dir.ok()) {
    std::fprintf(stderr, "state_bench: %s\n", std::string(dir.status().message()).c_str());
    return 1;
  }

  std::vector<double> encode, write, read, decode, batch16;
  StateHeader h{1, 1000, "trip", 1700000000000, 1700000000000};
  for (int r = 0; r < rounds; ++r) {
    auto t0 = Clock::now();
    auto bytes = std::make_shared<const std::string>(codec.Encode(state, h));
    auto t1 = Clock::now();
    (*dir)->Apply({{"trip", bytes, std::chrono::system_clock::now()}});
    auto t2 = Clock::now();
    absl::StatusOr<std::string> back = (*dir)->Read("trip", codec.MaxBytes() + 1);
    auto t3 = Clock::now();
    absl::StatusOr<server::ExportedState> st = codec.Decode(*back);
    auto t4 = Clock::now();
    if (!st.ok() || st->state != state) {
      std::fprintf(stderr, "state_bench: round trip changed the state\n");
      return 1;
    }
    encode.push_back(Seconds(t0, t1));
    write.push_back(Seconds(t1, t2));
    read.push_back(Seconds(t2, t3));
    decode.push_back(Seconds(t3, t4));
    std::vector<StateDir::Write> b;
    for (int i = 0; i < 16; ++i) b.push_back({absl::StrFormat("b%d", i), bytes, std::chrono::system_clock::now()});
    auto t5 = Clock::now();
    (*dir)->Apply(b);
    batch16.push_back(Seconds(t5, Clock::now()) / 16);
  }
  const double mb = codec.config.StateBytes() / 1e6;
  std::printf("state round trip, %s, %.2f MB per state, median of %d (disk under %s)\n",
              codec.config.Describe().c_str(), mb, rounds, root.c_str());
  std::printf("  encode (header, copy, CRC-32)           %8.3f ms\n", Median(encode) * 1e3);
  std::printf("  write (temp, fsync, rename, dir fsync)  %8.3f ms\n", Median(write) * 1e3);
  std::printf("  write, per state in a batch of 16        %8.3f ms\n", Median(batch16) * 1e3);
  std::printf("  read                                     %8.3f ms (page cache)\n", Median(read) * 1e3);
  std::printf("  decode (checks, CRC-32, copy)            %8.3f ms\n", Median(decode) * 1e3);
  std::printf("  round trip                               %8.3f ms\n",
              (Median(encode) + Median(write) + Median(read) + Median(decode)) * 1e3);

  // The index on start: a directory listing and one stat per file, no file opened.
  StateCodec small = codec;
  small.config = *BenchConfig("rwkv7", 2, 64, 257);  // Small files: the count is what matters here.
  for (int n : {0, index_sessions}) {
    const std::string d = absl::StrFormat("%s/index-%d", root, n);
    absl::StatusOr<std::unique_ptr<StateDir>> sd = StateDir::Open(d);
    if (!sd.ok()) return 1;
    MakeSessions(**sd, small, n);
    sync();
    std::vector<double> open;
    for (int r = 0; r < 5; ++r) {
      HostStatePool pool(1, small.config.StateFloats());
      SessionLimits limits;
      limits.max_sessions = n + 1;
      SessionStore store(&pool, limits);
      auto t0 = Clock::now();
      absl::Status st = store.OpenDisk(d, small, nullptr, server::Clock::now());
      open.push_back(Seconds(t0, Clock::now()));
      if (!st.ok() || store.count() != n) {
        std::fprintf(stderr, "state_bench: index of %d sessions failed\n", n);
        return 1;
      }
    }
    std::printf("index on start, %6d stored sessions    %8.3f ms (median of 5)\n", n, Median(open) * 1e3);
  }
  if (!a.count("--dir")) std::filesystem::remove_all(root);
  return 0;
}

}  // namespace
}  // namespace rwkv::bench

int main(int argc, char** argv) { return rwkv::bench::Run(argc, argv); }
