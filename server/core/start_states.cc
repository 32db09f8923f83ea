#include "server/core/start_states.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/absl_compat.h"
#include "engine/start_state.h"
#include "engine/status.h"

namespace rwkv::server {
namespace {

constexpr std::string_view kExportMagic = "RWKVSTAT";

bool ValidName(std::string_view n) {
  if (n.empty() || n.size() > 64) return false;
  for (char ch : n) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '_' && ch != '-') return false;
  }
  return true;
}

absl::StatusOr<ExportedState> LoadOne(const std::string& name, const std::string& path, const StateCodec& codec) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--states ", name, ": cannot open ", path));
  char magic[8] = {};
  in.read(magic, sizeof(magic));
  if (in.gcount() == static_cast<std::streamsize>(sizeof(magic)) && std::string_view(magic, 8) == kExportMagic) {
    in.seekg(0);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    const std::string data = bytes.str();
    if (data.size() > codec.MaxBytes()) {
      return absl::InvalidArgumentError(absl::StrCat("--states ", name, ": ", path, " is ", data.size(),
                                                     " bytes, more than an export of this model (", codec.MaxBytes(),
                                                     ")"));
    }
    absl::StatusOr<ExportedState> s = codec.Decode(data);
    if (!s.ok())
      return absl::InvalidArgumentError(absl::StrCat("--states ", name, ": ", path, ": ", s.status().message()));
    return s;
  }
  absl::StatusOr<std::vector<float>> tuned = LoadStateTuning(path, codec.config);
  if (!tuned.ok()) return absl::InvalidArgumentError(absl::StrCat("--states ", name, ": ", tuned.status().message()));
  ExportedState s;
  s.state = std::move(*tuned);
  return s;
}

}  // namespace

absl::StatusOr<StartStates> StartStates::Load(std::string_view spec, std::string_view default_name,
                                              const StateCodec& codec) {
  StartStates out;
  for (absl::string_view piece : absl::StrSplit(AV(spec), ',', absl::SkipWhitespace())) {
    const std::string entry(piece);
    const size_t eq = entry.find('=');
    if (eq == std::string::npos || eq + 1 == entry.size()) {
      return absl::InvalidArgumentError(absl::StrCat("--states entry '", entry, "' is not NAME=PATH"));
    }
    const std::string name = entry.substr(0, eq), path = entry.substr(eq + 1);
    if (!ValidName(name) || name == kNone) {
      return absl::InvalidArgumentError(
          absl::StrCat("--states name '", name, "' must be 1..64 of [A-Za-z0-9._-] and not 'none'"));
    }
    if (out.states_.count(name)) return absl::InvalidArgumentError(absl::StrCat("--states names '", name, "' twice"));
    RWKV_ASSIGN_OR_RETURN(ExportedState s, LoadOne(name, path, codec));
    out.states_.emplace(name, std::make_shared<const ExportedState>(std::move(s)));
  }
  if (!default_name.empty() && !out.states_.count(std::string(default_name))) {
    return absl::InvalidArgumentError(absl::StrCat("--default-state '", std::string(default_name),
                                                   "' is not one of --states (", absl::StrJoin(out.names(), ", "),
                                                   ")"));
  }
  out.default_ = std::string(default_name);
  return out;
}

absl::StatusOr<std::shared_ptr<const ExportedState>> StartStates::Resolve(std::string_view name,
                                                                          const char* field) const {
  if (name.empty()) {
    if (default_.empty()) return nullptr;
    return states_.find(default_)->second;
  }
  if (name == kNone) return nullptr;
  if (name.size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is ", name.size(), " bytes; start-state names are at most 64"));
  }
  auto it = states_.find(std::string(name));
  if (it == states_.end()) {
    std::vector<std::string> known = names();
    known.push_back(std::string(kNone));
    return absl::InvalidArgumentError(absl::StrCat(
        field, " '", std::string(name), "' is not a start state of this server (", absl::StrJoin(known, ", "), ")"));
  }
  return it->second;
}

std::vector<std::string> StartStates::names() const {
  std::vector<std::string> n;
  for (const auto& [name, s] : states_) n.push_back(name);
  return n;
}

}  // namespace rwkv::server
