// Command-line flags for rwkv-client: `--name value`, `--name=value`, boolean `--name`, repeated
// flags, and positional arguments.
#ifndef RWKV_CLIENT_FLAGS_H_
#define RWKV_CLIENT_FLAGS_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rwkv::client {

class Flags {
 public:
  // `boolean` names flags that take no value. With `known`, a flag not in it is an error
  // ("unknown flag --NAME") before its value is looked for.
  static absl::StatusOr<Flags> Parse(const std::vector<std::string>& args, const std::set<std::string>& boolean,
                                     const std::set<std::string>* known = nullptr);

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  std::vector<std::string> All(const std::string& name) const;
  absl::StatusOr<double> Double(const std::string& name, double fallback) const;
  absl::StatusOr<int64_t> Int(const std::string& name, int64_t fallback) const;
  absl::StatusOr<std::vector<int>> IntList(const std::string& name, std::vector<int> fallback) const;
  bool Bool(const std::string& name) const { return Has(name); }
  const std::vector<std::string>& positional() const { return positional_; }
  // INVALID_ARGUMENT naming a flag that is not in `known`.
  absl::Status Check(const std::set<std::string>& known) const;

 private:
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positional_;
};

}  // namespace rwkv::client

#endif  // RWKV_CLIENT_FLAGS_H_
