#include "client/flags.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace rwkv::client {

absl::StatusOr<Flags> Flags::Parse(const std::vector<std::string>& args, const std::set<std::string>& boolean,
                                   const std::set<std::string>* known) {
  Flags f;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() < 3 || a.rfind("--", 0) != 0) {
      f.positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    const size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    if (known != nullptr && !known->count(name)) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    if (eq != std::string::npos) {
      // --name=value
    } else if (boolean.count(name)) {
      value = "true";
    } else {
      if (i + 1 >= args.size()) return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      value = args[++i];
    }
    f.values_[name].push_back(value);
  }
  return f;
}

std::string Flags::Get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second.back();
}

std::vector<std::string> Flags::All(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

absl::StatusOr<double> Flags::Double(const std::string& name, double fallback) const {
  if (!Has(name)) return fallback;
  double v;
  if (!absl::SimpleAtod(Get(name), &v)) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, ": '", Get(name), "' is not a number"));
  }
  return v;
}

absl::StatusOr<int64_t> Flags::Int(const std::string& name, int64_t fallback) const {
  if (!Has(name)) return fallback;
  int64_t v;
  if (!absl::SimpleAtoi(Get(name), &v)) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, ": '", Get(name), "' is not an integer"));
  }
  return v;
}

absl::StatusOr<std::vector<int>> Flags::IntList(const std::string& name, std::vector<int> fallback) const {
  if (!Has(name)) return fallback;
  std::vector<int> out;
  for (absl::string_view part : absl::StrSplit(Get(name), ',', absl::SkipWhitespace())) {
    int v;
    if (!absl::SimpleAtoi(part, &v)) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, ": '", part, "' is not an integer"));
    }
    out.push_back(v);
  }
  return out;
}

absl::Status Flags::Check(const std::set<std::string>& known) const {
  for (const auto& [name, v] : values_) {
    if (!known.count(name)) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
  }
  return absl::OkStatus();
}

}  // namespace rwkv::client
