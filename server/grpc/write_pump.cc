#include "server/grpc/write_pump.h"

#include <algorithm>

namespace rwkv::server {

WritePump::WritePump(int threads) {
  for (int i = 0; i < std::max(1, threads); ++i) threads_.emplace_back([this] { Loop(); });
}

WritePump::~WritePump() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void WritePump::Post(std::function<void()> task) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(task));
    // A thread that is not waiting looks at the queue before it waits again: a wake-up (a system
    // call) only when every thread sleeps, about once a step rather than once a chunk.
    wake = waiting_ == static_cast<int>(threads_.size());
  }
  if (wake) cv_.notify_one();
}

void WritePump::Loop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      ++waiting_;
      cv_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
      --waiting_;
      if (tasks_.empty()) return;  // Stopping, and nothing left to run.
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace rwkv::server
