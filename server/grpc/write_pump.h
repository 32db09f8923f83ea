// Threads that start the gRPC edge's stream writes, so that the scheduler's thread, which makes
// every stream's chunks, never calls into gRPC core. A StartWrite runs the transport's framing and
// often the socket write itself on the calling thread (~40 us a call measured in the gRPC tests on
// a 2-core VM); at a batch of 256 streams that is longer than a GPU decode step.
#ifndef RWKV_SERVER_GRPC_WRITE_PUMP_H_
#define RWKV_SERVER_GRPC_WRITE_PUMP_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace rwkv::server {

class WritePump {
 public:
  explicit WritePump(int threads);
  // Runs every task still queued, then joins the threads.
  ~WritePump();
  WritePump(const WritePump&) = delete;
  WritePump& operator=(const WritePump&) = delete;

  // Any thread. Tasks run on the pump's threads, in the order posted when there is one thread.
  void Post(std::function<void()> task);

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  int waiting_ = 0;  // Threads asleep on cv_.
  std::vector<std::thread> threads_;
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_GRPC_WRITE_PUMP_H_
