// The prefix-state cache: the radix tree alone, then inside the scheduler (a fake model whose
// greedy output is a pure function of the token history, and the real CPU backend on the tiny
// fixture model, where a hit must change no bit of the output).
#include "server/core/prefix_cache.h"

#include <memory>

#include "engine/backend.h"
#include "engine/model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/scheduler.h"
#include "tests/server/fake_backend.h"
#include "tests/server/test_sink.h"

namespace rwkv::server {
namespace {

using ::rwkv::testing::FakeBackend;
using ::rwkv::testing::FakeModel;
using ::testing::ElementsAreArray;

std::vector<float> State(float v, size_t n = 4) { return std::vector<float>(n, v); }

TEST(PrefixCacheTest, LongestPrefixWithinTheLimit) {
  PrefixCache c({.max_bytes = 1 << 20});
  c.Insert("", std::vector<int32_t>{1, 2, 3}, State(3));
  c.Insert("", std::vector<int32_t>{1, 2, 3, 4, 5}, State(5));
  c.Insert("", std::vector<int32_t>{1, 2, 9}, State(9));  // Splits the edge 1 2 3.
  const std::vector<int32_t> q{1, 2, 3, 4, 5, 6};
  PrefixCache::Hit h = c.Lookup("", q, q.size());
  EXPECT_EQ(h.length, 5u);
  EXPECT_EQ((*h.state)[0], 5);
  h = c.Lookup("", q, 4);  // Limited to 4 tokens: the entry at 3.
  EXPECT_EQ(h.length, 3u);
  EXPECT_EQ((*h.state)[0], 3);
  h = c.Lookup("", std::vector<int32_t>{1, 2, 9, 9}, 4);
  EXPECT_EQ(h.length, 3u);
  EXPECT_EQ((*h.state)[0], 9);
  EXPECT_EQ(c.Lookup("", std::vector<int32_t>{1, 2}, 2).length, 0u);  // Inside an edge, no entry.
  EXPECT_EQ(c.Lookup("", std::vector<int32_t>{7}, 1).length, 0u);
  EXPECT_TRUE(c.Contains("", std::vector<int32_t>{1, 2, 9}));
  EXPECT_FALSE(c.Contains("", std::vector<int32_t>{1, 2}));
  EXPECT_EQ(c.entries(), 3);
}

TEST(PrefixCacheTest, ScopesNeverMix) {
  PrefixCache c({.max_bytes = 1 << 20});
  c.Insert("", std::vector<int32_t>{1, 2}, State(1));
  c.Insert("tuned", std::vector<int32_t>{1, 2}, State(2));
  EXPECT_EQ((*c.Lookup("", std::vector<int32_t>{1, 2, 3}, 3).state)[0], 1);
  EXPECT_EQ((*c.Lookup("tuned", std::vector<int32_t>{1, 2, 3}, 3).state)[0], 2);
  EXPECT_EQ(c.Lookup("other", std::vector<int32_t>{1, 2, 3}, 3).length, 0u);
}

TEST(PrefixCacheTest, ReplacingAKeyKeepsOneEntry) {
  PrefixCache c({.max_bytes = 1 << 20});
  c.Insert("", std::vector<int32_t>{4, 5}, State(1));
  c.Insert("", std::vector<int32_t>{4, 5}, State(2));
  EXPECT_EQ(c.entries(), 1);
  EXPECT_EQ((*c.Lookup("", std::vector<int32_t>{4, 5, 6}, 3).state)[0], 2);
  EXPECT_EQ(c.bytes(), 4 * 4 + 2 * 4);  // One state of 4 floats, one edge of 2 tokens.
}

TEST(PrefixCacheTest, LeastRecentlyUsedGoFirstAndTheTreeStaysConsistent) {
  // Each entry: 4 floats (16 bytes) + its edge's tokens. Budget for about three.
  PrefixCache c({.max_bytes = 80});
  c.Insert("", std::vector<int32_t>{1, 2}, State(1));      // 16 + 8
  c.Insert("", std::vector<int32_t>{1, 2, 3}, State(2));   // 16 + 4
  c.Insert("", std::vector<int32_t>{5}, State(3));         // 16 + 4  -> 64 bytes
  EXPECT_EQ(c.bytes(), 64);
  // Touch {1,2}: the least recently used is now {1,2,3}.
  EXPECT_EQ(c.Lookup("", std::vector<int32_t>{1, 2}, 2).length, 2u);
  c.Insert("", std::vector<int32_t>{6}, State(4));  // 84 > 80: {1,2,3} goes (its node too).
  EXPECT_EQ(c.evictions(), 1);
  EXPECT_EQ(c.entries(), 3);
  EXPECT_FALSE(c.Contains("", std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(c.Lookup("", std::vector<int32_t>{1, 2, 3}, 3).length, 2u);
  EXPECT_EQ(c.bytes(), 64);
  // {5} is now the least recently used: it goes next.
  c.Insert("", std::vector<int32_t>{7}, State(5));
  EXPECT_FALSE(c.Contains("", std::vector<int32_t>{5}));
  EXPECT_TRUE(c.Contains("", std::vector<int32_t>{1, 2}));
  // An inner node without an entry merges with its only child when its other branch goes.
  PrefixCache m({.max_bytes = 1 << 20});
  m.Insert("", std::vector<int32_t>{1, 2, 3}, State(1));
  m.Insert("", std::vector<int32_t>{1, 2, 4}, State(2));
  EXPECT_EQ(m.bytes(), 2 * 16 + (2 + 1 + 1) * 4);
}

TEST(PrefixCacheTest, AnEntryOverTheBudgetIsNotStored) {
  PrefixCache c({.max_bytes = 16});
  c.Insert("", std::vector<int32_t>{1}, State(1, 8));
  EXPECT_EQ(c.entries(), 0);
  EXPECT_EQ(c.bytes(), 0);
  PrefixCache off({.max_bytes = 0});
  off.Insert("", std::vector<int32_t>{1}, State(1));
  EXPECT_EQ(off.entries(), 0);
}

// The scheduler with a cache, over the fake model.
class CachedSchedulerTest : public ::testing::Test {
 protected:
  void Make(int slots, int interval = 0, int budget = 512) {
    SchedulerOptions o;
    o.max_running = slots;
    o.token_budget = budget;
    o.prefix_cache = {.max_bytes = 1 << 20, .interval = interval};
    auto backend = std::make_unique<FakeBackend>(slots);
    backend_ = backend.get();
    tokenizer_ = *Tokenizer::Load(std::string(RWKV_SOURCE_DIR) + "/tests/fixtures/byte-vocab.txt");
    sched_ = std::make_unique<Scheduler>(std::move(backend), tokenizer_.get(), o, nullptr, [this] { return now_; });
  }
  static SequenceRequest Greedy(std::vector<int32_t> prompt, int max_tokens) {
    SequenceRequest r;
    r.prompt = std::move(prompt);
    r.max_tokens = max_tokens;
    r.sampling.temperature = 0;
    r.want_token_ids = true;
    return r;
  }
  std::shared_ptr<TestSink> Run(SequenceRequest r) {
    auto sink = std::make_shared<TestSink>();
    EXPECT_TRUE(sched_->Submit(std::move(r), sink).ok());
    for (int i = 0; i < 10000 && !sink->finished(); ++i) sched_->Iterate();
    EXPECT_TRUE(sink->finished());
    return sink;
  }
  // Prompt tokens the backend computed since the last call.
  int Computed() {
    int n = 0;
    for (size_t i = seen_; i < backend_->steps.size(); ++i) {
      for (int t : backend_->steps[i]) n += t;
    }
    seen_ = backend_->steps.size();
    return n;
  }
  static std::vector<int32_t> Range(int from, int n) {
    std::vector<int32_t> v;
    for (int i = 0; i < n; ++i) v.push_back(33 + (from + i) % 90);
    return v;
  }

  TimePoint now_{};
  FakeBackend* backend_ = nullptr;
  size_t seen_ = 0;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Scheduler> sched_;
};

TEST_F(CachedSchedulerTest, AHitComputesOnlyTheRestAndChangesNoToken) {
  Make(2);
  std::vector<int32_t> a = Range(0, 40);
  SequenceRequest r = Greedy(a, 5);
  r.cache_points = {20, 40};
  auto s1 = Run(r);
  EXPECT_THAT(s1->ids(), ElementsAreArray(FakeModel::Greedy(a, 5)));
  EXPECT_EQ(s1->final().cached_prompt_tokens, 0);
  EXPECT_EQ(Computed(), 40 + 4);  // The prompt (chunked at 20), then 4 decode steps.
  EXPECT_EQ(sched_->prefix_cache().entries(), 2);

  std::vector<int32_t> b = a;
  const std::vector<int32_t> more = Range(50, 7);
  b.insert(b.end(), more.begin(), more.end());
  auto s2 = Run(Greedy(b, 5));
  EXPECT_THAT(s2->ids(), ElementsAreArray(FakeModel::Greedy(b, 5)));
  EXPECT_EQ(s2->final().cached_prompt_tokens, 40);
  EXPECT_EQ(s2->final().prompt_tokens, 47);
  EXPECT_EQ(Computed(), 7 + 4);

  // The same prompt again: its last token is computed (its logits give the first sample).
  auto s3 = Run(Greedy(a, 5));
  EXPECT_THAT(s3->ids(), ElementsAreArray(FakeModel::Greedy(a, 5)));
  EXPECT_EQ(s3->final().cached_prompt_tokens, 20);
  EXPECT_EQ(Computed(), 20 + 4);
}

TEST_F(CachedSchedulerTest, LongPromptsAreCachedEveryInterval) {
  Make(1, /*interval=*/16, /*budget=*/50);
  const std::vector<int32_t> a = Range(0, 70);
  Run(Greedy(a, 1));
  EXPECT_EQ(sched_->prefix_cache().entries(), 4);  // 16, 32, 48, 64.
  // Chunks end at the cache points (budget 50 would otherwise take 50 then 20).
  EXPECT_THAT(backend_->steps, ::testing::ElementsAre(std::vector<int>{16}, std::vector<int>{16},
                                                      std::vector<int>{16}, std::vector<int>{16}, std::vector<int>{6}));
  Computed();
  std::vector<int32_t> b(a.begin(), a.begin() + 60);
  auto s = Run(Greedy(b, 3));
  EXPECT_EQ(s->final().cached_prompt_tokens, 48);
  EXPECT_THAT(s->ids(), ElementsAreArray(FakeModel::Greedy(b, 3)));
}

TEST_F(CachedSchedulerTest, TheReplyIsCachedForTheNextTurn) {
  Make(1);
  const std::vector<int32_t> a = Range(0, 10);
  SequenceRequest r = Greedy(a, 6);
  r.cache_reply = true;
  auto s1 = Run(r);
  const std::vector<int32_t> reply = s1->ids();
  // The next turn resends the prompt and the reply, then a new message.
  std::vector<int32_t> b = a;
  b.insert(b.end(), reply.begin(), reply.end());
  const std::vector<int32_t> msg = Range(70, 5);
  b.insert(b.end(), msg.begin(), msg.end());
  Computed();
  auto s2 = Run(Greedy(b, 4));
  EXPECT_EQ(s2->final().cached_prompt_tokens, 10 + 5);  // The reply's last token was never fed.
  EXPECT_THAT(s2->ids(), ElementsAreArray(FakeModel::Greedy(b, 4)));
  EXPECT_EQ(Computed(), 1 + 5 + 3);
}

TEST_F(CachedSchedulerTest, StartStatesAndSessionsKeepApart) {
  Make(2);
  const std::vector<int32_t> a = Range(0, 12);
  SequenceRequest r = Greedy(a, 2);
  r.cache_points = {12};
  Run(r);
  // Another start state: no hit, even for the same tokens.
  auto start = std::make_shared<ExportedState>();
  start->state = {5, 1};
  SequenceRequest t = Greedy(a, 2);
  t.start = start;
  t.cache_scope = "tuned";
  auto st = Run(t);
  EXPECT_EQ(st->final().cached_prompt_tokens, 0);
  // A session's turn neither reads nor writes the cache.
  SequenceRequest c;
  c.kind = SequenceRequest::Kind::kCreateSession;
  c.session_id = "s";
  Run(c);
  const int before = sched_->prefix_cache().entries();
  SequenceRequest turn = Greedy(a, 2);
  turn.session_id = "s";
  turn.cache_points = {6, 12};
  auto ts = Run(turn);
  EXPECT_TRUE(ts->final().status.ok());
  EXPECT_EQ(ts->final().cached_prompt_tokens, 0);
  EXPECT_EQ(sched_->prefix_cache().entries(), before);
}

TEST_F(CachedSchedulerTest, ForksShareOnePrefill) {
  Make(4);
  const std::vector<int32_t> a = Range(0, 30);
  SequenceRequest r = Greedy(a, 4);
  std::vector<std::shared_ptr<TestSink>> forks;
  for (int i = 0; i < 2; ++i) {
    forks.push_back(std::make_shared<TestSink>());
    r.forks.push_back(forks.back());
  }
  auto s = Run(r);
  for (int i = 0; i < 100 && !(forks[0]->finished() && forks[1]->finished()); ++i) sched_->Iterate();
  const std::vector<int32_t> want = FakeModel::Greedy(a, 4);
  EXPECT_THAT(s->ids(), ElementsAreArray(want));
  for (const auto& f : forks) {
    ASSERT_TRUE(f->finished());
    EXPECT_TRUE(f->final().status.ok());
    EXPECT_THAT(f->ids(), ElementsAreArray(want));  // Greedy: every continuation is the same.
    EXPECT_EQ(f->final().generated_tokens, 4);
  }
  EXPECT_EQ(Computed(), 30 + 3 * 3);  // One prefill, three continuations of 3 fed tokens each.
  EXPECT_EQ(sched_->active(), 0);
  // Forks of a request that fails end with it.
  SequenceRequest bad = Greedy({}, 2);
  auto f = std::make_shared<TestSink>();
  bad.forks.push_back(f);
  auto b = Run(bad);
  EXPECT_EQ(b->final().status.code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(f->finished());
  EXPECT_EQ(f->final().status.code(), absl::StatusCode::kInvalidArgument);
}

// The real CPU backend: output with a cache hit equals output without the cache, bit for bit
// (tokens and log-probabilities compared with ==, no tolerance: the state after a prefix is the
// same floats whatever the chunking, tests/engine/model_test.cc BitwiseInvarianceTest).
TEST(CachedSchedulerExactness, CpuOutputIsBitwiseTheSameWithAHit) {
  std::shared_ptr<const Model> model =
      *Model::Load(std::string(RWKV_SOURCE_DIR) + "/tests/fixtures/tiny-rwkv7-v257.safetensors");
  auto tokenizer = *Tokenizer::Load(std::string(RWKV_SOURCE_DIR) + "/tests/fixtures/byte-vocab.txt");
  auto run = [&](bool cache) {
    BackendOptions bo;
    bo.pool_slots = 2;
    bo.max_step_tokens = 64;
    SchedulerOptions so;
    so.max_running = 2;
    so.token_budget = 64;
    so.prefix_cache = {.max_bytes = cache ? (64 << 20) : 0, .interval = 16};
    Scheduler sched(*CreateBackend(model, bo), tokenizer.get(), so);
    std::vector<std::vector<TokenLogprob>> out;
    std::vector<int> cached;
    std::vector<int32_t> history = tokenizer->Encode("User: tell me about the weather in the mountains\n\nAssistant:");
    for (int turn = 0; turn < 3; ++turn) {
      SequenceRequest r;
      r.prompt = history;
      r.cache_points = {static_cast<int>(history.size())};
      r.cache_reply = true;
      r.max_tokens = 12;
      r.sampling.temperature = 1.0f;
      r.sampling.top_p = 0.9f;
      r.sampling.seed = 7 + turn;
      r.want_token_ids = true;
      r.want_logprobs = true;
      r.top_logprobs = 3;
      auto sink = std::make_shared<TestSink>();
      EXPECT_TRUE(sched.Submit(r, sink).ok());
      for (int i = 0; i < 1000 && !sink->finished(); ++i) sched.Iterate();
      EXPECT_TRUE(sink->final().status.ok());
      cached.push_back(sink->final().cached_prompt_tokens);
      std::vector<TokenLogprob> lps;
      for (const ChunkEvent& c : sink->chunks()) lps.insert(lps.end(), c.logprobs.begin(), c.logprobs.end());
      out.push_back(lps);
      history.insert(history.end(), sink->ids().begin(), sink->ids().end());
      const std::vector<int32_t> next = tokenizer->Encode("\n\nUser: and tomorrow?\n\nAssistant:");
      history.insert(history.end(), next.begin(), next.end());
    }
    return std::make_pair(out, cached);
  };
  const auto [plain, plain_cached] = run(false);
  const auto [hit, hit_cached] = run(true);
  EXPECT_THAT(plain_cached, ElementsAreArray({0, 0, 0}));
  EXPECT_EQ(hit_cached[0], 0);
  EXPECT_GT(hit_cached[1], 40);
  EXPECT_GT(hit_cached[2], hit_cached[1]);
  ASSERT_EQ(plain.size(), hit.size());
  for (size_t t = 0; t < plain.size(); ++t) {
    ASSERT_EQ(plain[t].size(), hit[t].size()) << "turn " << t;
    for (size_t i = 0; i < plain[t].size(); ++i) {
      EXPECT_EQ(plain[t][i].token, hit[t][i].token) << "turn " << t << " token " << i;
      EXPECT_EQ(plain[t][i].logprob, hit[t][i].logprob) << "turn " << t << " token " << i;
      ASSERT_EQ(plain[t][i].top.size(), hit[t][i].top.size());
      for (size_t k = 0; k < plain[t][i].top.size(); ++k) {
        EXPECT_EQ(plain[t][i].top[k].token, hit[t][i].top[k].token);
        EXPECT_EQ(plain[t][i].top[k].logprob, hit[t][i].top[k].logprob);
      }
    }
  }
}

}  // namespace
}  // namespace rwkv::server
