// The scheduler, stepped iteration by iteration over a fake model: no gRPC, no threads, an
// injected clock. Expected outputs come from FakeModel::Greedy, which runs the same hash model
// without any scheduling, so batching, chunking, sessions and eviction must not change a token.
#include "server/core/scheduler.h"

#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/fake_backend.h"
#include "tests/server/test_sink.h"

namespace rwkv::server {
namespace {

using ::rwkv::testing::FakeBackend;
using ::rwkv::testing::FakeModel;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

class SchedulerTest : public ::testing::Test {
 protected:
  void Make(int slots, SchedulerOptions o = {}) {
    if (o.max_running > slots) o.max_running = slots;
    auto backend = std::make_unique<FakeBackend>(slots);
    backend_ = backend.get();
    tokenizer_ = *Tokenizer::Load(std::string(RWKV_SOURCE_DIR) + "/tests/fixtures/byte-vocab.txt");
    sched_ = std::make_unique<Scheduler>(std::move(backend), tokenizer_.get(), o, nullptr, [this] { return now_; });
  }

  static SequenceRequest Greedy(std::vector<int32_t> prompt, int max_tokens, std::string session = "") {
    SequenceRequest r;
    r.prompt = std::move(prompt);
    r.max_tokens = max_tokens;
    r.sampling.temperature = 0;
    r.session_id = std::move(session);
    r.want_token_ids = true;
    return r;
  }

  std::shared_ptr<TestSink> Submit(SequenceRequest r) {
    auto sink = std::make_shared<TestSink>();
    EXPECT_TRUE(sched_->Submit(std::move(r), sink).ok());
    return sink;
  }

  // Iterates until every sink has finished (or a bound, which fails the test).
  void RunUntilDone(const std::vector<std::shared_ptr<TestSink>>& sinks) {
    for (int i = 0; i < 100000; ++i) {
      bool all = true;
      for (const auto& s : sinks) all = all && s->finished();
      if (all) return;
      sched_->Iterate();
    }
    FAIL() << "sequences did not finish";
  }

  std::shared_ptr<TestSink> CreateSession(const std::string& id, std::vector<int32_t> prompt = {}) {
    SequenceRequest r;
    r.kind = SequenceRequest::Kind::kCreateSession;
    r.session_id = id;
    r.prompt = std::move(prompt);
    auto sink = Submit(std::move(r));
    RunUntilDone({sink});
    return sink;
  }

  std::vector<float> SessionState(const std::string& id) {
    std::vector<float> s;
    EXPECT_TRUE(sched_->sessions().ReadState(**sched_->sessions().Get(id), &s).ok());
    return s;
  }

  TimePoint now_{};
  FakeBackend* backend_ = nullptr;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Scheduler> sched_;
};

TEST_F(SchedulerTest, SingleStreamMatchesTheModel) {
  Make(4);
  auto s = Submit(Greedy({5, 6, 7}, 20));
  RunUntilDone({s});
  ASSERT_TRUE(s->final().status.ok()) << s->final().status;
  EXPECT_THAT(s->ids(), ElementsAreArray(FakeModel::Greedy({5, 6, 7}, 20)));
  EXPECT_EQ(s->final().reason, FinishReason::kLength);
  EXPECT_EQ(s->final().generated_tokens, 20);
  EXPECT_EQ(s->final().prompt_tokens, 3);
  EXPECT_EQ(backend_->pool().used(), 0) << "the slot goes back to the pool";
}

TEST_F(SchedulerTest, ConcurrentStreamsOfDifferentLengthsEachMatchTheirSingleRun) {
  Make(8);
  std::vector<std::shared_ptr<TestSink>> sinks;
  for (int i = 0; i < 6; ++i) sinks.push_back(Submit(Greedy({10 + i, 20, 30 + i}, 5 + 7 * i)));
  RunUntilDone(sinks);
  for (int i = 0; i < 6; ++i) {
    EXPECT_THAT(sinks[i]->ids(), ElementsAreArray(FakeModel::Greedy({10 + i, 20, 30 + i}, 5 + 7 * i))) << i;
  }
  size_t widest = 0;
  for (const auto& step : backend_->steps) widest = std::max(widest, step.size());
  EXPECT_EQ(widest, 6u) << "all six streams ran in the same engine step";
}

TEST_F(SchedulerTest, LongPromptIsChunkedAndNeverStallsRunningDecodes) {
  SchedulerOptions o;
  o.token_budget = 16;
  o.max_running = 4;
  Make(4, o);
  auto decoding = Submit(Greedy({1, 2}, 60));
  sched_->Iterate();  // Admitted and prefilled; now decoding.
  std::vector<int32_t> long_prompt(200);
  for (int i = 0; i < 200; ++i) long_prompt[i] = 1 + i % 250;
  auto prefilling = Submit(Greedy(long_prompt, 3));
  const size_t before = backend_->steps.size();
  RunUntilDone({decoding, prefilling});
  EXPECT_THAT(decoding->ids(), ElementsAreArray(FakeModel::Greedy({1, 2}, 60)));
  EXPECT_THAT(prefilling->ids(), ElementsAreArray(FakeModel::Greedy(long_prompt, 3)));
  // While the long prompt was prefilled, every step still carried the decode token and the
  // step never exceeded the budget.
  int steps_with_prefill = 0;
  for (size_t i = before; i < backend_->steps.size(); ++i) {
    int total = 0;
    for (int n : backend_->steps[i]) total += n;
    EXPECT_LE(total, 16);
    if (backend_->steps[i].size() == 2 && backend_->steps[i][1] > 1) {
      ++steps_with_prefill;
      EXPECT_EQ(backend_->steps[i][0], 1) << "decode token first, in the same call";
    }
  }
  EXPECT_GE(steps_with_prefill, 200 / 15) << "the prompt went through in chunks of the budget";
}

TEST_F(SchedulerTest, SessionTurnsEqualOneStatelessRequest) {
  Make(4);
  CreateSession("chat");
  auto t1 = Submit(Greedy({3, 4, 5}, 6, "chat"));
  RunUntilDone({t1});
  ASSERT_TRUE(t1->final().status.ok());
  EXPECT_EQ(t1->final().session_tokens, 9);
  auto t2 = Submit(Greedy({8, 9}, 7, "chat"));
  RunUntilDone({t2});
  ASSERT_TRUE(t2->final().status.ok());
  EXPECT_EQ(t2->final().session_tokens, 18);
  std::vector<int32_t> all = {3, 4, 5};
  all.insert(all.end(), t1->ids().begin(), t1->ids().end());
  all.insert(all.end(), {8, 9});
  EXPECT_THAT(t2->ids(), ElementsAreArray(FakeModel::Greedy(all, 7)));
}

TEST_F(SchedulerTest, CreateWithPromptThenEmptyTurnContinuesFromTheLastPromptToken) {
  Make(4);
  auto c = CreateSession("s", {7, 8, 9});
  ASSERT_TRUE(c->final().status.ok());
  EXPECT_EQ(c->final().session_tokens, 3);
  auto t = Submit(Greedy({}, 5, "s"));
  RunUntilDone({t});
  ASSERT_TRUE(t->final().status.ok()) << t->final().status;
  EXPECT_THAT(t->ids(), ElementsAreArray(FakeModel::Greedy({7, 8, 9}, 5)));
}

// A start state (state-tuning file or exported session) in place of zeros: an exported session's
// pending token is fed first, so that a stateless request from it continues that conversation, and
// a session created from it takes over its token count.
TEST_F(SchedulerTest, StartStatesContinueLikeTheSessionTheyCameFrom) {
  Make(4);
  CreateSession("a", {7, 8, 9});
  auto t1 = Submit(Greedy({3}, 5, "a"));
  RunUntilDone({t1});
  ASSERT_TRUE(t1->final().status.ok());
  auto exported = std::make_shared<ExportedState>();
  exported->state = SessionState("a");
  exported->pending = (*sched_->sessions().Get("a"))->pending;
  exported->token_count = (*sched_->sessions().Get("a"))->token_count;
  ASSERT_TRUE(exported->pending.has_value());

  SequenceRequest stateless = Greedy({4}, 6);
  stateless.start = exported;
  auto from_start = Submit(std::move(stateless));
  RunUntilDone({from_start});
  ASSERT_TRUE(from_start->final().status.ok()) << from_start->final().status;

  SequenceRequest create;
  create.kind = SequenceRequest::Kind::kCreateSession;
  create.session_id = "b";
  create.start = exported;
  auto created = Submit(std::move(create));
  RunUntilDone({created});
  ASSERT_TRUE(created->final().status.ok()) << created->final().status;
  EXPECT_EQ(created->final().session_tokens, exported->token_count);
  auto on_b = Submit(Greedy({4}, 6, "b"));
  auto on_a = Submit(Greedy({4}, 6, "a"));
  RunUntilDone({on_b, on_a});
  ASSERT_TRUE(on_a->final().status.ok());
  std::vector<int32_t> all = {7, 8, 9, 3};
  all.insert(all.end(), t1->ids().begin(), t1->ids().end());
  all.push_back(4);
  EXPECT_THAT(on_a->ids(), ElementsAreArray(FakeModel::Greedy(all, 6)));
  EXPECT_THAT(from_start->ids(), ElementsAreArray(on_a->ids()));
  EXPECT_THAT(on_b->ids(), ElementsAreArray(on_a->ids()));
  EXPECT_EQ(on_b->final().session_tokens, on_a->final().session_tokens);

  // A tuned state carries no pending token: the prompt follows the state directly.
  auto tuned = std::make_shared<ExportedState>();
  tuned->state = {0, 0};
  FakeModel::Feed(tuned->state.data(), 1);
  FakeModel::Feed(tuned->state.data(), 2);
  SequenceRequest r = Greedy({5}, 4);
  r.start = tuned;
  auto from_tuned = Submit(std::move(r));
  RunUntilDone({from_tuned});
  EXPECT_THAT(from_tuned->ids(), ElementsAreArray(FakeModel::Greedy({1, 2, 5}, 4)));
  EXPECT_EQ(from_tuned->final().prompt_tokens, 1);
}

TEST_F(SchedulerTest, CancelledTurnLeavesTheSessionByteIdentical) {
  Make(4);
  CreateSession("s", {1, 2, 3});
  auto t1 = Submit(Greedy({4}, 3, "s"));
  RunUntilDone({t1});
  const std::vector<float> before = SessionState("s");
  const int64_t tokens_before = (*sched_->sessions().Get("s"))->token_count;
  auto t2 = Submit(Greedy({5, 6}, 50, "s"));
  for (int i = 0; i < 5; ++i) sched_->Iterate();
  EXPECT_FALSE(t2->finished());
  t2->cancelled = true;
  RunUntilDone({t2});
  EXPECT_EQ(t2->final().status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(SessionState("s"), before);
  EXPECT_EQ((*sched_->sessions().Get("s"))->token_count, tokens_before);
  EXPECT_FALSE((*sched_->sessions().Get("s"))->busy);
  // The next turn continues as if the cancelled one never happened.
  auto t3 = Submit(Greedy({5, 6}, 4, "s"));
  RunUntilDone({t3});
  std::vector<int32_t> all = {1, 2, 3, 4};
  all.insert(all.end(), t1->ids().begin(), t1->ids().end());
  all.insert(all.end(), {5, 6});
  EXPECT_THAT(t3->ids(), ElementsAreArray(FakeModel::Greedy(all, 4)));
  EXPECT_EQ(backend_->pool().used(), 1) << "only the session's committed slot stays in use";
}

TEST_F(SchedulerTest, ExpiredDeadlineFailsTheTurnAndKeepsTheSession) {
  Make(4);
  CreateSession("s", {1, 2});
  const std::vector<float> before = SessionState("s");
  SequenceRequest r = Greedy({3}, 100, "s");
  r.deadline = now_ + std::chrono::seconds(5);
  auto t = Submit(std::move(r));
  for (int i = 0; i < 3; ++i) sched_->Iterate();
  now_ += std::chrono::seconds(6);
  RunUntilDone({t});
  EXPECT_EQ(t->final().status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(t->final().status.message()), HasSubstr("deadline"));
  EXPECT_EQ(SessionState("s"), before);
}

TEST_F(SchedulerTest, SecondConcurrentTurnOnASessionIsRefused) {
  Make(4);
  CreateSession("s");
  auto t1 = Submit(Greedy({1}, 30, "s"));
  sched_->Iterate();
  auto t2 = Submit(Greedy({2}, 3, "s"));
  sched_->Iterate();
  ASSERT_TRUE(t2->finished());
  EXPECT_EQ(t2->final().status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(t2->final().status.message()), HasSubstr("one turn at a time"));
  RunUntilDone({t1});
  EXPECT_TRUE(t1->final().status.ok());
}

TEST_F(SchedulerTest, UnknownSessionIsNotFound) {
  Make(2);
  auto t = Submit(Greedy({1}, 3, "nope"));
  RunUntilDone({t});
  EXPECT_EQ(t->final().status.code(), absl::StatusCode::kNotFound);
}

TEST_F(SchedulerTest, FullQueueIsResourceExhaustedAtOnce) {
  SchedulerOptions o;
  o.queue_length = 2;
  Make(1, o);
  auto a = Submit(Greedy({1}, 3));
  auto b = Submit(Greedy({2}, 3));
  auto sink = std::make_shared<TestSink>();
  const absl::Status st = sched_->Submit(Greedy({3}, 3), sink);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(st.message()), HasSubstr("queue_length 2"));
  RunUntilDone({a, b});
  EXPECT_TRUE(sched_->Submit(Greedy({3}, 3), sink).ok()) << "room again once the queue drained";
}

TEST_F(SchedulerTest, SlowReaderPausesOnlyItsOwnSequence) {
  Make(4);
  auto slow = Submit(Greedy({1}, 10));
  auto fast = Submit(Greedy({2}, 10));
  sched_->Iterate();
  slow->backlogged = true;
  RunUntilDone({fast});
  EXPECT_EQ(fast->ids().size(), 10u);
  EXPECT_LE(slow->ids().size(), 2u) << "no tokens while its reader is behind";
  slow->backlogged = false;
  RunUntilDone({slow});
  EXPECT_THAT(slow->ids(), ElementsAreArray(FakeModel::Greedy({1}, 10)));
}

TEST_F(SchedulerTest, IdleSessionsMoveToHostWhenSlotsRunOutAndComeBackExact) {
  Make(2);  // Two slots, three sessions.
  std::vector<std::vector<int32_t>> history(3);
  for (int i = 0; i < 3; ++i) {
    const std::string id = "s" + std::to_string(i);
    CreateSession(id);
    history[i] = {static_cast<int32_t>(10 + i)};
    auto t = Submit(Greedy(history[i], 4, id));
    RunUntilDone({t});
    ASSERT_TRUE(t->final().status.ok()) << t->final().status;
    history[i].insert(history[i].end(), t->ids().begin(), t->ids().end());
  }
  // A turn works on a copy, so it needs a second slot: the least recently used sessions went to
  // the host to make room.
  EXPECT_EQ((*sched_->sessions().Get("s0"))->tier, Tier::kHost) << "least recently used";
  EXPECT_EQ((*sched_->sessions().Get("s2"))->tier, Tier::kDevice);
  for (int i : {0, 1, 2, 0}) {
    const std::string id = "s" + std::to_string(i);
    auto t = Submit(Greedy({42}, 3, id));
    RunUntilDone({t});
    ASSERT_TRUE(t->final().status.ok()) << t->final().status;
    history[i].push_back(42);
    EXPECT_THAT(t->ids(), ElementsAreArray(FakeModel::Greedy(history[i], 3))) << id;
    history[i].insert(history[i].end(), t->ids().begin(), t->ids().end());
    EXPECT_EQ((*sched_->sessions().Get(id))->tier, Tier::kDevice);
  }
}

TEST_F(SchedulerTest, IdleSessionsExpireAfterTheirTtl) {
  SchedulerOptions o;
  o.sessions.idle_ttl = std::chrono::seconds(60);
  Make(2, o);
  CreateSession("old");
  now_ += std::chrono::seconds(30);
  CreateSession("new");
  now_ += std::chrono::seconds(40);
  sched_->Iterate();
  EXPECT_EQ(sched_->sessions().Find("old"), nullptr);
  EXPECT_NE(sched_->sessions().Find("new"), nullptr);
  EXPECT_EQ(backend_->pool().used(), 1) << "the expired session's slot is free";
}

TEST_F(SchedulerTest, StopStringIsNotStreamedAndItsTokenIsCommitted) {
  Make(2);
  // Tokens 5 and 6 of the greedy output, as text, are the stop string (the model writes ASCII,
  // token id = byte + 1).
  const std::vector<int32_t> expect = FakeModel::Greedy({65}, 12);
  const std::string stop = {static_cast<char>(expect[5] - 1), static_cast<char>(expect[6] - 1)};
  std::string text;
  for (int32_t t : expect) text += static_cast<char>(t - 1);
  ASSERT_EQ(text.find(stop), 5u) << "the window must not occur earlier for this test";
  CreateSession("s");
  SequenceRequest r = Greedy({65}, 12, "s");
  r.stop_strings = {stop};
  auto t = Submit(std::move(r));
  RunUntilDone({t});
  ASSERT_TRUE(t->final().status.ok());
  EXPECT_EQ(t->final().reason, FinishReason::kStop);
  EXPECT_EQ(t->final().matched_stop, stop);
  EXPECT_THAT(t->ids(), ElementsAreArray(std::vector<int32_t>(expect.begin(), expect.begin() + 7)));
  EXPECT_EQ(t->text(), text.substr(0, 5)) << "the stop string and what follows never reach the client";
  EXPECT_EQ(t->final().session_tokens, 1 + 7) << "the session covers every generated token";
}

TEST_F(SchedulerTest, StopTokenEndsTheTurnWithoutText) {
  Make(2);
  const std::vector<int32_t> expect = FakeModel::Greedy({66}, 10);
  SequenceRequest r = Greedy({66}, 10);
  r.stop_tokens = {expect[3]};
  auto t = Submit(std::move(r));
  RunUntilDone({t});
  EXPECT_EQ(t->final().reason, FinishReason::kStop);
  EXPECT_EQ(t->final().matched_stop, std::to_string(expect[3]));
  EXPECT_EQ(t->ids().size(), 4u);
}

TEST_F(SchedulerTest, EngineFailureFailsTheStepsSequencesAndKeepsSessions) {
  Make(4);
  CreateSession("s", {1, 2});
  const std::vector<float> before = SessionState("s");
  auto a = Submit(Greedy({3}, 10, "s"));
  auto b = Submit(Greedy({4}, 10));
  sched_->Iterate();
  backend_->fail_next = true;
  RunUntilDone({a, b});
  EXPECT_EQ(a->final().status.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(a->final().status.message()), HasSubstr("injected device failure"));
  EXPECT_EQ(b->final().status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(SessionState("s"), before);
  EXPECT_EQ(backend_->pool().used(), 1);
}

TEST_F(SchedulerTest, StickyBackendFailureIsReportedToTheObserver) {
  struct Watch : SchedulerObserver {
    void OnBackendBroken(const absl::Status& why) override { reports.push_back(why); }
    std::vector<absl::Status> reports;
  } watch;
  auto backend = std::make_unique<FakeBackend>(2);
  FakeBackend* fake = backend.get();
  tokenizer_ = *Tokenizer::Load(std::string(RWKV_SOURCE_DIR) + "/tests/fixtures/byte-vocab.txt");
  sched_ = std::make_unique<Scheduler>(std::move(backend), tokenizer_.get(), SchedulerOptions{}, &watch,
                                       [this] { return now_; });
  auto ok = Submit(Greedy({1}, 2));
  RunUntilDone({ok});
  EXPECT_TRUE(watch.reports.empty()) << "no report while healthy";
  fake->broken = absl::FailedPreconditionError("device lost");
  auto failed = Submit(Greedy({1}, 2));
  RunUntilDone({failed});
  EXPECT_EQ(failed->final().status.code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_EQ(watch.reports.size(), 1u);
  EXPECT_EQ(watch.reports[0].message(), "device lost");
  sched_.reset();  // Before `watch` goes.
}

TEST_F(SchedulerTest, DeviceSamplingServesEverySequenceButThoseThatWantLogprobs) {
  Make(4);
  backend_->device_sampling = true;
  auto a = Submit(Greedy({3, 4}, 12));
  SequenceRequest with_lp = Greedy({5}, 7);
  with_lp.want_logprobs = true;
  auto b = Submit(std::move(with_lp));
  RunUntilDone({a, b});
  ASSERT_TRUE(a->final().status.ok());
  ASSERT_TRUE(b->final().status.ok());
  EXPECT_THAT(a->ids(), ElementsAreArray(FakeModel::Greedy({3, 4}, 12)));
  EXPECT_THAT(b->ids(), ElementsAreArray(FakeModel::Greedy({5}, 7)));
  EXPECT_EQ(backend_->device_samples, 12) << "only the sequence without log-probs samples on the device";
  EXPECT_EQ(backend_->first_samples, 1) << "its counts start at zero once";
}

TEST_F(SchedulerTest, DrainRefusesNewWorkAndAbortFinishesTheRest) {
  Make(2);
  auto running = Submit(Greedy({1}, 1000));
  sched_->Iterate();
  sched_->StopAccepting();
  auto sink = std::make_shared<TestSink>();
  EXPECT_EQ(sched_->Submit(Greedy({2}, 3), sink).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(sched_->active(), 1);
  sched_->AbortAll(absl::UnavailableError("grace period over"));
  RunUntilDone({running});
  EXPECT_EQ(running->final().status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(sched_->active(), 0);
  EXPECT_EQ(backend_->pool().used(), 0);
}

TEST_F(SchedulerTest, OutOfVocabularyPromptIsRefusedWithoutTouchingTheBatch) {
  Make(2);
  auto good = Submit(Greedy({1}, 5));
  auto bad = Submit(Greedy({1, 999}, 5));
  RunUntilDone({good, bad});
  EXPECT_TRUE(good->final().status.ok());
  EXPECT_EQ(bad->final().status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad->final().status.message()), HasSubstr("prompt token 1 is 999"));
}

TEST_F(SchedulerTest, FailedCreationLeavesNoSession) {
  Make(2);
  SequenceRequest r;
  r.kind = SequenceRequest::Kind::kCreateSession;
  r.session_id = "late";
  r.prompt = {1, 2, 3, 4};
  r.deadline = now_ - std::chrono::seconds(1);
  auto sink = Submit(std::move(r));
  RunUntilDone({sink});
  EXPECT_EQ(sink->final().status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(sched_->sessions().Find("late"), nullptr);
  EXPECT_EQ(backend_->pool().used(), 0);
}

TEST_F(SchedulerTest, ForkedSessionsContinueIndependently) {
  Make(4);
  CreateSession("a", {5, 6});
  ASSERT_TRUE(sched_->sessions().Fork("a", "b", now_).ok());
  auto ta = Submit(Greedy({7}, 4, "a"));
  auto tb = Submit(Greedy({8}, 4, "b"));
  RunUntilDone({ta, tb});
  EXPECT_THAT(ta->ids(), ElementsAreArray(FakeModel::Greedy({5, 6, 7}, 4)));
  EXPECT_THAT(tb->ids(), ElementsAreArray(FakeModel::Greedy({5, 6, 8}, 4)));
}

TEST_F(SchedulerTest, ThreadedLoopServesSubmissionsAndStopsCleanly) {
  Make(4);
  sched_->Start();
  std::vector<std::shared_ptr<TestSink>> sinks;
  for (int i = 0; i < 8; ++i) sinks.push_back(Submit(Greedy({static_cast<int32_t>(i + 1)}, 20)));
  for (auto& s : sinks) s->Wait();
  for (int i = 0; i < 8; ++i) EXPECT_THAT(sinks[i]->ids(), ElementsAreArray(FakeModel::Greedy({i + 1}, 20)));
  sched_.reset();  // Joins the loop.
}

}  // namespace
}  // namespace rwkv::server
