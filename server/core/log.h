// Structured log lines on stderr: `ts=... level=info msg="..." key=value ...` (logfmt), one
// write per line so that lines from different threads never interleave.
#ifndef RWKV_SERVER_CORE_LOG_H_
#define RWKV_SERVER_CORE_LOG_H_

#include <string>
#include <string_view>

namespace rwkv::server {

// `fields` is a preformatted logfmt tail ("key=value key2=value2"); may be empty.
void Log(std::string_view level, std::string_view msg, std::string_view fields = {});

// A logfmt value: quoted when it holds spaces, quotes or '='.
std::string LogValue(std::string_view v);

}  // namespace rwkv::server

#endif  // RWKV_SERVER_CORE_LOG_H_
