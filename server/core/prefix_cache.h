// PrefixCache: recurrent states of token prefixes, so that a stateless request whose prompt
// begins with a prefix seen before computes only the rest (a chat client resends its whole
// history every turn; a system prompt is shared by every conversation).
//
// A radix tree keyed by token ids, one per scope (the start state a prompt runs from: states of
// different starts never mix). An entry is the whole state after its prefix, held in host RAM.
// Lookup finds the longest cached prefix; Insert stores one; the least recently used entries go
// when the bytes held (states and keys) exceed the budget.
//
// An RNN state after a prefix depends on nothing else, and the CPU backend computes it bitwise
// the same whatever the chunking (tests/engine/model_test.cc), so a hit changes no output.
//
// Thread safety: none; the scheduler's loop thread owns it.
#ifndef RWKV_SERVER_CORE_PREFIX_CACHE_H_
#define RWKV_SERVER_CORE_PREFIX_CACHE_H_

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rwkv::server {

struct PrefixCacheOptions {
  int64_t max_bytes = 0;  // 0 = off.
  int interval = 256;     // Long prompts are also cached every `interval` tokens; 0 = not.
};

class PrefixCache {
 public:
  explicit PrefixCache(PrefixCacheOptions options);
  ~PrefixCache();
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  bool enabled() const { return options_.max_bytes > 0; }
  const PrefixCacheOptions& options() const { return options_; }

  struct Hit {
    size_t length = 0;                     // Tokens the state covers; 0 = no hit.
    // The entry's state; holding it keeps it alive after the entry is evicted or replaced.
    std::shared_ptr<const std::vector<float>> state;
  };
  // The longest cached prefix of `tokens` no longer than `max_length`; a hit becomes the most
  // recently used entry.
  Hit Lookup(std::string_view scope, std::span<const int32_t> tokens, size_t max_length);
  // Whether exactly this prefix is cached (a caller skips reading a state it would not store).
  bool Contains(std::string_view scope, std::span<const int32_t> tokens) const;
  // Stores the state after `tokens` (not empty), replacing an equal key, then evicts the least
  // recently used entries beyond the budget. An entry bigger than the whole budget is not stored.
  void Insert(std::string_view scope, std::span<const int32_t> tokens, std::vector<float> state);

  int64_t bytes() const { return bytes_; }
  int entries() const { return static_cast<int>(lru_.size()); }
  int64_t evictions() const { return evictions_; }

 private:
  struct Node;
  Node* Root(std::string_view scope, bool create);
  // The node whose path is exactly `tokens`, or null.
  Node* Find(Node* root, std::span<const int32_t> tokens) const;
  void Evict(Node* n);
  // Takes `n` out of the tree if it holds nothing; merges a lone child into it.
  void Prune(Node* n);
  static int64_t EntryBytes(const Node& n);

  PrefixCacheOptions options_;
  std::map<std::string, std::unique_ptr<Node>, std::less<>> roots_;
  std::list<Node*> lru_;  // Entries, most recent first.
  int64_t bytes_ = 0;
  int64_t evictions_ = 0;
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_CORE_PREFIX_CACHE_H_
