#include "client/load.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace rwkv::client {
namespace {

using Steady = std::chrono::steady_clock;
double Since(Steady::time_point a, Steady::time_point b) { return std::chrono::duration<double>(b - a).count(); }

std::string CodeName(absl::StatusCode c) { return absl::AsciiStrToLower(absl::StatusCodeToString(c)); }

std::string JsonPercentiles(const Percentiles& p) {
  return absl::StrFormat(R"({"n": %d, "mean": %.6f, "p50": %.6f, "p90": %.6f, "p99": %.6f})", p.n, p.mean, p.p50,
                         p.p90, p.p99);
}

}  // namespace

Percentiles Summarize(std::vector<double> v) {
  Percentiles p;
  p.n = static_cast<int64_t>(v.size());
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(std::floor(q * (v.size() - 1) + 0.5)))]; };
  p.p50 = at(0.5);
  p.p90 = at(0.9);
  p.p99 = at(0.99);
  double sum = 0;
  for (double x : v) sum += x;
  p.mean = sum / v.size();
  return p;
}

LoadResult RunLoad(Client& client, const LoadConfig& cfg, int vocab) {
  LoadResult r;
  r.concurrency = cfg.concurrency;
  std::mutex mu;
  std::vector<double> ttft, itl, req;
  std::atomic<int> started{0}, finished{0};
  std::atomic<int64_t> tokens{0};
  const Steady::time_point t0 = Steady::now();
  const Steady::time_point end = t0 + std::chrono::duration_cast<Steady::duration>(std::chrono::duration<double>(cfg.duration_s));
  auto more = [&] {
    if (cfg.requests > 0) return started.fetch_add(1) < cfg.requests;
    return Steady::now() < end;
  };
  const int id_limit = std::max(2, std::min(vocab, 20000));

  auto worker = [&](int w) {
    std::mt19937_64 rng(cfg.seed * 1000003 + w);
    std::vector<double> my_ttft, my_itl, my_req;
    int64_t my_tokens = 0;
    std::string session;
    if (cfg.sessions) {
      v1::CreateSessionRequest cr;
      cr.set_session_id(absl::StrFormat("bench-%d-%d-%d", cfg.seed, cfg.concurrency, w));
      absl::StatusOr<v1::Session> created = client.CreateSession(cr);
      if (!created.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        ++r.errors[CodeName(created.status().code())];
        return;
      }
      session = created->session_id();
    }
    while (more()) {
      v1::GenerateRequest g;
      g.set_session_id(session);
      for (int i = 0; i < cfg.prompt_tokens; ++i) g.mutable_token_ids()->add_ids(1 + rng() % (id_limit - 1));
      g.mutable_sampling()->set_temperature(cfg.temperature);
      g.mutable_sampling()->set_seed(rng());
      g.mutable_stop()->set_max_tokens(cfg.max_tokens);
      g.mutable_stop()->set_ignore_eos(true);
      g.mutable_output()->set_token_ids(true);
      const Steady::time_point s = Steady::now();
      Steady::time_point last = s;
      bool first = true;
      CallOptions opts;
      opts.timeout = std::chrono::milliseconds(static_cast<int64_t>(cfg.timeout_s * 1000));
      absl::StatusOr<v1::Final> f = client.Generate(
          g,
          [&](const v1::Chunk& c) {
            const Steady::time_point now = Steady::now();
            if (c.token_ids_size() > 0) {
              (first ? my_ttft : my_itl).push_back(Since(first ? s : last, now));
              // Several tokens in one chunk arrived together: the rest have no gap of their own.
              for (int i = 1; i < c.token_ids_size(); ++i) my_itl.push_back(0);
              first = false;
              last = now;
              my_tokens += c.token_ids_size();
              tokens += c.token_ids_size();
            }
            return true;
          },
          opts);
      my_req.push_back(Since(s, Steady::now()));
      std::lock_guard<std::mutex> lock(mu);
      if (f.ok()) {
        ++r.ok;
      } else {
        ++r.errors[CodeName(f.status().code())];
      }
      ++finished;
    }
    if (!session.empty()) client.DeleteSession(session).IgnoreError();
    std::lock_guard<std::mutex> lock(mu);
    ttft.insert(ttft.end(), my_ttft.begin(), my_ttft.end());
    itl.insert(itl.end(), my_itl.begin(), my_itl.end());
    req.insert(req.end(), my_req.begin(), my_req.end());
    r.generated_tokens += my_tokens;
  };

  std::atomic<bool> done{false};
  std::thread progress([&] {
    if (!cfg.progress) return;
    while (!done) {
      const double el = Since(t0, Steady::now());
      const double frac = cfg.requests > 0 ? static_cast<double>(finished) / cfg.requests : std::min(1.0, el / cfg.duration_s);
      const int filled = static_cast<int>(frac * 30);
      fprintf(stderr, "\r  c=%-4d [%s%s] %5.1f%%  %6d req  %9.1f tok/s ", cfg.concurrency, std::string(filled, '#').c_str(),
              std::string(30 - filled, '.').c_str(), frac * 100, finished.load(), el > 0 ? tokens / el : 0.0);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    fprintf(stderr, "\n");
  });
  std::vector<std::thread> threads;
  for (int w = 0; w < cfg.concurrency; ++w) threads.emplace_back(worker, w);
  for (auto& t : threads) t.join();
  r.wall_s = Since(t0, Steady::now());
  done = true;
  progress.join();
  r.tokens_per_s = r.generated_tokens / r.wall_s;
  r.requests_per_s = (r.ok + [&] { int n = 0; for (auto& [k, v] : r.errors) n += v; return n; }()) / r.wall_s;
  r.ttft_s = Summarize(ttft);
  r.itl_s = Summarize(itl);
  r.request_s = Summarize(req);
  return r;
}

std::string ToJson(const std::vector<LoadResult>& results, const LoadConfig& cfg) {
  std::string out = absl::StrFormat(
      "{\n  \"config\": {\"prompt_tokens\": %d, \"max_tokens\": %d, \"requests\": %d, \"duration_s\": %g, "
      "\"temperature\": %g, \"sessions\": %s},\n  \"levels\": [\n",
      cfg.prompt_tokens, cfg.max_tokens, cfg.requests, cfg.duration_s, cfg.temperature, cfg.sessions ? "true" : "false");
  for (size_t i = 0; i < results.size(); ++i) {
    const LoadResult& r = results[i];
    std::string errors = "{";
    for (const auto& [k, v] : r.errors) absl::StrAppendFormat(&errors, "%s\"%s\": %d", errors.size() > 1 ? ", " : "", k, v);
    errors += "}";
    absl::StrAppendFormat(&out,
                          "    {\"concurrency\": %d, \"ok\": %d, \"errors\": %s, \"wall_s\": %.4f, "
                          "\"generated_tokens\": %d, \"tokens_per_s\": %.3f, \"requests_per_s\": %.4f,\n"
                          "     \"ttft_s\": %s,\n     \"itl_s\": %s,\n     \"request_s\": %s}%s\n",
                          r.concurrency, r.ok, errors, r.wall_s, r.generated_tokens, r.tokens_per_s, r.requests_per_s,
                          JsonPercentiles(r.ttft_s), JsonPercentiles(r.itl_s), JsonPercentiles(r.request_s),
                          i + 1 < results.size() ? "," : "");
  }
  out += "  ]\n}\n";
  return out;
}

}  // namespace rwkv::client
