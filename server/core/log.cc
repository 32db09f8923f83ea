#include "server/core/log.h"

#include <unistd.h>

#include <chrono>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/absl_compat.h"

namespace rwkv::server {

std::string LogValue(std::string_view v) {
  auto control = [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; };
  bool plain = !v.empty();
  for (char c : v) plain = plain && !control(c) && c != ' ' && c != '"' && c != '=' && c != '\\';
  if (plain) return std::string(v);
  // Quoted, with every control character escaped: a value can never start a new log line or
  // move the terminal.
  std::string out = "\"";
  for (char c : v) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (control(c)) {
          absl::StrAppendFormat(&out, "\\x%02x", static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
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
