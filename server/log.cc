#include "server/log.h"

#include <unistd.h>

#include <chrono>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/absl_compat.h"

namespace rwkv::server {

std::string LogValue(std::string_view v) {
  if (!v.empty() && v.find_first_of(" \"=\n\t") == std::string_view::npos) return std::string(v);
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

void Log(std::string_view level, std::string_view msg, std::string_view fields) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const int ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm;
  gmtime_r(&t, &tm);
  std::string line = absl::StrFormat("ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s msg=%s", tm.tm_year + 1900,
                                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms, AV(level),
                                     LogValue(msg));
  if (!fields.empty()) absl::StrAppend(&line, " ", AV(fields));
  line += '\n';
  (void)!write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace rwkv::server
