#include "client/plot.h"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace rwkv::client {
namespace {

// 3x5 glyphs, rows top to bottom, '1' = ink.
const std::map<char, const char*>& Font() {
  static const std::map<char, const char*> f = {
      {'A', "010101111101101"}, {'B', "110101110101110"}, {'C', "011100100100011"}, {'D', "110101101101110"},
      {'E', "111100110100111"}, {'F', "111100110100100"}, {'G', "011100101101011"}, {'H', "101101111101101"},
      {'I', "111010010010111"}, {'J', "001001001101010"}, {'K', "101101110101101"}, {'L', "100100100100111"},
      {'M', "101111111101101"}, {'N', "110101101101101"}, {'O', "010101101101010"}, {'P', "110101110100100"},
      {'Q', "010101101110011"}, {'R', "110101110101101"}, {'S', "011100010001110"}, {'T', "111010010010010"},
      {'U', "101101101101111"}, {'V', "101101101101010"}, {'W', "101101111111101"}, {'X', "101101010101101"},
      {'Y', "101101010010010"}, {'Z', "111001010100111"}, {'0', "111101101101111"}, {'1', "010110010010111"},
      {'2', "110001010100111"}, {'3', "110001010001110"}, {'4', "101101111001001"}, {'5', "111100110001110"},
      {'6', "011100111101111"}, {'7', "111001010010010"}, {'8', "111101111101111"}, {'9', "111101111001110"},
      {'.', "000000000000010"}, {'/', "001001010100100"}, {'-', "000000111000000"}, {'(', "010100100100010"},
      {')', "010001001001010"}, {'%', "101001010100101"}, {':', "000010000010000"}, {',', "000000000010100"},
  };
  return f;
}

class Canvas {
 public:
  Canvas(int w, int h) : w_(w), h_(h), px_(static_cast<size_t>(w) * h * 3, 255) {}
  void Set(int x, int y, uint32_t rgb) {
    if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
    uint8_t* p = &px_[(static_cast<size_t>(y) * w_ + x) * 3];
    p[0] = rgb >> 16;
    p[1] = (rgb >> 8) & 255;
    p[2] = rgb & 255;
  }
  void Rect(int x0, int y0, int x1, int y1, uint32_t rgb) {
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) Set(x, y, rgb);
  }
  void Line(double x0, double y0, double x1, double y1, uint32_t rgb, int thick) {
    const int steps = static_cast<int>(std::max(std::abs(x1 - x0), std::abs(y1 - y0))) + 1;
    for (int i = 0; i <= steps; ++i) {
      const double t = static_cast<double>(i) / steps;
      const int x = static_cast<int>(std::lround(x0 + (x1 - x0) * t)), y = static_cast<int>(std::lround(y0 + (y1 - y0) * t));
      Rect(x - thick / 2, y - thick / 2, x + (thick - 1) / 2, y + (thick - 1) / 2, rgb);
    }
  }
  // Text with its top-left at (x, y); `scale` pixels per font pixel. Returns the width drawn.
  int Text(int x, int y, const std::string& s, int scale, uint32_t rgb) {
    int cx = x;
    for (char ch : s) {
      auto it = Font().find(static_cast<char>(std::toupper(static_cast<unsigned char>(ch))));
      if (it != Font().end()) {
        for (int r = 0; r < 5; ++r)
          for (int c = 0; c < 3; ++c)
            if (it->second[r * 3 + c] == '1') Rect(cx + c * scale, y + r * scale, cx + (c + 1) * scale - 1, y + (r + 1) * scale - 1, rgb);
      }
      cx += 4 * scale;
    }
    return cx - x;
  }
  static int TextWidth(const std::string& s, int scale) { return static_cast<int>(s.size()) * 4 * scale; }

  absl::Status WritePng(const std::string& path) const {
    std::string raw;
    raw.reserve((static_cast<size_t>(w_) * 3 + 1) * h_);
    for (int y = 0; y < h_; ++y) {
      raw.push_back(0);  // Filter: none.
      raw.append(reinterpret_cast<const char*>(&px_[static_cast<size_t>(y) * w_ * 3]), static_cast<size_t>(w_) * 3);
    }
    uLongf zlen = compressBound(raw.size());
    std::string z(zlen, '\0');
    if (compress2(reinterpret_cast<Bytef*>(z.data()), &zlen, reinterpret_cast<const Bytef*>(raw.data()), raw.size(), 9) != Z_OK) {
      return absl::InternalError("zlib failed to compress the image");
    }
    z.resize(zlen);
    std::string png("\x89PNG\r\n\x1a\n", 8);
    auto be32 = [](uint32_t v) {
      return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
    };
    auto chunk = [&](const char* type, const std::string& data) {
      png += be32(static_cast<uint32_t>(data.size()));
      std::string body = std::string(type, 4) + data;
      png += body;
      png += be32(static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()), body.size())));
    };
    chunk("IHDR", be32(w_) + be32(h_) + std::string("\x08\x02\x00\x00\x00", 5));  // 8-bit RGB.
    chunk("IDAT", z);
    chunk("IEND", "");
    std::ofstream out(path, std::ios::binary);
    out.write(png.data(), static_cast<std::streamsize>(png.size()));
    if (!out.good()) return absl::InternalError(absl::StrCat("cannot write ", path));
    return absl::OkStatus();
  }

 private:
  int w_, h_;
  std::vector<uint8_t> px_;
};

// The smallest of 1, 2, 2.5, 5 x 10^k at or above `v`.
double NiceCeil(double v) {
  if (v <= 0) return 1;
  const double p = std::pow(10, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    if (m * p >= v * (1 - 1e-12)) return m * p;
  }
  return 10 * p;
}

std::string Tick(double v) {
  if (v >= 1000) return absl::StrFormat("%gK", v / 1000);
  return absl::StrFormat("%g", v);
}

}  // namespace

absl::Status WriteLineChart(const std::string& path, const std::string& title, const std::vector<std::string>& x_labels,
                            const std::string& x_name, const std::string& y_name, const std::vector<Series>& series) {
  constexpr int W = 900, H = 560, L = 110, R = 40, T = 70, B = 90;
  constexpr uint32_t kInk = 0x202020, kGrid = 0xdddddd;
  Canvas c(W, H);
  c.Text((W - Canvas::TextWidth(title, 3)) / 2, 20, title, 3, kInk);
  double ymax = 0;
  for (const Series& s : series)
    for (double v : s.y) ymax = std::max(ymax, v);
  ymax = NiceCeil(ymax * 1.05);
  const int pw = W - L - R, ph = H - T - B;
  auto X = [&](size_t i) { return L + (x_labels.size() == 1 ? pw / 2.0 : pw * (0.05 + 0.9 * i / (x_labels.size() - 1.0))); };
  auto Y = [&](double v) { return T + ph * (1 - v / ymax); };
  for (int k = 0; k <= 5; ++k) {
    const double v = ymax * k / 5;
    const int y = static_cast<int>(std::lround(Y(v)));
    c.Line(L, y, L + pw, y, kGrid, 1);
    const std::string label = Tick(v);
    c.Text(L - 10 - Canvas::TextWidth(label, 2), y - 5, label, 2, kInk);
  }
  c.Line(L, T, L, T + ph, kInk, 2);
  c.Line(L, T + ph, L + pw, T + ph, kInk, 2);
  for (size_t i = 0; i < x_labels.size(); ++i) {
    const int x = static_cast<int>(std::lround(X(i)));
    c.Line(x, T + ph, x, T + ph + 6, kInk, 2);
    c.Text(x - Canvas::TextWidth(x_labels[i], 2) / 2, T + ph + 14, x_labels[i], 2, kInk);
  }
  c.Text(L + (pw - Canvas::TextWidth(x_name, 2)) / 2, H - 36, x_name, 2, kInk);
  c.Text(10, T - 30, y_name, 2, kInk);
  for (const Series& s : series) {
    for (size_t i = 0; i < s.y.size(); ++i) {
      if (i > 0) c.Line(X(i - 1), Y(s.y[i - 1]), X(i), Y(s.y[i]), s.rgb, 3);
      const int x = static_cast<int>(std::lround(X(i))), y = static_cast<int>(std::lround(Y(s.y[i])));
      c.Rect(x - 4, y - 4, x + 4, y + 4, s.rgb);
    }
  }
  int ly = T + 10;
  for (const Series& s : series) {
    c.Rect(L + 20, ly, L + 40, ly + 9, s.rgb);
    c.Text(L + 50, ly, s.name, 2, kInk);
    ly += 22;
  }
  return c.WritePng(path);
}

absl::Status WriteBenchPlots(const std::vector<LoadResult>& results, const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  std::vector<std::string> xs;
  Series tps{"tokens/s", 0x1f77b4, {}}, t50{"TTFT p50", 0x1f77b4, {}}, t99{"TTFT p99", 0xaec7e8, {}},
      i50{"inter-token p50", 0xd62728, {}}, i99{"inter-token p99", 0xff9896, {}};
  for (const LoadResult& r : results) {
    xs.push_back(absl::StrCat(r.concurrency));
    tps.y.push_back(r.tokens_per_s);
    t50.y.push_back(r.ttft_s.p50 * 1e3);
    t99.y.push_back(r.ttft_s.p99 * 1e3);
    i50.y.push_back(r.itl_s.p50 * 1e3);
    i99.y.push_back(r.itl_s.p99 * 1e3);
  }
  absl::Status st = WriteLineChart(dir + "/throughput.png", "Aggregate throughput", xs, "concurrent streams",
                                   "tokens/s", {tps});
  if (!st.ok()) return st;
  return WriteLineChart(dir + "/latency.png", "Latency", xs, "concurrent streams", "ms", {t50, t99, i50, i99});
}

}  // namespace rwkv::client
