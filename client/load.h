// Load generation for `rwkv-client bench`: N concurrent streams, each running requests back to
// back, measured from the client's side (time to first token, gaps between tokens).
#ifndef RWKV_CLIENT_LOAD_H_
#define RWKV_CLIENT_LOAD_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "client/client.h"

namespace rwkv::client {

struct LoadConfig {
  int concurrency = 1;
  int requests = 0;        // Total requests; 0 = run for `duration_s`.
  double duration_s = 10;
  int prompt_tokens = 16;
  int max_tokens = 64;
  float temperature = 0;   // 0 = greedy (sampling cost is then negligible next to the step).
  double timeout_s = 600;
  bool progress = true;    // A progress line on stderr.
  uint64_t seed = 1;
  // Each stream creates a session of its own and runs its requests as turns of it (a chat's
  // turns: every request is a commit of the session's state). Deleted at the end.
  bool sessions = false;
};

struct Percentiles {
  double p50 = 0, p90 = 0, p99 = 0, mean = 0;
  int64_t n = 0;
};

struct LoadResult {
  int concurrency = 0;
  int ok = 0;
  std::map<std::string, int> errors;  // By gRPC code name.
  double wall_s = 0;
  int64_t generated_tokens = 0;
  double tokens_per_s = 0;            // Generated tokens over wall time, all streams together.
  double requests_per_s = 0;
  Percentiles ttft_s, itl_s, request_s;
};

Percentiles Summarize(std::vector<double> v);

// Runs one load level. `vocab` bounds the random prompt ids (ids 1..min(vocab, 20000) - 1).
LoadResult RunLoad(Client& client, const LoadConfig& cfg, int vocab);

std::string ToJson(const std::vector<LoadResult>& results, const LoadConfig& cfg);

}  // namespace rwkv::client

#endif  // RWKV_CLIENT_LOAD_H_
