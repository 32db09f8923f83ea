// PyTorch .pth (torch.save zip format): a restricted unpickler that builds only dicts and tensors.
// A .pth is an executable pickle; here it is parsed as data. Every global outside a short
// allow-list, and every opcode outside the set torch.save emits, is refused.
#include <cstring>
#include <map>
#include <memory>
#include <variant>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/status.h"
#include "engine/tensor_file.h"
#include "engine/zip_reader.h"

namespace rwkv {
namespace {

struct Value;
using ValuePtr = std::shared_ptr<Value>;

struct Global {
  std::string module, name;
  std::string Full() const { return module + "." + name; }
};
struct StorageRef {
  DType dtype;
  std::string key;
  int64_t numel;
};
struct DTypeTag {
  DType dtype;
};
struct Tuple {
  std::vector<ValuePtr> items;
};
struct List {
  std::vector<ValuePtr> items;
};
struct Dict {
  std::vector<std::pair<ValuePtr, ValuePtr>> items;
};
struct None {};

struct Value {
  std::variant<None, bool, int64_t, double, std::string, Global, StorageRef, DTypeTag, Tuple, List, Dict, TensorInfo> v;
};

template <typename T>
ValuePtr Make(T x) {
  auto p = std::make_shared<Value>();
  p->v = std::move(x);
  return p;
}

const char* KindName(const Value& v) {
  static const char* kNames[] = {"None",    "bool",  "int",   "float", "str",  "global",
                                 "storage", "dtype", "tuple", "list",  "dict", "tensor"};
  return kNames[v.v.index()];
}

// Storage classes and dtypes that may appear; anything else is an unknown global.
bool StorageDType(const std::string& name, DType* out) {
  static const std::pair<const char*, DType> kMap[] = {
      {"FloatStorage", DType::kF32},  {"HalfStorage", DType::kF16}, {"BFloat16Storage", DType::kBF16},
      {"DoubleStorage", DType::kF64}, {"LongStorage", DType::kI64}, {"IntStorage", DType::kI32},
      {"ShortStorage", DType::kI16},  {"CharStorage", DType::kI8},  {"ByteStorage", DType::kU8},
      {"BoolStorage", DType::kBool},  {"float32", DType::kF32},     {"float", DType::kF32},
      {"float16", DType::kF16},       {"half", DType::kF16},        {"bfloat16", DType::kBF16},
      {"float64", DType::kF64},       {"double", DType::kF64},      {"int64", DType::kI64},
      {"long", DType::kI64},          {"int32", DType::kI32},       {"int16", DType::kI16},
      {"int8", DType::kI8},           {"uint8", DType::kU8},        {"bool", DType::kBool}};
  for (const auto& [n, t] : kMap) {
    if (name == n) {
      *out = t;
      return true;
    }
  }
  return false;
}

bool AllowedGlobal(const Global& g) {
  if (g.module == "collections" && g.name == "OrderedDict") return true;
  if (g.module == "torch._utils" &&
      (g.name == "_rebuild_tensor_v2" || g.name == "_rebuild_tensor_v3" || g.name == "_rebuild_parameter")) {
    return true;
  }
  DType unused;
  return g.module == "torch" && StorageDType(g.name, &unused);
}

class Unpickler {
 public:
  Unpickler(const std::string& path, const uint8_t* data, size_t size,
            const std::map<std::string, const ZipEntry*>& records, const uint8_t* file_base)
      : path_(path), p_(data), end_(data + size), total_(size), records_(records), file_base_(file_base) {}

  absl::StatusOr<ValuePtr> Run() {
    while (true) {
      if (p_ >= end_) return Error("pickle ends without STOP (truncated data.pkl)");
      const size_t at = static_cast<size_t>(p_ - begin());
      const uint8_t op = *p_++;
      absl::Status st = Step(op, at);
      if (!st.ok()) return st;
      if (done_) break;
    }
    if (stack_.size() != 1) return Error("pickle leaves a malformed stack at STOP");
    return stack_.back();
  }

 private:
  const uint8_t* begin() const { return end_ - total_; }

  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": data.pkl: ", what));
  }

  absl::Status Need(size_t n) const {
    if (static_cast<size_t>(end_ - p_) < n) return Error("pickle data ends inside an opcode (truncated)");
    return absl::OkStatus();
  }
  template <typename T>
  absl::StatusOr<T> Read() {
    RWKV_RETURN_IF_ERROR(Need(sizeof(T)));
    T v;
    std::memcpy(&v, p_, sizeof v);
    p_ += sizeof v;
    return v;
  }
  absl::StatusOr<std::string> ReadBytes(uint64_t n) {
    RWKV_RETURN_IF_ERROR(Need(n));
    std::string s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return s;
  }
  absl::StatusOr<std::string> ReadLine() {
    const uint8_t* nl = static_cast<const uint8_t*>(std::memchr(p_, '\n', end_ - p_));
    if (!nl) return Error("GLOBAL name without a newline (truncated)");
    std::string s(reinterpret_cast<const char*>(p_), nl - p_);
    p_ = nl + 1;
    return s;
  }
  absl::StatusOr<ValuePtr> Pop() {
    if (stack_.size() <= MarkFloor()) return Error("pickle stack underflow");
    ValuePtr v = stack_.back();
    stack_.pop_back();
    return v;
  }
  size_t MarkFloor() const { return marks_.empty() ? 0 : marks_.back(); }
  absl::StatusOr<std::vector<ValuePtr>> PopMark() {
    if (marks_.empty()) return Error("pickle pops to a MARK that was never set");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> items(stack_.begin() + m, stack_.end());
    stack_.resize(m);
    return items;
  }
  // A length of type LenT, then that many bytes, pushed as a string.
  template <typename LenT>
  absl::Status PushString() {
    RWKV_ASSIGN_OR_RETURN(LenT n, Read<LenT>());
    RWKV_ASSIGN_OR_RETURN(std::string s, ReadBytes(n));
    return Push(Make(std::move(s)));
  }
  absl::Status Push(ValuePtr v) {
    if (stack_.size() > 10'000'000) return Error("pickle stack exceeds 10M entries");
    stack_.push_back(std::move(v));
    return absl::OkStatus();
  }
  absl::Status PushGlobal(Global g) {
    if (!AllowedGlobal(g)) {
      return Error(absl::StrCat("unknown pickle global ", g.Full(),
                                "; a checkpoint may hold only tensors and dicts, so nothing else is loaded"));
    }
    DType t;
    if (g.module == "torch" && !absl::EndsWith(g.name, "Storage") && StorageDType(g.name, &t)) {
      return Push(Make(DTypeTag{t}));
    }
    return Push(Make(std::move(g)));
  }
  absl::Status Memo(uint64_t idx) {
    if (stack_.empty()) return Error("memo store with an empty stack");
    memo_[idx] = stack_.back();
    return absl::OkStatus();
  }
  absl::Status Fetch(uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) return Error(absl::StrCat("memo entry ", idx, " fetched before it was stored"));
    return Push(it->second);
  }

  absl::StatusOr<ValuePtr> PersistentLoad(const ValuePtr& pid) {
    const Tuple* t = std::get_if<Tuple>(&pid->v);
    if (!t || t->items.size() != 5)
      return Error("persistent id is not a ('storage', class, key, location, numel) tuple");
    const std::string* tag = std::get_if<std::string>(&t->items[0]->v);
    const Global* cls = std::get_if<Global>(&t->items[1]->v);
    const DTypeTag* dtag = std::get_if<DTypeTag>(&t->items[1]->v);
    const std::string* key = std::get_if<std::string>(&t->items[2]->v);
    const int64_t* numel = std::get_if<int64_t>(&t->items[4]->v);
    if (!tag || *tag != "storage" || !(cls || dtag) || !key || !numel || *numel < 0) {
      return Error("persistent id is not a ('storage', class, key, location, numel) tuple");
    }
    StorageRef s;
    s.key = *key;
    s.numel = *numel;
    if (dtag) {
      s.dtype = dtag->dtype;
    } else if (!StorageDType(cls->name, &s.dtype)) {
      return Error(absl::StrCat("storage class ", cls->Full(), " is not a tensor storage"));
    }
    return Make(std::move(s));
  }

  absl::StatusOr<ValuePtr> Reduce(const ValuePtr& fn, const ValuePtr& args_v) {
    const Global* g = std::get_if<Global>(&fn->v);
    const Tuple* args = std::get_if<Tuple>(&args_v->v);
    if (!g || !args)
      return Error(absl::StrCat("REDUCE of a ", KindName(*fn), "; only allowed callables may be called"));
    const auto& a = args->items;
    if (g->name == "OrderedDict") {
      if (!a.empty()) return Error("OrderedDict called with arguments");
      return Make(Dict{});
    }
    if (g->name == "_rebuild_parameter") {
      if (a.size() < 1 || !std::holds_alternative<TensorInfo>(a[0]->v))
        return Error("_rebuild_parameter of a non-tensor");
      return a[0];
    }
    // _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])
    // _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype[, metadata])
    if (a.size() < 4) return Error(absl::StrCat(g->name, " called with ", a.size(), " arguments"));
    const StorageRef* s = std::get_if<StorageRef>(&a[0]->v);
    const int64_t* offset = std::get_if<int64_t>(&a[1]->v);
    const Tuple* size = std::get_if<Tuple>(&a[2]->v);
    const Tuple* stride = std::get_if<Tuple>(&a[3]->v);
    if (!s || !offset || !size || !stride || size->items.size() != stride->items.size() || *offset < 0) {
      return Error(absl::StrCat(g->name, " arguments are not (storage, offset, size, stride, ...)"));
    }
    TensorInfo t;
    t.dtype = s->dtype;
    if (g->name == "_rebuild_tensor_v3") {
      if (a.size() < 7 || !std::holds_alternative<DTypeTag>(a[6]->v))
        return Error("_rebuild_tensor_v3 without a dtype");
      t.dtype = std::get<DTypeTag>(a[6]->v).dtype;
    }
    int64_t last = *offset;  // Largest storage element addressed.
    bool empty = false;
    for (size_t i = 0; i < size->items.size(); ++i) {
      const int64_t* sz = std::get_if<int64_t>(&size->items[i]->v);
      const int64_t* st = std::get_if<int64_t>(&stride->items[i]->v);
      if (!sz || !st || *sz < 0 || *st < 0 || *sz > (1ll << 40) || *st > (1ll << 40)) {
        return Error("tensor size/stride entries must be non-negative integers");
      }
      t.shape.push_back(*sz);
      t.strides.push_back(*st);
      if (*sz == 0)
        empty = true;
      else
        last += (*sz - 1) * *st;
    }
    const std::string record = prefix_ + "data/" + s->key;
    auto it = records_.find(record);
    if (it == records_.end()) return Error(absl::StrCat("storage record ", record, " is missing from the archive"));
    const size_t elem = DTypeSize(t.dtype);
    if (it->second->size < static_cast<uint64_t>(s->numel) * DTypeSize(s->dtype)) {
      return Error(absl::StrCat("storage record ", record, " holds ", it->second->size, " bytes, expected ",
                                s->numel * DTypeSize(s->dtype), " (truncated file?)"));
    }
    if (!empty && static_cast<uint64_t>(last + 1) * elem > it->second->size) {
      return Error(absl::StrCat("a tensor view addresses element ", last, " of storage ", s->key, " which holds ",
                                it->second->size / elem));
    }
    t.data = file_base_ + it->second->data_offset + *offset * elem;
    return Make(std::move(t));
  }

  absl::Status SetItems(Dict* d, const std::vector<ValuePtr>& kv) {
    if (kv.size() % 2) return Error("SETITEMS with an odd number of stack items");
    for (size_t i = 0; i < kv.size(); i += 2) d->items.emplace_back(kv[i], kv[i + 1]);
    return absl::OkStatus();
  }

  absl::Status Step(uint8_t op, size_t at) {
    switch (op) {
      case 0x80: {  // PROTO
        RWKV_ASSIGN_OR_RETURN(uint8_t proto, Read<uint8_t>());
        if (proto > 5) return Error(absl::StrCat("pickle protocol ", int{proto}, " is newer than 5"));
        return absl::OkStatus();
      }
      case 0x95:  // FRAME
        return Read<uint64_t>().status();
      case '.':
        done_ = true;
        return absl::OkStatus();
      case 'c': {  // GLOBAL
        RWKV_ASSIGN_OR_RETURN(std::string module, ReadLine());
        RWKV_ASSIGN_OR_RETURN(std::string name, ReadLine());
        return PushGlobal(Global{module, name});
      }
      case 0x93: {  // STACK_GLOBAL
        RWKV_ASSIGN_OR_RETURN(ValuePtr name, Pop());
        RWKV_ASSIGN_OR_RETURN(ValuePtr module, Pop());
        const auto* n = std::get_if<std::string>(&name->v);
        const auto* m = std::get_if<std::string>(&module->v);
        if (!n || !m) return Error("STACK_GLOBAL of non-strings");
        return PushGlobal(Global{*m, *n});
      }
      case 'q': {
        RWKV_ASSIGN_OR_RETURN(uint8_t i, Read<uint8_t>());
        return Memo(i);
      }
      case 'r': {
        RWKV_ASSIGN_OR_RETURN(uint32_t i, Read<uint32_t>());
        return Memo(i);
      }
      case 0x94:
        return Memo(memo_.size());  // MEMOIZE
      case 'h': {
        RWKV_ASSIGN_OR_RETURN(uint8_t i, Read<uint8_t>());
        return Fetch(i);
      }
      case 'j': {
        RWKV_ASSIGN_OR_RETURN(uint32_t i, Read<uint32_t>());
        return Fetch(i);
      }
      case '(':
        marks_.push_back(stack_.size());
        return absl::OkStatus();
      case 't': {
        RWKV_ASSIGN_OR_RETURN(auto items, PopMark());
        return Push(Make(Tuple{std::move(items)}));
      }
      case ')':
        return Push(Make(Tuple{}));
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        std::vector<ValuePtr> items(op - 0x84);
        for (size_t i = items.size(); i-- > 0;) {
          RWKV_ASSIGN_OR_RETURN(items[i], Pop());
        }
        return Push(Make(Tuple{std::move(items)}));
      }
      case '}':
        return Push(Make(Dict{}));
      case ']':
        return Push(Make(List{}));
      // Strings and bytes (unicode and bytes alike become std::string), by length width.
      case 'X':
      case 'B':
        return PushString<uint32_t>();
      case 0x8c:
      case 'C':
        return PushString<uint8_t>();
      case 0x8d:
        return PushString<uint64_t>();
      case 'K': {
        RWKV_ASSIGN_OR_RETURN(uint8_t v, Read<uint8_t>());
        return Push(Make(int64_t{v}));
      }
      case 'M': {
        RWKV_ASSIGN_OR_RETURN(uint16_t v, Read<uint16_t>());
        return Push(Make(int64_t{v}));
      }
      case 'J': {
        RWKV_ASSIGN_OR_RETURN(int32_t v, Read<int32_t>());
        return Push(Make(int64_t{v}));
      }
      case 0x8a: {  // LONG1: n-byte little-endian two's complement
        RWKV_ASSIGN_OR_RETURN(uint8_t n, Read<uint8_t>());
        if (n > 8) return Error("LONG1 integer wider than 64 bits");
        RWKV_RETURN_IF_ERROR(Need(n));
        uint64_t u = 0;
        for (int i = 0; i < n; ++i) u |= static_cast<uint64_t>(p_[i]) << (8 * i);
        if (n > 0 && n < 8 && (p_[n - 1] & 0x80)) u |= ~uint64_t{0} << (8 * n);
        p_ += n;
        return Push(Make(static_cast<int64_t>(u)));
      }
      case 'G': {  // BINFLOAT, big-endian
        RWKV_ASSIGN_OR_RETURN(uint64_t be, Read<uint64_t>());
        const uint64_t le = __builtin_bswap64(be);
        double d;
        std::memcpy(&d, &le, sizeof d);
        return Push(Make(d));
      }
      case 0x88:
        return Push(Make(true));
      case 0x89:
        return Push(Make(false));
      case 'N':
        return Push(Make(None{}));
      case '0':
        return Pop().status();
      case '1':
        return PopMark().status();
      case 'Q': {  // BINPERSID
        RWKV_ASSIGN_OR_RETURN(ValuePtr pid, Pop());
        RWKV_ASSIGN_OR_RETURN(ValuePtr s, PersistentLoad(pid));
        return Push(std::move(s));
      }
      case 'R': {  // REDUCE
        RWKV_ASSIGN_OR_RETURN(ValuePtr args, Pop());
        RWKV_ASSIGN_OR_RETURN(ValuePtr fn, Pop());
        RWKV_ASSIGN_OR_RETURN(ValuePtr out, Reduce(fn, args));
        return Push(std::move(out));
      }
      case 'b':  // BUILD: object state (empty hooks dicts, parameter state) carries nothing we need.
        return Pop().status();
      case 's': {  // SETITEM
        RWKV_ASSIGN_OR_RETURN(ValuePtr v, Pop());
        RWKV_ASSIGN_OR_RETURN(ValuePtr k, Pop());
        if (stack_.size() <= MarkFloor()) return Error("SETITEM without a dict");
        Dict* d = std::get_if<Dict>(&stack_.back()->v);
        if (!d) return Error("SETITEM on a non-dict");
        return SetItems(d, {k, v});
      }
      case 'u': {  // SETITEMS
        RWKV_ASSIGN_OR_RETURN(auto kv, PopMark());
        if (stack_.empty()) return Error("SETITEMS without a dict");
        Dict* d = std::get_if<Dict>(&stack_.back()->v);
        if (!d) return Error("SETITEMS on a non-dict");
        return SetItems(d, kv);
      }
      case 'a': {  // APPEND
        RWKV_ASSIGN_OR_RETURN(ValuePtr v, Pop());
        if (stack_.empty()) return Error("APPEND without a list");
        List* l = std::get_if<List>(&stack_.back()->v);
        if (!l) return Error("APPEND on a non-list");
        l->items.push_back(std::move(v));
        return absl::OkStatus();
      }
      case 'e': {  // APPENDS
        RWKV_ASSIGN_OR_RETURN(auto items, PopMark());
        if (stack_.empty()) return Error("APPENDS without a list");
        List* l = std::get_if<List>(&stack_.back()->v);
        if (!l) return Error("APPENDS on a non-list");
        for (auto& v : items) l->items.push_back(std::move(v));
        return absl::OkStatus();
      }
      default:
        return Error(absl::StrCat("unsupported pickle opcode 0x", absl::Hex(op, absl::kZeroPad2), " at byte ", at,
                                  "; only the opcodes torch.save writes are accepted"));
    }
  }

 public:
  void set_prefix(std::string p) { prefix_ = std::move(p); }

 private:
  std::string path_;
  const uint8_t* p_;
  const uint8_t* end_;
  size_t total_ = 0;
  const std::map<std::string, const ZipEntry*>& records_;
  const uint8_t* file_base_;
  std::string prefix_;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, ValuePtr> memo_;
  bool done_ = false;
};

}  // namespace

absl::StatusOr<std::vector<TensorInfo>> ParsePth(const MappedFile& file) {
  RWKV_ASSIGN_OR_RETURN(std::vector<ZipEntry> entries, ReadZipDirectory(file));
  std::map<std::string, const ZipEntry*> records;
  const ZipEntry* pkl = nullptr;
  for (const ZipEntry& e : entries) {
    records[e.name] = &e;
    if (absl::EndsWith(e.name, "data.pkl") && (e.name == "data.pkl" || absl::EndsWith(e.name, "/data.pkl"))) {
      if (pkl) return absl::InvalidArgumentError(absl::StrCat(file.path(), ": archive holds more than one data.pkl"));
      pkl = &e;
    }
  }
  if (!pkl)
    return absl::InvalidArgumentError(
        absl::StrCat(file.path(), ": zip archive has no data.pkl: not a torch.save checkpoint"));
  const std::string prefix = pkl->name.substr(0, pkl->name.size() - std::strlen("data.pkl"));
  for (const ZipEntry& e : entries) {
    if (e.method != 0 && (e.name == pkl->name || absl::StartsWith(e.name, prefix + "data/"))) {
      return absl::InvalidArgumentError(absl::StrCat(file.path(), ": entry ", e.name, " is compressed (method ",
                                                     e.method, "); torch.save writes stored entries"));
    }
  }
  if (auto it = records.find(prefix + "byteorder"); it != records.end()) {
    std::string order(reinterpret_cast<const char*>(file.data() + it->second->data_offset), it->second->size);
    if (order != "little") {
      return absl::InvalidArgumentError(
          absl::StrCat(file.path(), ": byteorder is '", order, "'; only little-endian checkpoints are supported"));
    }
  }
  Unpickler u(file.path(), file.data() + pkl->data_offset, pkl->size, records, file.data());
  u.set_prefix(prefix);
  RWKV_ASSIGN_OR_RETURN(ValuePtr root, u.Run());
  const Dict* dict = std::get_if<Dict>(&root->v);
  if (!dict) {
    return absl::InvalidArgumentError(absl::StrCat(file.path(), ": top-level object is a ", KindName(*root),
                                                   ", expected a dict of tensors (a state dict)"));
  }
  std::vector<TensorInfo> tensors;
  for (const auto& [k, v] : dict->items) {
    const std::string* name = std::get_if<std::string>(&k->v);
    if (!name)
      return absl::InvalidArgumentError(
          absl::StrCat(file.path(), ": state dict key is a ", KindName(*k), ", expected a string"));
    const TensorInfo* t = std::get_if<TensorInfo>(&v->v);
    if (!t) {
      return absl::InvalidArgumentError(absl::StrCat(file.path(), ": entry ", *name, " is a ", KindName(*v),
                                                     ", expected a tensor (a plain state dict of tensors)"));
    }
    TensorInfo out = *t;
    out.name = *name;
    tensors.push_back(std::move(out));
  }
  return tensors;
}

}  // namespace rwkv
