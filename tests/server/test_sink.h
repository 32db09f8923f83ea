// A SequenceSink that records what the scheduler emits, for tests.
#ifndef RWKV_TESTS_SERVER_TEST_SINK_H_
#define RWKV_TESTS_SERVER_TEST_SINK_H_

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "server/core/sequence.h"

namespace rwkv::server {

class TestSink final : public SequenceSink {
 public:
  void OnChunk(ChunkEvent c) override {
    std::lock_guard<std::mutex> lock(mu_);
    text_ += c.text;
    ids_.insert(ids_.end(), c.token_ids.begin(), c.token_ids.end());
    chunks_.push_back(std::move(c));
  }
  void OnFinish(FinalEvent f) override {
    std::lock_guard<std::mutex> lock(mu_);
    final_ = std::move(f);
    ++finishes_;
    cv_.notify_all();
  }
  bool Cancelled() const override { return cancelled; }
  bool Backlogged() const override { return backlogged; }

  bool finished() const {
    std::lock_guard<std::mutex> lock(mu_);
    return final_.has_value();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return final_.has_value(); });
  }
  FinalEvent final() const {
    std::lock_guard<std::mutex> lock(mu_);
    return *final_;
  }
  // The token ids so far. Read after finished() (or between Iterate() calls): no lock is held on
  // the returned reference.
  const std::vector<int32_t>& ids() const { return ids_; }
  const std::vector<ChunkEvent>& chunks() const { return chunks_; }
  std::string text() const {
    std::lock_guard<std::mutex> lock(mu_);
    return text_;
  }
  int finishes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return finishes_;
  }

  std::atomic<bool> cancelled{false};
  std::atomic<bool> backlogged{false};

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string text_;
  std::vector<int32_t> ids_;
  std::vector<ChunkEvent> chunks_;
  std::optional<FinalEvent> final_;
  int finishes_ = 0;
};

}  // namespace rwkv::server

#endif  // RWKV_TESTS_SERVER_TEST_SINK_H_
