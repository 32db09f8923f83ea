// Debian 12's Abseil keeps its own absl::string_view (not an alias of std::string_view).
// Our APIs use std::string_view; this converts at the call into Abseil.
#ifndef RWKV_ENGINE_ABSL_COMPAT_H_
#define RWKV_ENGINE_ABSL_COMPAT_H_

#include <string_view>

#include "absl/strings/string_view.h"

namespace rwkv {

inline absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }
inline std::string_view SV(absl::string_view s) { return std::string_view(s.data(), s.size()); }

}  // namespace rwkv

#endif  // RWKV_ENGINE_ABSL_COMPAT_H_
