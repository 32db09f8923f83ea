// Named start states a request may begin from instead of zeros: state-tuning files (spec section
// 7, engine/start_state.h) and exported sessions (server/state_codec.h), loaded once at startup
// from --states and shared read-only by every sequence that names one.
//
// Thread safety: immutable after Load; any thread may read it.
#ifndef RWKV_SERVER_CORE_START_STATES_H_
#define RWKV_SERVER_CORE_START_STATES_H_

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/core/state_codec.h"

namespace rwkv::server {

class StartStates {
 public:
  static constexpr std::string_view kNone = "none";  // The zero state, by name.

  // `spec`: "NAME=PATH[,NAME=PATH...]" (may be empty); names [A-Za-z0-9._-], 1..64 bytes, unique,
  // not "none". A file beginning with the export magic is an exported session (it must be of this
  // model); any other is a state-tuning checkpoint. `default_name` empty, or one of the names.
  // INVALID_ARGUMENT naming --states / --default-state and the entry at fault.
  static absl::StatusOr<StartStates> Load(std::string_view spec, std::string_view default_name,
                                          const StateCodec& codec);

  // The state a request starts from: `name` empty -> the default (null when there is none),
  // "none" -> null (zeros). INVALID_ARGUMENT naming `field` and the known names otherwise.
  absl::StatusOr<std::shared_ptr<const ExportedState>> Resolve(std::string_view name, const char* field) const;

  std::vector<std::string> names() const;
  const std::string& default_name() const { return default_; }

 private:
  std::map<std::string, std::shared_ptr<const ExportedState>, std::less<>> states_;
  std::string default_;
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_CORE_START_STATES_H_
