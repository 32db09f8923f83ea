// rwkv-cli: the engine from the command line.
//
//   rwkv-cli inspect    --model FILE
//   rwkv-cli logits     --model FILE --tokens 1,2,3 [--chunk N]
//   rwkv-cli tokenize   --vocab FILE --text STR
//   rwkv-cli detokenize --vocab FILE --tokens 1,2,3
//   rwkv-cli generate   --model FILE --vocab FILE --prompt STR --max-tokens N [sampling flags]
//
// `logits` prints one line per input position: the logits as space-separated %.9g floats. Outside
// parity checks parse this format; keep it stable. Errors go to stderr with a non-zero exit.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/backend.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/start_state.h"
#include "engine/status.h"
#include "engine/tensor_file.h"
#include "engine/tokenizer.h"
#include "engine/vision/encoder.h"
#include "engine/vision/image.h"

namespace rwkv {
namespace {

constexpr char kUsage[] = R"(usage: rwkv-cli COMMAND [flags]

commands:
  inspect    --model FILE                       architecture, dimensions, parameters, state size
  logits     --model FILE --tokens 1,2,3        logits of every position, one line each (%.9g)
             [--chunk N]                        feed N tokens per engine call (default: all, up to 65536)
             [--image FILE]                     a VisualRWKV-7 model: the image's rows before the tokens
  tokenize   --vocab FILE --text STR            token ids, comma-separated
  detokenize --vocab FILE --tokens 1,2,3        the text of the tokens
  generate   --model FILE --vocab FILE --prompt STR --max-tokens N
             [--temperature 1.0] [--top-p 0.85] [--top-k 0] [--min-p 0]
             [--presence-penalty 0] [--frequency-penalty 0] [--penalty-decay 1]
             [--ban 0,1] [--bias ID:VALUE,...] [--seed 0] [--chunk 256] [--ignore-eos]
             [--image FILE]                     a VisualRWKV-7 model: the image's rows before the prompt
common:      [--backend cpu|cuda] [--threads N] [--device 0]
             [--dtype auto|f32|bf16|f16|int8|int4 (weight matrices; auto: cuda f16, cpu as the file stores them; int8/int4 cpu only)]
             [--state FILE (a state-tuning file as the start state; logits, generate)]
             [--image-tokens 16] [--dino-heads 16] [--siglip-heads 16] (--image: the encoder's shape)
             [--tokenizer auto|world|neox]  --vocab is a World vocabulary or a GPT-NeoX tokenizer.json;
             auto picks NeoX for the Pile vocabularies (50277, 50304) or, without a model, a .json file
)";

using Flags = std::map<std::string, std::string>;

absl::StatusOr<Flags> ParseFlags(int argc, char** argv) {
  Flags flags;
  static const char* kBoolean[] = {"ignore-eos"};
  for (int i = 2; i < argc; ++i) {
    absl::string_view a = argv[i];
    if (!absl::ConsumePrefix(&a, "--"))
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", a, "'"));
    std::string name(a), value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    } else if (std::find(std::begin(kBoolean), std::end(kBoolean), name) != std::end(kBoolean)) {
      value = "true";
    } else {
      if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      value = argv[++i];
    }
    flags[name] = value;
  }
  return flags;
}

absl::StatusOr<std::string> Required(const Flags& f, const std::string& name) {
  auto it = f.find(name);
  if (it == f.end()) return absl::InvalidArgumentError(absl::StrCat("missing required flag --", name));
  return it->second;
}

template <typename T>
absl::StatusOr<T> Number(const Flags& f, const std::string& name, T fallback) {
  auto it = f.find(name);
  if (it == f.end()) return fallback;
  T v;
  bool ok;
  if constexpr (std::is_floating_point_v<T>)
    ok = absl::SimpleAtof(it->second, &v);
  else
    ok = absl::SimpleAtoi(it->second, &v);
  if (!ok) return absl::InvalidArgumentError(absl::StrCat("flag --", name, ": '", it->second, "' is not a number"));
  return v;
}

absl::StatusOr<std::vector<int32_t>> TokenList(const std::string& flag, const std::string& s) {
  std::vector<int32_t> out;
  for (absl::string_view part : absl::StrSplit(s, ',', absl::SkipWhitespace())) {
    int32_t v;
    if (!absl::SimpleAtoi(part, &v))
      return absl::InvalidArgumentError(absl::StrCat("--", flag, ": '", part, "' is not a token id"));
    out.push_back(v);
  }
  return out;
}

absl::StatusOr<BackendOptions> BackendFlags(const Flags& f) {
  BackendOptions o;
  if (auto it = f.find("backend"); it != f.end()) o.kind = it->second;
  RWKV_ASSIGN_OR_RETURN(o.threads, Number<int>(f, "threads", 0));
  RWKV_ASSIGN_OR_RETURN(o.device, Number<int>(f, "device", 0));
  if (auto it = f.find("dtype"); it != f.end()) o.dtype = it->second;
  return o;
}

// The model as the backend of the flags wants it loaded (--dtype).
absl::StatusOr<std::unique_ptr<Model>> LoadModel(const Flags& f, const std::string& path) {
  RWKV_ASSIGN_OR_RETURN(BackendOptions o, BackendFlags(f));
  RWKV_ASSIGN_OR_RETURN(ModelOptions mo, ModelOptionsFor(o));
  return Model::Load(path, mo);
}

absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(const Flags& f, std::shared_ptr<const Model> model,
                                                     int max_step_tokens) {
  RWKV_ASSIGN_OR_RETURN(BackendOptions o, BackendFlags(f));
  o.pool_slots = 1;
  o.max_step_tokens = max_step_tokens;
  return CreateBackend(std::move(model), o);
}

absl::Status Inspect(const Flags& f) {
  RWKV_ASSIGN_OR_RETURN(std::string path, Required(f, "model"));
  RWKV_ASSIGN_OR_RETURN(std::unique_ptr<Model> m, LoadModel(f, path));
  const ModelConfig& c = m->config();
  std::printf("file:            %s\n", path.c_str());
  std::printf("architecture:    %s\n", ArchitectureName(c.arch));
  std::printf("layers:          %d\n", c.n_layer);
  std::printf("embedding:       %d\n", c.n_embd);
  std::printf("heads:           %d x %d\n", c.n_head, c.head_size);
  std::printf("ffn:             %d\n", c.ffn_dim);
  std::printf("vocab:           %d\n", c.vocab);
  std::printf("lora ranks:      decay %d, iclr %d, value %d, gate %d\n", c.lora_decay, c.lora_iclr, c.lora_value,
              c.lora_gate);
  std::printf("parameters:      %lld\n", static_cast<long long>(c.parameter_count));
  std::printf("state bytes:     %lld per session (fp32)\n", static_cast<long long>(c.StateBytes()));
  std::printf("weights in RAM:  %.1f MiB (matrices %s%s%s, the rest fp32)\n", m->weight_bytes() / 1048576.0,
              MatrixTypeName(m->matrix_type()), m->head().type != m->matrix_type() ? ", head " : "",
              m->head().type != m->matrix_type() ? MatrixTypeName(m->head().type) : "");
  return absl::OkStatus();
}

// A slot holding the start state: zeros, or with --state FILE a state-tuning file's.
absl::StatusOr<int> StartSlot(const Flags& f, Backend& backend) {
  RWKV_ASSIGN_OR_RETURN(int slot, backend.pool().Acquire());
  if (auto it = f.find("state"); it != f.end()) {
    RWKV_ASSIGN_OR_RETURN(std::vector<float> state, LoadStateTuning(it->second, backend.config()));
    RWKV_RETURN_IF_ERROR(backend.pool().Write(slot, state));
  }
  return slot;
}

// --image FILE: the image (PNG, JPEG or WebP) through the --model file's VisualRWKV-7 encoder
// (vit.*, proj.*): one row of n_embd floats per image token, empty without --image.
absl::StatusOr<std::vector<float>> ImageRows(const Flags& f, const std::string& model_path, int n_embd) {
  auto it = f.find("image");
  if (it == f.end()) return std::vector<float>();
  std::ifstream in(it->second, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("--image: cannot open ", it->second));
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  RWKV_ASSIGN_OR_RETURN(vision::Image image,
                        vision::DecodeImage(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()),
                                                                     bytes.size())));
  vision::VisionEncoderOptions o;
  RWKV_ASSIGN_OR_RETURN(o.tokens_per_image, Number<int>(f, "image-tokens", o.tokens_per_image));
  RWKV_ASSIGN_OR_RETURN(o.dino_heads, Number<int>(f, "dino-heads", o.dino_heads));
  RWKV_ASSIGN_OR_RETURN(o.siglip_heads, Number<int>(f, "siglip-heads", o.siglip_heads));
  RWKV_ASSIGN_OR_RETURN(std::unique_ptr<TensorFile> file, TensorFile::Open(model_path));
  if (!vision::VisionEncoder::Present(*file)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--image: ", model_path, " is not a VisualRWKV-7 checkpoint (no vit.* vision towers)"));
  }
  RWKV_ASSIGN_OR_RETURN(vision::VisionEncoder enc, vision::VisionEncoder::Load(*file, o));
  if (enc.width() != n_embd) {
    return absl::InvalidArgumentError(absl::StrCat("--image: the encoder's rows have ", enc.width(),
                                                   " values; the model's embedding has ", n_embd));
  }
  RWKV_ASSIGN_OR_RETURN(int threads, Number<int>(f, "threads", 0));
  vision::VisionEncoder::Timings t;
  RWKV_ASSIGN_OR_RETURN(std::vector<float> rows, enc.Encode(image, threads > 0 ? threads : 2, &t));
  std::fprintf(stderr, "[image %dx%d: %d rows; preprocess %.3f s, DINOv2 %.3f s, SigLIP %.3f s, SAM %.3f s, projector %.3f s]\n",
               image.width, image.height, enc.tokens(), t.preprocess, t.dino, t.siglip, t.sam, t.project);
  return rows;
}

absl::Status LogitsCmd(const Flags& f) {
  RWKV_ASSIGN_OR_RETURN(std::string path, Required(f, "model"));
  RWKV_ASSIGN_OR_RETURN(std::string tokens_arg, Required(f, "tokens"));
  RWKV_ASSIGN_OR_RETURN(std::vector<int32_t> tokens, TokenList("tokens", tokens_arg));
  if (tokens.empty()) return absl::InvalidArgumentError("--tokens: no token ids given");
  RWKV_ASSIGN_OR_RETURN(int chunk, Number<int>(f, "chunk", std::min<int>(tokens.size(), kMaxStepTokens)));
  if (chunk < 1 || chunk > kMaxStepTokens) {
    return absl::InvalidArgumentError(absl::StrCat("--chunk is ", chunk, "; it must be in [1, ", kMaxStepTokens, "]"));
  }
  RWKV_ASSIGN_OR_RETURN(std::unique_ptr<Model> m, LoadModel(f, path));
  std::shared_ptr<const Model> model = std::move(m);
  const int C = model->config().n_embd;
  RWKV_ASSIGN_OR_RETURN(const std::vector<float> image, ImageRows(f, path, C));
  const size_t image_tokens = image.size() / C;
  std::vector<const float*> rows;  // Per position: an image row, or none.
  if (image_tokens > 0) {
    tokens.insert(tokens.begin(), image_tokens, 0);  // Placeholders: their rows stand in.
    rows.assign(tokens.size(), nullptr);
    for (size_t i = 0; i < image_tokens; ++i) rows[i] = image.data() + i * C;
  }
  // Scratch for the largest call made; larger --chunk values change nothing.
  RWKV_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend,
                        MakeBackend(f, model, std::min<int>(chunk, static_cast<int>(tokens.size()))));
  RWKV_ASSIGN_OR_RETURN(int slot, StartSlot(f, *backend));
  Logits logits;
  std::string line;
  for (size_t begin = 0; begin < tokens.size(); begin += chunk) {
    const size_t n = std::min(tokens.size() - begin, static_cast<size_t>(chunk));
    BatchEntry e{slot, std::span<const int32_t>(tokens.data() + begin, n), /*all_logits=*/true};
    if (!rows.empty()) e.rows = std::span<const float* const>(rows.data() + begin, n);
    RWKV_RETURN_IF_ERROR(backend->Forward({&e, 1}, &logits));
    for (int r = 0; r < logits.rows(0); ++r) {
      line.clear();
      char buf[32];
      for (float v : logits.Row(0, r)) {
        std::snprintf(buf, sizeof buf, "%.9g", v);
        if (!line.empty()) line.push_back(' ');
        line += buf;
      }
      std::puts(line.c_str());
    }
  }
  return absl::OkStatus();
}

// --tokenizer: auto (default), world or neox.
std::string TokenizerKind(const Flags& f) {
  auto it = f.find("tokenizer");
  return it == f.end() ? "auto" : it->second;
}

absl::Status TokenizeCmd(const Flags& f) {
  RWKV_ASSIGN_OR_RETURN(std::string vocab, Required(f, "vocab"));
  RWKV_ASSIGN_OR_RETURN(std::string text, Required(f, "text"));
  RWKV_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, LoadTokenizer(vocab, TokenizerKind(f), 0));
  std::string out;
  for (int32_t id : tok->Encode(text)) absl::StrAppend(&out, out.empty() ? "" : ",", id);
  std::puts(out.c_str());
  return absl::OkStatus();
}

absl::Status DetokenizeCmd(const Flags& f) {
  RWKV_ASSIGN_OR_RETURN(std::string vocab, Required(f, "vocab"));
  RWKV_ASSIGN_OR_RETURN(std::string tokens_arg, Required(f, "tokens"));
  RWKV_ASSIGN_OR_RETURN(std::vector<int32_t> tokens, TokenList("tokens", tokens_arg));
  RWKV_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, LoadTokenizer(vocab, TokenizerKind(f), 0));
  RWKV_ASSIGN_OR_RETURN(std::string bytes, tok->Decode(tokens));
  std::string text;
  AppendValidUtf8(bytes, &text);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::putchar('\n');
  return absl::OkStatus();
}

absl::Status GenerateCmd(const Flags& f) {
  RWKV_ASSIGN_OR_RETURN(std::string path, Required(f, "model"));
  RWKV_ASSIGN_OR_RETURN(std::string vocab, Required(f, "vocab"));
  RWKV_ASSIGN_OR_RETURN(std::string prompt, Required(f, "prompt"));
  RWKV_ASSIGN_OR_RETURN(int max_tokens, Number<int>(f, "max-tokens", 100));
  if (max_tokens < 1 || max_tokens > 1'000'000)
    return absl::InvalidArgumentError(absl::StrCat("--max-tokens is ", max_tokens, "; it must be in [1, 1000000]"));
  RWKV_ASSIGN_OR_RETURN(int chunk, Number<int>(f, "chunk", 256));
  if (chunk < 1 || chunk > kMaxStepTokens) {
    return absl::InvalidArgumentError(absl::StrCat("--chunk is ", chunk, "; it must be in [1, ", kMaxStepTokens, "]"));
  }
  const SamplingParams d = DefaultSampling();
  SamplingParams sp = d;
  RWKV_ASSIGN_OR_RETURN(sp.temperature, Number<float>(f, "temperature", d.temperature));
  RWKV_ASSIGN_OR_RETURN(sp.top_p, Number<float>(f, "top-p", d.top_p));
  RWKV_ASSIGN_OR_RETURN(sp.top_k, Number<int>(f, "top-k", d.top_k));
  RWKV_ASSIGN_OR_RETURN(sp.min_p, Number<float>(f, "min-p", d.min_p));
  RWKV_ASSIGN_OR_RETURN(sp.presence_penalty, Number<float>(f, "presence-penalty", d.presence_penalty));
  RWKV_ASSIGN_OR_RETURN(sp.frequency_penalty, Number<float>(f, "frequency-penalty", d.frequency_penalty));
  RWKV_ASSIGN_OR_RETURN(sp.penalty_decay, Number<float>(f, "penalty-decay", d.penalty_decay));
  RWKV_ASSIGN_OR_RETURN(sp.seed, Number<uint64_t>(f, "seed", 0));
  if (auto it = f.find("ban"); it != f.end()) {
    RWKV_ASSIGN_OR_RETURN(sp.banned_tokens, TokenList("ban", it->second));
  }
  if (auto it = f.find("bias"); it != f.end()) {
    for (absl::string_view part : absl::StrSplit(it->second, ',', absl::SkipWhitespace())) {
      std::pair<std::string, std::string> kv = absl::StrSplit(part, absl::MaxSplits(':', 1));
      int32_t id;
      float bias;
      if (!absl::SimpleAtoi(kv.first, &id) || !absl::SimpleAtof(kv.second, &bias)) {
        return absl::InvalidArgumentError(absl::StrCat("--bias: '", part, "' is not ID:VALUE"));
      }
      sp.logit_bias.emplace_back(id, bias);
    }
  }
  const bool ignore_eos = f.count("ignore-eos") > 0;

  RWKV_ASSIGN_OR_RETURN(std::unique_ptr<Model> m, LoadModel(f, path));
  std::shared_ptr<const Model> model = std::move(m);
  RWKV_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, LoadTokenizer(vocab, TokenizerKind(f), model->config().vocab));
  RWKV_RETURN_IF_ERROR(ValidateSamplingParams(sp, model->config().vocab));
  std::vector<int32_t> prompt_tokens = tok->Encode(prompt);
  const int C = model->config().n_embd;
  RWKV_ASSIGN_OR_RETURN(const std::vector<float> image, ImageRows(f, path, C));
  const size_t image_tokens = image.size() / C;
  RWKV_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend,
                        MakeBackend(f, model, std::min<int>(chunk, std::max<int>(1, prompt_tokens.size()))));
  RWKV_ASSIGN_OR_RETURN(int slot, StartSlot(f, *backend));
  if (prompt_tokens.empty() && image_tokens == 0) prompt_tokens.push_back(Tokenizer::kEndOfText);  // A document boundary.
  for (int32_t t : prompt_tokens) {
    if (t >= model->config().vocab) {
      return absl::InvalidArgumentError(absl::StrCat("--prompt encodes to token ", t,
                                                     ", outside the model's vocabulary [0, ", model->config().vocab,
                                                     "): does --vocab belong to this model?"));
    }
  }

  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  Logits logits;
  std::vector<const float*> rows;
  if (image_tokens > 0) {  // The image first, then the prompt.
    prompt_tokens.insert(prompt_tokens.begin(), image_tokens, 0);
    rows.assign(prompt_tokens.size(), nullptr);
    for (size_t i = 0; i < image_tokens; ++i) rows[i] = image.data() + i * C;
  }
  BatchEntry e{slot, prompt_tokens, false, rows};
  RWKV_RETURN_IF_ERROR(backend->Forward({&e, 1}, &logits));
  e.rows = {};
  const auto t1 = Clock::now();

  Sampler sampler(sp, model->config().vocab);
  IncrementalDecoder decoder(tok.get());
  std::fwrite(prompt.data(), 1, prompt.size(), stdout);
  std::fflush(stdout);
  int generated = 0;
  int32_t token = 0;
  for (; generated < max_tokens; ++generated) {
    token = sampler.Sample(logits.Last(0));
    if (token == Tokenizer::kEndOfText && !ignore_eos) break;
    const std::string text = decoder.Push(token);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    if (generated + 1 == max_tokens) {
      ++generated;
      break;  // The last token is not fed: its state update would be unused here.
    }
    e.tokens = std::span<const int32_t>(&token, 1);
    RWKV_RETURN_IF_ERROR(backend->Forward({&e, 1}, &logits));
  }
  const std::string rest = decoder.Flush();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::putchar('\n');
  std::fflush(stdout);
  const auto t2 = Clock::now();
  const double prefill_s = std::chrono::duration<double>(t1 - t0).count();
  const double decode_s = std::chrono::duration<double>(t2 - t1).count();
  std::fprintf(stderr, "[%zu prompt tokens in %.3f s (%.1f tok/s); %d generated in %.3f s (%.1f tok/s); backend %s]\n",
               prompt_tokens.size(), prefill_s, prompt_tokens.size() / std::max(prefill_s, 1e-9), generated, decode_s,
               generated / std::max(decode_s, 1e-9), std::string(backend->name()).c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace rwkv

int main(int argc, char** argv) {
  using namespace rwkv;
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "help") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  absl::StatusOr<Flags> flags = ParseFlags(argc, argv);
  absl::Status st;
  if (!flags.ok()) {
    st = flags.status();
  } else if (cmd == "inspect") {
    st = Inspect(*flags);
  } else if (cmd == "logits") {
    st = LogitsCmd(*flags);
  } else if (cmd == "tokenize") {
    st = TokenizeCmd(*flags);
  } else if (cmd == "detokenize") {
    st = DetokenizeCmd(*flags);
  } else if (cmd == "generate") {
    st = GenerateCmd(*flags);
  } else {
    std::fprintf(stderr, "rwkv-cli: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
    return 2;
  }
  if (!st.ok()) {
    std::fprintf(stderr, "rwkv-cli %s: %s\n", cmd.c_str(), std::string(st.message()).c_str());
    return absl::IsInvalidArgument(st) && !flags.ok() ? 2 : 1;
  }
  return 0;
}
