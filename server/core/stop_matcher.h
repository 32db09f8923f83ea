// Finds stop strings in streamed text and holds back what could still become one.
//
// Text goes in as it is decoded; what comes out is safe to stream: it contains no stop string and
// no tail that is the beginning of one. Once a stop string is found, the text before it is
// released and the rest (the stop string and everything after it) is dropped.
#ifndef RWKV_SERVER_CORE_STOP_MATCHER_H_
#define RWKV_SERVER_CORE_STOP_MATCHER_H_

#include <string>
#include <string_view>
#include <vector>

namespace rwkv::server {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  // Appends `text` and returns what may be streamed now. After a match, matched() is set and
  // further calls return nothing.
  std::string Push(std::string_view text);
  // Releases the held-back tail (end of the stream without a match).
  std::string Flush();
  bool matched() const { return matched_ >= 0; }
  const std::string& matched_stop() const { return stops_[matched_]; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  int matched_ = -1;
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_CORE_STOP_MATCHER_H_
