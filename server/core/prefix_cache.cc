#include "server/core/prefix_cache.h"

#include <algorithm>

namespace rwkv::server {

struct PrefixCache::Node {
  std::vector<int32_t> label;  // The tokens on the edge from the parent.
  Node* parent = nullptr;
  std::map<int32_t, std::unique_ptr<Node>> children;  // By the first token of their label.
  bool has_entry = false;
  std::shared_ptr<const std::vector<float>> state;  // Shared with hits that pin it (Hit::state).
  std::list<Node*>::iterator lru;
};

PrefixCache::PrefixCache(PrefixCacheOptions options) : options_(options) {}
PrefixCache::~PrefixCache() = default;

int64_t PrefixCache::EntryBytes(const Node& n) {
  return n.state == nullptr ? 0 : static_cast<int64_t>(n.state->size() * sizeof(float));
}

PrefixCache::Node* PrefixCache::Root(std::string_view scope, bool create) {
  auto it = roots_.find(scope);
  if (it != roots_.end()) return it->second.get();
  if (!create) return nullptr;
  return roots_.emplace(std::string(scope), std::make_unique<Node>()).first->second.get();
}

PrefixCache::Node* PrefixCache::Find(Node* node, std::span<const int32_t> tokens) const {
  size_t pos = 0;
  while (node != nullptr && pos < tokens.size()) {
    auto it = node->children.find(tokens[pos]);
    if (it == node->children.end()) return nullptr;
    Node* child = it->second.get();
    const std::vector<int32_t>& l = child->label;
    if (tokens.size() - pos < l.size() || !std::equal(l.begin(), l.end(), tokens.begin() + pos)) return nullptr;
    pos += l.size();
    node = child;
  }
  return node;
}

PrefixCache::Hit PrefixCache::Lookup(std::string_view scope, std::span<const int32_t> tokens, size_t max_length) {
  Hit hit;
  Node* node = Root(scope, false);
  tokens = tokens.first(std::min(tokens.size(), max_length));
  size_t pos = 0;
  Node* best = nullptr;
  while (node != nullptr) {
    if (node->has_entry) {
      best = node;
      hit.length = pos;
    }
    if (pos == tokens.size()) break;
    auto it = node->children.find(tokens[pos]);
    if (it == node->children.end()) break;
    Node* child = it->second.get();
    const std::vector<int32_t>& l = child->label;
    if (tokens.size() - pos < l.size() || !std::equal(l.begin(), l.end(), tokens.begin() + pos)) break;
    pos += l.size();
    node = child;
  }
  if (best == nullptr) return {};
  lru_.splice(lru_.begin(), lru_, best->lru);
  hit.state = best->state;
  return hit;
}

bool PrefixCache::Contains(std::string_view scope, std::span<const int32_t> tokens) const {
  auto it = roots_.find(scope);
  if (it == roots_.end()) return false;
  const Node* n = Find(it->second.get(), tokens);
  return n != nullptr && n->has_entry;
}

void PrefixCache::Insert(std::string_view scope, std::span<const int32_t> tokens, std::vector<float> state) {
  const int64_t cost = static_cast<int64_t>(state.size() * sizeof(float) + tokens.size() * sizeof(int32_t));
  if (!enabled() || tokens.empty() || cost > options_.max_bytes) return;
  Node* node = Root(scope, true);
  size_t pos = 0;
  while (pos < tokens.size()) {
    auto it = node->children.find(tokens[pos]);
    if (it == node->children.end()) {
      auto leaf = std::make_unique<Node>();
      leaf->label.assign(tokens.begin() + pos, tokens.end());
      leaf->parent = node;
      bytes_ += static_cast<int64_t>(leaf->label.size() * sizeof(int32_t));
      Node* raw = leaf.get();
      node->children.emplace(tokens[pos], std::move(leaf));
      node = raw;
      pos = tokens.size();
      break;
    }
    Node* child = it->second.get();
    std::vector<int32_t>& l = child->label;
    const size_t n = std::min(l.size(), tokens.size() - pos);
    size_t m = 0;
    while (m < n && l[m] == tokens[pos + m]) ++m;
    if (m < l.size()) {
      // Split the edge after its first m tokens: node -> mid -> child.
      auto mid = std::make_unique<Node>();
      mid->label.assign(l.begin(), l.begin() + m);
      mid->parent = node;
      std::unique_ptr<Node> moved = std::move(it->second);
      moved->label.erase(moved->label.begin(), moved->label.begin() + m);
      moved->parent = mid.get();
      const int32_t first = moved->label.front();
      mid->children.emplace(first, std::move(moved));
      it->second = std::move(mid);
      child = it->second.get();
    }
    node = child;
    pos += m;
  }
  if (node->has_entry) {
    bytes_ -= EntryBytes(*node);
    lru_.erase(node->lru);
  }
  node->has_entry = true;
  node->state = std::make_shared<const std::vector<float>>(std::move(state));
  bytes_ += EntryBytes(*node);
  lru_.push_front(node);
  node->lru = lru_.begin();
  while (bytes_ > options_.max_bytes && !lru_.empty()) Evict(lru_.back());
}

void PrefixCache::Evict(Node* n) {
  lru_.erase(n->lru);
  bytes_ -= EntryBytes(*n);
  n->has_entry = false;
  n->state.reset();
  ++evictions_;
  Prune(n);
}

void PrefixCache::Prune(Node* n) {
  while (n->parent != nullptr && !n->has_entry && n->children.size() <= 1) {
    Node* parent = n->parent;
    auto slot = parent->children.find(n->label.front());
    if (n->children.empty()) {
      bytes_ -= static_cast<int64_t>(n->label.size() * sizeof(int32_t));
      parent->children.erase(slot);  // Deletes n.
      n = parent;
      continue;
    }
    // One child: it takes n's place, its label extended by n's.
    std::unique_ptr<Node> child = std::move(n->children.begin()->second);
    child->label.insert(child->label.begin(), n->label.begin(), n->label.end());
    child->parent = parent;
    slot->second = std::move(child);  // Deletes n.
    return;
  }
}

}  // namespace rwkv::server
