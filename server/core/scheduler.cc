#include "server/core/scheduler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/core/policy.h"

namespace rwkv::server {
namespace {

// How far before its deadline a cancelled call still counts as one that hit the deadline.
constexpr std::chrono::milliseconds kDeadlineSlack{20};

double Seconds(TimePoint a, TimePoint b) { return std::chrono::duration<double>(b - a).count(); }

// Log-probability of `token` and the `top` most likely tokens under softmax(logits).
TokenLogprob LogprobsOf(std::span<const float> logits, int32_t token, int top) {
  const float mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float x : logits) sum += std::exp(static_cast<double>(x) - mx);
  const float lse = mx + static_cast<float>(std::log(sum));
  TokenLogprob out{token, logits[token] - lse, {}};
  if (top > 0) {
    std::vector<int32_t> ids(logits.size());
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
    const auto better = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    const int k = std::min<int>(top, static_cast<int>(ids.size()));
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), better);
    for (int i = 0; i < k; ++i) out.top.push_back({ids[i], logits[ids[i]] - lse});
  }
  return out;
}

}  // namespace

struct Scheduler::Seq {
  Seq(SequenceRequest r, std::shared_ptr<SequenceSink> s, const Tokenizer* tok)
      : req(std::move(r)), sink(std::move(s)), decoder(tok), stops(req.stop_strings) {}
  int64_t id = 0;
  SequenceRequest req;
  std::shared_ptr<SequenceSink> sink;
  Session* session = nullptr;     // Held busy while the sequence lives.
  std::vector<int32_t> feed;      // Prefill input: the session's pending token, then the prompt.
  size_t fed = 0;                 // Tokens of `feed` already through the model.
  bool decode = false;            // Prefill done; `next` is the token to feed.
  int32_t next = 0;
  int slot = -1;
  std::optional<Sampler> sampler;  // On the host; with device sampling only its RNG is used.
  bool device_sampling = false;     // The backend samples this sequence's tokens.
  IncrementalDecoder decoder;
  StopMatcher stops;
  int generated = 0;
  bool committed = false;
  TimePoint submitted, admitted, last_token;
  double first_token_seconds = 0;
  size_t cached = 0;             // Leading tokens of `feed` whose state came from the prefix cache.
  std::vector<size_t> captures;  // Lengths of `feed` whose states go to the prefix cache, ascending.
  size_t next_capture = 0;
  std::vector<int32_t> sampled;  // Tokens sampled, kept for a reply's cache entry.
  bool fork = false;             // Made by Fork: its prompt was computed by its parent.
  bool text_began = false;       // Text other than leading whitespace was streamed.
  // Images (req.images): `feed` position of prompt position 0, the prefix-cache key (feed with
  // each image's positions replaced by its digest; empty without images), each image's rows once
  // encoded (null while pending or when the cache covers it), the row fed at each position.
  size_t prompt_at = 0;
  std::vector<int32_t> key;
  std::vector<std::shared_ptr<const std::vector<float>>> image_rows;
  int images_pending = 0;
  std::vector<const float*> rows;
  PrefixCache::Hit pinned;  // The cache hit found at acceptance, held until admission.
  // Tokens of `feed` that are the session's or the start's pending token, not the prompt's.
  size_t pending_fed() const { return feed.size() - std::min(feed.size(), req.prompt.size()); }
  int remaining() const { return decode ? 1 : static_cast<int>(feed.size() - fed); }
};

Scheduler::Scheduler(std::unique_ptr<Backend> backend, const Tokenizer* tokenizer, SchedulerOptions options,
                     SchedulerObserver* observer, ClockFn clock)
    : backend_(std::move(backend)),
      tokenizer_(tokenizer),
      options_(options),
      observer_(observer),
      clock_(std::move(clock)),
      sessions_(&backend_->pool(), options.sessions, observer),
      cache_(options.prefix_cache) {}

Scheduler::~Scheduler() {
  StopAccepting();
  AbortAll(absl::UnavailableError("server is shutting down"));
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Without a loop thread (tests), finish what is left here.
  Iterate();
  sessions_.Shutdown(clock_());
  // The loop is gone: stop the image worker (it finishes an image in progress) while the task
  // queue its callback posts to is still alive.
  images_.reset();
}

absl::Status Scheduler::OpenStateDir(const std::string& dir, StateCodec codec) {
  return sessions_.OpenDisk(dir, std::move(codec), [this] { Wake(); }, clock_());
}

absl::Status Scheduler::SetImageWorker(std::unique_ptr<ImageWorker> worker) {
  if (worker != nullptr && worker->width() != backend_->config().n_embd) {
    return absl::InvalidArgumentError(absl::StrFormat("the vision encoder's rows have %d values; the model's embedding has %d",
                                                      worker->width(), backend_->config().n_embd));
  }
  image_tokens_ = worker != nullptr ? worker->tokens() : 0;
  images_ = std::move(worker);
  return absl::OkStatus();
}

void Scheduler::Start() { thread_ = std::thread([this] { Loop(); }); }

absl::Status Scheduler::Submit(SequenceRequest request, std::shared_ptr<SequenceSink> sink) {
  auto seq = std::make_unique<Seq>(std::move(request), std::move(sink), tokenizer_);
  seq->submitted = clock_();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!accepting_) return absl::UnavailableError("server is draining; retry on another replica");
    if (queued_.load() >= options_.queue_length) {
      return absl::ResourceExhaustedError(
          absl::StrFormat("admission queue full (queue_length %d); retry later", options_.queue_length));
    }
    ++queued_;
    ++active_;
    incoming_.push_back(std::move(seq));
    wake_ = true;
  }
  cv_.notify_one();
  return absl::OkStatus();
}

void Scheduler::Post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(task));
    wake_ = true;
  }
  cv_.notify_one();
}

void Scheduler::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake_ = true;
  }
  cv_.notify_one();
}

void Scheduler::StopAccepting() {
  std::lock_guard<std::mutex> lock(mu_);
  accepting_ = false;
}

void Scheduler::AbortAll(absl::Status status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    abort_ = std::move(status);
    wake_ = true;
  }
  cv_.notify_one();
}

void Scheduler::Loop() {
  while (true) {
    const bool stepped = Iterate();
    std::unique_lock<std::mutex> lock(mu_);
    if (stop_ && incoming_.empty() && tasks_.empty() && waiting_.empty() && running_.empty() && encoding_.empty()) return;
    if (!stepped) {
      // Idle, or every running sequence waits for its reader: sleep until woken. The timeout
      // bounds how late a deadline or an idle TTL is noticed.
      cv_.wait_for(lock, std::chrono::milliseconds(20), [&] { return wake_ || stop_; });
    }
    wake_ = false;
  }
}

bool Scheduler::Iterate() {
  std::vector<std::unique_ptr<Seq>> incoming;
  std::vector<std::function<void()>> tasks;
  std::optional<absl::Status> abort;
  {
    std::lock_guard<std::mutex> lock(mu_);
    incoming.swap(incoming_);
    tasks.swap(tasks_);
    abort.swap(abort_);
  }
  for (auto& task : tasks) task();
  for (auto& seq : incoming) Accept(std::move(seq));
  TimePoint now = clock_();
  if (abort) {
    for (auto& s : encoding_) {
      StopWaitingForImages(*s);
      Finish(*s, Failed(*abort), now);
      --queued_;
    }
    encoding_.clear();
    while (!waiting_.empty()) {
      Finish(*waiting_.front(), Failed(*abort), now);
      waiting_.pop_front();
      --queued_;
    }
    for (auto& s : running_) Finish(*s, Failed(*abort), now);
    running_.clear();
  }
  Reap(now);
  if (now >= next_expiry_check_) {
    sessions_.ExpireIdle(now);
    next_expiry_check_ = now + std::chrono::seconds(1);
  }
  sessions_.Maintain(now);

  PolicyInput in;
  in.free_slots = sessions_.AvailableSlots();
  in.token_budget = options_.token_budget;
  in.max_running = options_.max_running;
  for (const auto& s : running_) {
    in.running.push_back({s->id, s->remaining(), s->decode, s->sink->Backlogged()});
  }
  for (const auto& s : waiting_) in.waiting.push_back({s->id, s->remaining()});
  const StepPlan plan = PlanStep(in);

  for (int i = 0; i < plan.admit; ++i) {
    std::unique_ptr<Seq> seq = std::move(waiting_.front());
    waiting_.pop_front();
    --queued_;
    Seq* raw = seq.get();
    running_.push_back(std::move(seq));
    Admit(*raw, now);
  }
  std::unordered_map<int64_t, Seq*> by_id;
  for (auto& s : running_) by_id[s->id] = s.get();
  std::vector<std::pair<Seq*, int>> work;
  for (const Work& w : plan.work) {
    auto it = by_id.find(w.id);
    // A prefix-cache hit at admission leaves fewer tokens than were planned.
    if (it != by_id.end() && it->second->slot >= 0) work.emplace_back(it->second, std::min(w.tokens, it->second->remaining()));
  }
  if (!work.empty()) RunStep(work, now);
  // Sequences that finished during admission or the step leave the running set.
  std::erase_if(running_, [](const std::unique_ptr<Seq>& s) { return s->sink == nullptr; });
  Report();
  return !work.empty();
}

void Scheduler::Accept(std::unique_ptr<Seq> seq) {
  const TimePoint now = clock_();
  seq->id = next_id_++;
  SequenceRequest& r = seq->req;
  // The service validated the prompt; checked again here because one bad token would fail the
  // whole batch's engine step.
  for (size_t i = 0; i < r.prompt.size(); ++i) {
    if (r.prompt[i] < 0 || r.prompt[i] >= backend_->config().vocab) {
      --queued_;
      return Finish(*seq,
                    Failed(absl::InvalidArgumentError(absl::StrFormat("prompt token %d is %d, outside the vocabulary [0, %d)",
                                                                      i, r.prompt[i], backend_->config().vocab))),
                    now);
    }
  }
  if (r.kind == SequenceRequest::Kind::kCreateSession) {
    absl::StatusOr<Session*> s = sessions_.Create(r.session_id, now);
    if (!s.ok()) {
      --queued_;
      return Finish(*seq, Failed(s.status()), now);
    }
    seq->session = *s;
    seq->session->busy = true;
    r.session_id = seq->session->id;
    if (r.start != nullptr) sessions_.SetStart(*seq->session, *r.start);  // Checked out like an import.
    // Every prompt token but the last goes through the model (after the start's pending token);
    // the last stays pending, so that the first turn can start generating from it.
    if (!r.prompt.empty()) {
      if (seq->session->pending) seq->feed.push_back(*seq->session->pending);
      seq->prompt_at = seq->feed.size();
      seq->feed.insert(seq->feed.end(), r.prompt.begin(), r.prompt.end() - 1);
    }
  } else {
    if (!r.session_id.empty()) {
      absl::StatusOr<Session*> s = sessions_.Get(r.session_id);
      absl::Status st = s.status();
      if (st.ok() && (*s)->busy) {
        st = absl::FailedPreconditionError(
            absl::StrCat("session ", r.session_id, " is already running a turn (one turn at a time per session)"));
      }
      if (!st.ok()) {
        --queued_;
        return Finish(*seq, Failed(st), now);
      }
      seq->session = *s;
      seq->session->busy = true;
      if (seq->session->pending) seq->feed.push_back(*seq->session->pending);
    } else if (r.start != nullptr && r.start->pending) {
      seq->feed.push_back(*r.start->pending);
    }
    seq->prompt_at = seq->feed.size();
    seq->feed.insert(seq->feed.end(), r.prompt.begin(), r.prompt.end());
    if (seq->feed.empty()) {
      --queued_;
      return Finish(*seq,
                    Failed(absl::InvalidArgumentError(
                        r.session_id.empty()
                            ? "prompt is empty: a request without a session needs at least one prompt token"
                            : "prompt is empty and the session has no pending token to continue from")),
                    now);
    }
    if (!r.forks.empty() && !r.session_id.empty()) {
      --queued_;
      return Finish(*seq, Failed(absl::InvalidArgumentError("more than one continuation (n > 1) needs a stateless request")),
                    now);
    }
    seq->sampler.emplace(r.sampling, backend_->config().vocab);
    // Log-probabilities need the logits on the host, and so do forks (every continuation samples
    // its first token from the prompt's logits); everything else samples where they are.
    seq->device_sampling = backend_->samples_on_device() && !r.want_logprobs && r.forks.empty();
  }
  if (!r.images.empty()) return Enqueue(std::move(seq));
  waiting_.push_back(std::move(seq));
}

void Scheduler::StopWaitingForImages(const Seq& seq) {
  for (const PromptImage& im : seq.req.images) {
    auto job = image_jobs_.find(im.digest);
    if (job == image_jobs_.end()) continue;
    std::erase_if(job->second.waiters, [&](const auto& w) { return w.first == seq.id; });
    if (!job->second.waiters.empty()) continue;
    job->second.cancelled->store(true);
    image_jobs_.erase(job);
  }
}

std::span<const int32_t> Scheduler::KeyOf(const Seq& s) { return s.key.empty() ? s.feed : s.key; }

void Scheduler::Enqueue(std::unique_ptr<Seq> seq) {
  const TimePoint now = clock_();
  const SequenceRequest& r = seq->req;
  const int T = image_tokens();
  // The edges checked the images against the prompt; checked again here because a wrong offset
  // would feed a placeholder's embedding or a row out of bounds.
  const auto refuse = [&](std::string why) {
    --queued_;
    Finish(*seq, Failed(absl::InvalidArgumentError(std::move(why))), now);
  };
  if (T == 0) return refuse("images: this server's model takes no images (it has no VisualRWKV vision encoder)");
  int end = 0;
  for (size_t j = 0; j < r.images.size(); ++j) {
    const PromptImage& im = r.images[j];
    if (im.pixels == nullptr || im.offset < end || static_cast<size_t>(im.offset) + T > r.prompt.size()) {
      return refuse(absl::StrFormat("images[%d] at prompt position %d does not fit the prompt of %d tokens (%d per image)",
                                    j, im.offset, r.prompt.size(), T));
    }
    end = im.offset + T;
  }
  if (r.kind == SequenceRequest::Kind::kCreateSession && static_cast<size_t>(end) == r.prompt.size()) {
    // The prompt's last token stays pending (a token id): it cannot be an image's row.
    return refuse("the prompt of a new session ends with an image; it needs text after the image");
  }
  Seq& s = *seq;
  s.image_rows.assign(r.images.size(), nullptr);
  size_t covered = 0;
  const bool cached = cache_.enabled() && s.session == nullptr && r.kind == SequenceRequest::Kind::kGenerate;
  if (cached) {
    s.key = s.feed;
    for (const PromptImage& im : r.images) {
      const std::vector<int32_t> k = ImageKey(im.digest, T);
      std::copy(k.begin(), k.end(), s.key.begin() + static_cast<std::ptrdiff_t>(s.prompt_at + im.offset));
    }
    // Pinned until admission, so that an eviction in between cannot take the state of an image
    // whose rows are not computed. The last token is always computed (as in Admit).
    s.pinned = cache_.Lookup(r.cache_scope, s.key, s.feed.size() - 1);
    covered = s.pinned.length;
  }
  for (size_t j = 0; j < r.images.size(); ++j) {
    const PromptImage& im = r.images[j];
    if (s.prompt_at + im.offset + T <= covered) {
      if (observer_) observer_->OnImageCached();
      continue;
    }
    ++s.images_pending;
    auto [job, fresh] = image_jobs_.try_emplace(im.digest);
    job->second.waiters.emplace_back(s.id, j);
    if (!fresh) continue;  // Already being encoded for another request (or earlier in this one).
    images_->Encode(
        im.pixels,
        [this, digest = im.digest](absl::StatusOr<std::vector<float>> rows, double seconds) {
          Post([this, digest, rows = std::move(rows), seconds]() mutable {
            OnImageRows(digest, std::move(rows), seconds);
          });
        },
        job->second.cancelled);
  }
  if (s.images_pending > 0) {
    encoding_.push_back(std::move(seq));
  } else {
    waiting_.push_back(std::move(seq));
  }
}

void Scheduler::OnImageRows(const ImageDigest& digest, absl::StatusOr<std::vector<float>> rows, double seconds) {
  if (observer_) observer_->OnImageEncoded(seconds, rows.ok());
  auto job = image_jobs_.find(digest);
  if (job == image_jobs_.end()) return;  // Its waiters left while it was being encoded.
  const std::vector<std::pair<int64_t, size_t>> waiters = std::move(job->second.waiters);
  image_jobs_.erase(job);
  const int T = image_tokens();
  const int C = backend_->config().n_embd;
  if (rows.ok() && rows->size() != static_cast<size_t>(T) * C) {
    rows = absl::InternalError(absl::StrFormat("the vision encoder made %d values for an image; expected %d x %d",
                                               rows->size(), T, C));
  }
  std::shared_ptr<const std::vector<float>> shared;
  if (rows.ok()) shared = std::make_shared<const std::vector<float>>(std::move(*rows));
  const TimePoint now = clock_();
  for (const auto& [id, j] : waiters) {
    auto it = std::find_if(encoding_.begin(), encoding_.end(), [id = id](const auto& s) { return s->id == id; });
    if (it == encoding_.end()) continue;  // Finished meanwhile (cancelled, deadline, another image failed).
    Seq& s = **it;
    if (!rows.ok()) {
      StopWaitingForImages(s);
      Finish(s, Failed(absl::Status(rows.status().code(), absl::StrFormat("images[%d]: %s", j, rows.status().message()))), now);
      encoding_.erase(it);
      --queued_;
      continue;
    }
    s.image_rows[j] = shared;
    if (--s.images_pending > 0) continue;
    s.rows.assign(s.feed.size(), nullptr);
    for (size_t i = 0; i < s.req.images.size(); ++i) {
      if (s.image_rows[i] == nullptr) continue;
      for (int t = 0; t < T; ++t) {
        const size_t p = s.prompt_at + s.req.images[i].offset + t;
        if (p < s.rows.size()) s.rows[p] = s.image_rows[i]->data() + static_cast<size_t>(t) * C;
      }
    }
    waiting_.push_back(std::move(*it));
    encoding_.erase(it);
  }
}

void Scheduler::Reap(TimePoint now) {
  auto check = [&](Seq& s) -> bool {
    // gRPC cancels a call when its deadline passes, so a cancelled call at (or a hair before, as
    // the two clocks round) its deadline is a deadline, not a client's cancel.
    const bool cancelled = s.sink->Cancelled();
    const bool late = s.req.deadline && now + (cancelled ? kDeadlineSlack : std::chrono::milliseconds(0)) >= *s.req.deadline;
    if (late) {
      Finish(s, Failed(absl::DeadlineExceededError(absl::StrFormat(
                    "deadline exceeded after %.3f s (%d tokens generated)", Seconds(s.submitted, now), s.generated))),
             now);
      return true;
    }
    if (cancelled) {
      Finish(s, Failed(absl::CancelledError("the client cancelled the request")), now);
      return true;
    }
    return false;
  };
  std::erase_if(encoding_, [&](const std::unique_ptr<Seq>& s) {
    if (!check(*s)) return false;
    StopWaitingForImages(*s);
    --queued_;
    return true;
  });
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (check(**it)) {
      --queued_;
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  std::erase_if(running_, [&](const std::unique_ptr<Seq>& s) { return check(*s); });
}

void Scheduler::Admit(Seq& seq, TimePoint now) {
  seq.admitted = now;
  absl::StatusOr<int> slot = seq.session ? sessions_.CheckOut(*seq.session) : sessions_.AcquireSlot();
  if (!slot.ok()) return Finish(seq, Failed(slot.status()), now);
  seq.slot = *slot;
  if (seq.session == nullptr) {
    const std::vector<float>* from = seq.req.start != nullptr ? &seq.req.start->state : nullptr;
    std::shared_ptr<const std::vector<float>> held;  // A cache hit's state, alive until the slot is written.
    if (cache_.enabled() && seq.req.kind == SequenceRequest::Kind::kGenerate && !seq.decode) {
      // The last prompt token is always computed: its logits give the first sample.
      PrefixCache::Hit hit = cache_.Lookup(seq.req.cache_scope, KeyOf(seq), seq.feed.size() - 1);
      // An image request keeps what it found at acceptance: the images it covers were not encoded.
      if (seq.pinned.length > hit.length) hit = std::move(seq.pinned);
      seq.pinned = {};
      if (hit.length > 0) {
        from = hit.state.get();
        held = std::move(hit.state);
        seq.fed = seq.cached = hit.length;
      }
      const size_t offset = seq.pending_fed();
      for (int p : seq.req.cache_points) seq.captures.push_back(offset + static_cast<size_t>(p));
      if (const int every = cache_.options().interval; every > 0) {
        for (size_t p = every; p <= seq.feed.size(); p += every) seq.captures.push_back(p);
      }
      // The state after each image (the next question on it starts there), and none inside one:
      // a hit then covers whole images only.
      const size_t T = static_cast<size_t>(image_tokens());
      for (const PromptImage& im : seq.req.images) seq.captures.push_back(seq.prompt_at + im.offset + T);
      std::erase_if(seq.captures, [&](size_t p) {
        for (const PromptImage& im : seq.req.images) {
          if (p > seq.prompt_at + im.offset && p < seq.prompt_at + im.offset + T) return true;
        }
        return false;
      });
      std::erase_if(seq.captures, [&](size_t p) { return p <= seq.fed || p > seq.feed.size(); });
      std::sort(seq.captures.begin(), seq.captures.end());
      seq.captures.erase(std::unique(seq.captures.begin(), seq.captures.end()), seq.captures.end());
      if (observer_) observer_->OnPrefixLookup(static_cast<int>(seq.feed.size()), static_cast<int>(seq.cached));
    }
    if (from != nullptr) {
      if (absl::Status st = backend_->pool().Write(seq.slot, *from); !st.ok()) return Finish(seq, Failed(st), now);
    }
  }
  // Every image position still to feed has its row (a cache hit covers whole images only).
  for (size_t j = 0; j < seq.req.images.size(); ++j) {
    const size_t end = seq.prompt_at + seq.req.images[j].offset + static_cast<size_t>(image_tokens());
    if (end > seq.fed && (j >= seq.image_rows.size() || seq.image_rows[j] == nullptr)) {
      return Finish(seq, Failed(absl::InternalError(absl::StrFormat("images[%d] has no rows at admission", j))), now);
    }
  }
  if (observer_) observer_->OnAdmit(Seconds(seq.submitted, now), seq.fork ? 0 : static_cast<int>(seq.req.prompt.size()));
  if (seq.feed.empty()) {  // A session created without tokens to compute.
    Commit(seq, seq.req.prompt.empty() ? seq.session->pending : std::optional<int32_t>(seq.req.prompt.back()), now);
    Finish(seq, FinalEvent{}, now);
  }
}

void Scheduler::RunStep(std::vector<std::pair<Seq*, int>>& work, TimePoint now) {
  batch_.clear();
  device_.clear();
  int tokens = 0;
  bool any_device = false;
  for (auto& [s, n] : work) {
    // A prefill chunk ends where a state is to be cached.
    if (!s->decode && s->next_capture < s->captures.size()) {
      n = std::min<int>(n, static_cast<int>(s->captures[s->next_capture] - s->fed));
    }
    BatchEntry e;
    e.slot = s->slot;
    e.tokens = s->decode ? std::span<const int32_t>(&s->next, 1) : std::span<const int32_t>(s->feed).subspan(s->fed, n);
    if (!s->decode && !s->rows.empty()) e.rows = std::span<const float* const>(s->rows).subspan(s->fed, n);
    batch_.push_back(e);
    tokens += n;
    // A token is sampled for this entry when its prompt is through after this call.
    const bool samples = s->req.kind == SequenceRequest::Kind::kGenerate && (s->decode || s->fed + n == s->feed.size());
    DeviceSample d;
    if (samples && s->device_sampling) {
      d.sample = true;
      d.params = &s->req.sampling;
      d.first = s->generated == 0;
      d.uniform = s->sampler->Uniform();
      any_device = true;
    }
    device_.push_back(d);
  }
  const TimePoint t0 = Clock::now();
  absl::Status st;
  if (any_device) {
    sampled_.assign(batch_.size(), -1);
    st = backend_->ForwardSample(batch_, device_, sampled_, &logits_);
  } else {
    st = backend_->Forward(batch_, &logits_);
  }
  const TimePoint t1 = Clock::now();
  if (observer_) observer_->OnStep(static_cast<int>(work.size()), tokens, Seconds(t0, t1));
  now = clock_();
  if (!st.ok()) {
    if (const absl::Status health = backend_->Healthy(); !health.ok() && observer_) observer_->OnBackendBroken(health);
    const absl::Status failed(st.code(), absl::StrCat("engine step failed: ", st.message()));
    for (const auto& [s, n] : work) Finish(*s, Failed(failed), now);
    return;
  }
  for (size_t e = 0; e < work.size(); ++e) {
    auto [s, n] = work[e];
    if (!s->decode) {
      s->fed += n;
      if (s->next_capture < s->captures.size() && s->fed == s->captures[s->next_capture]) {
        Capture(*s, s->fed);
        ++s->next_capture;
      }
      if (s->fed < s->feed.size()) continue;
      if (s->req.kind == SequenceRequest::Kind::kCreateSession) {
        Commit(*s, s->req.prompt.back(), now);
        Finish(*s, FinalEvent{}, now);
        continue;
      }
      s->decode = true;
    }
    if (device_[e].sample) {
      OnToken(*s, sampled_[e], {}, now);
    } else {
      const std::span<const float> logits = logits_.Last(static_cast<int>(e));
      if (!s->req.forks.empty()) Fork(*s, logits, now);
      OnToken(*s, s->sampler->Sample(logits), logits, now);
    }
  }
}

void Scheduler::OnToken(Seq& s, int32_t token, std::span<const float> logits, TimePoint now) {
  const SequenceRequest& r = s.req;
  ++s.generated;
  if (r.cache_reply) s.sampled.push_back(token);
  s.sink->OnGenerated();
  const bool first = s.generated == 1;
  if (first) s.first_token_seconds = Seconds(s.admitted, now);
  if (observer_) observer_->OnToken(first, first ? s.first_token_seconds : Seconds(s.last_token, now));
  s.last_token = now;

  ChunkEvent chunk;
  if (r.want_token_ids) chunk.token_ids.push_back(token);
  if (r.want_logprobs && !logits.empty()) chunk.logprobs.push_back(LogprobsOf(logits, token, r.top_logprobs));
  FinalEvent final;
  const bool stop_token = std::find(r.stop_tokens.begin(), r.stop_tokens.end(), token) != r.stop_tokens.end();
  if (!stop_token) chunk.text = s.stops.Push(s.decoder.Push(token));
  if (s.stops.matched()) {
    final.reason = FinishReason::kStop;
    final.matched_stop = s.stops.matched_stop();
  } else if (stop_token || s.generated >= r.max_tokens) {
    // The end of the stream: release what the decoder and the stop matcher held back.
    chunk.text += s.stops.Push(s.decoder.Flush());
    if (s.stops.matched()) {
      final.reason = FinishReason::kStop;
      final.matched_stop = s.stops.matched_stop();
    } else {
      chunk.text += s.stops.Flush();
      final.reason = stop_token ? FinishReason::kStop : FinishReason::kLength;
      if (stop_token) final.matched_stop = absl::StrCat(token);
    }
  }
  if (r.trim_reply_start && !s.text_began) {
    const size_t first = chunk.text.find_first_not_of(" \t\r\n");
    chunk.text.erase(0, first == std::string::npos ? chunk.text.size() : first);
    s.text_began = !chunk.text.empty();
  }
  if (!chunk.text.empty() || !chunk.token_ids.empty() || !chunk.logprobs.empty()) s.sink->OnChunk(std::move(chunk));
  if (final.reason == FinishReason::kNone) {
    s.next = token;
    return;
  }
  // The slot now holds the state after the prompt and every sampled token but this last one:
  // the reply as the client will resend it.
  if (r.cache_reply && cache_.enabled() && s.session == nullptr && s.slot >= 0) {
    Capture(s, s.feed.size(), std::span<const int32_t>(s.sampled).first(s.sampled.size() - 1));
  }
  Commit(s, token, now);
  Finish(s, std::move(final), now);
}

void Scheduler::Capture(Seq& s, size_t length, std::span<const int32_t> extra) {
  const std::span<const int32_t> feed_key = KeyOf(s);
  std::vector<int32_t> key(feed_key.begin(), feed_key.begin() + static_cast<std::ptrdiff_t>(length));
  key.insert(key.end(), extra.begin(), extra.end());
  if (key.empty() || cache_.Contains(s.req.cache_scope, key)) return;
  std::vector<float> state(static_cast<size_t>(backend_->pool().slot_floats()));
  if (!backend_->pool().Read(s.slot, state).ok()) return;  // Only a cache entry lost; the step's own error comes first.
  cache_.Insert(s.req.cache_scope, key, std::move(state));
}

void Scheduler::Fork(Seq& parent, std::span<const float> logits, TimePoint now) {
  std::vector<std::shared_ptr<SequenceSink>> forks = std::move(parent.req.forks);
  parent.req.forks.clear();
  auto start = std::make_shared<ExportedState>();
  start->state.resize(static_cast<size_t>(backend_->pool().slot_floats()));
  const absl::Status read = backend_->pool().Read(parent.slot, start->state);
  for (size_t i = 0; i < forks.size(); ++i) {
    SequenceRequest r = parent.req;
    r.sampling.seed = parent.req.sampling.seed + i + 1;
    r.start = start;
    auto c = std::make_unique<Seq>(std::move(r), std::move(forks[i]), tokenizer_);
    c->id = next_id_++;
    c->fork = true;
    c->feed = parent.feed;
    c->key = parent.key;  // Its reply's cache entry is keyed as the parent's prompt (images by digest).
    c->prompt_at = parent.prompt_at;
    c->fed = c->feed.size();
    c->cached = parent.cached;
    c->decode = true;
    c->submitted = parent.submitted;
    c->admitted = parent.admitted;
    c->sampler.emplace(c->req.sampling, backend_->config().vocab);
    c->device_sampling = backend_->samples_on_device() && !c->req.want_logprobs;
    ++active_;
    if (!read.ok()) {
      Finish(*c, Failed(read), now);
      continue;
    }
    OnToken(*c, c->sampler->Sample(logits), logits, now);
    if (c->sink == nullptr) continue;  // Done at its first token.
    ++queued_;
    waiting_.push_front(std::move(c));  // Ahead of new prompts: its prompt is already paid for.
  }
}

void Scheduler::Commit(Seq& s, std::optional<int32_t> pending, TimePoint now) {
  if (s.session != nullptr) {
    sessions_.Commit(*s.session, s.slot, pending, static_cast<int64_t>(s.req.prompt.size()) + s.generated, now);
    s.slot = -1;
  }
  s.committed = true;
}

void Scheduler::Finish(Seq& s, FinalEvent final, TimePoint now) {
  if (s.slot >= 0) {
    backend_->pool().Release(s.slot).IgnoreError();
    s.slot = -1;
  }
  Session* durable = nullptr;  // A committed session whose Final waits for its write.
  if (s.session != nullptr) {
    if (s.committed) {
      final.session_tokens = s.session->token_count;
      if (sessions_.persists_each_commit()) durable = s.session;
    } else {
      const std::string id = s.session->id;
      sessions_.Abandon(*s.session, now);
      // A session whose creation failed (deadline, shutdown, engine error) does not exist.
      if (s.req.kind == SequenceRequest::Kind::kCreateSession) sessions_.Delete(id).IgnoreError();
    }
    s.session = nullptr;
  }
  final.prompt_tokens = static_cast<int>(s.req.prompt.size());
  final.cached_prompt_tokens = static_cast<int>(s.cached - std::min(s.cached, s.pending_fed()));
  // Forks not made yet (the prompt failed or was cancelled) end with it.
  for (std::shared_ptr<SequenceSink>& f : s.req.forks) {
    f->OnFinish(Failed(final.status.ok() ? absl::InternalError("the prompt ended before its continuations began")
                                         : final.status));
  }
  s.req.forks.clear();
  final.generated_tokens = s.generated;
  if (s.admitted != TimePoint{}) final.queue_seconds = Seconds(s.submitted, s.admitted);
  final.first_token_seconds = s.first_token_seconds;
  final.total_seconds = Seconds(s.submitted, now);
  if (observer_) observer_->OnFinish(final);
  auto deliver = [this, sink = std::move(s.sink), final = std::move(final)]() mutable {
    sink->OnFinish(std::move(final));
    --active_;
  };
  s.sink = nullptr;  // Marks the sequence finished.
  if (durable != nullptr) {
    sessions_.PersistNow(*durable, now, std::move(deliver));  // --persist-interval 0.
  } else {
    deliver();
  }
}

Occupancy Scheduler::occupancy() {
  Occupancy o;
  o.running = static_cast<int>(running_.size());
  o.waiting = static_cast<int>(waiting_.size());
  o.encoding = static_cast<int>(encoding_.size());
  o.slots_used = backend_->pool().used();
  o.slots_total = backend_->pool().capacity();
  o.sessions_device = sessions_.device_sessions();
  o.sessions_disk = sessions_.disk_sessions();
  o.sessions_host = sessions_.count() - sessions_.device_sessions() - sessions_.disk_sessions();
  o.disk_bytes = sessions_.disk_bytes();
  o.prefix_cache_bytes = cache_.bytes();
  o.prefix_cache_entries = cache_.entries();
  o.prefix_cache_evictions = cache_.evictions();
  return o;
}

void Scheduler::Report() {
  if (observer_) observer_->OnOccupancy(occupancy());
}

}  // namespace rwkv::server
