// safetensors reader (mmap, single file or sharded) and atomic writer. PHI3.md §6.
//
// Layout: u64 little-endian N | N bytes of UTF-8 JSON header (may be space-padded) | data buffer.
// The reader distrusts every byte: the header is parsed with duplicate-key detection, every tensor's
// offsets are checked against its shape (checked multiplication) and the offsets must tile the data
// buffer exactly (start at 0, no gaps, no overlaps, end at the file end).
#include "qins/io/safetensors.h"

#include "qins/util/files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

namespace qins::st {

namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100000000;  // PHI3.md §6
constexpr int kMaxJsonDepth = 64;                // a real header nests 3 deep

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw Error(path + ": " + problem);
}

std::string errno_text() { return std::strerror(errno); }

std::string shape_text(const std::vector<int64_t>& shape) {
  std::ostringstream s;
  s << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << ']';
  return s.str();
}

std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  if (dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

// Parses JSON text, rejecting duplicate keys at any depth (nlohmann silently keeps the last one)
// and absurd nesting. Invalid UTF-8 inside strings is rejected by nlohmann's lexer.
json parse_json_strict(const char* first, const char* last, const std::string& path,
                       const char* what) {
  std::vector<std::set<std::string>> keys_per_object;
  auto on_event = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
    if (depth > kMaxJsonDepth) fail(path, std::string(what) + " nests deeper than 64 levels");
    switch (event) {
      case json::parse_event_t::object_start:
        keys_per_object.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!keys_per_object.empty()) keys_per_object.pop_back();
        break;
      case json::parse_event_t::key: {
        const std::string& key = parsed.get_ref<const std::string&>();
        if (!keys_per_object.empty() && !keys_per_object.back().insert(key).second)
          fail(path, std::string(what) + " has duplicate key '" + key + "'");
        break;
      }
      default:
        break;
    }
    return true;
  };
  // nlohmann's lexer takes a NUL byte for the end of input and would ignore what follows.
  if (std::memchr(first, 0, static_cast<std::size_t>(last - first)))
    fail(path, std::string("invalid ") + what + " JSON: contains a NUL byte");
  try {
    return json::parse(first, last, on_event, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    fail(path, std::string("invalid ") + what + " JSON: " + e.what());
  }
}

bool parse_dtype(const std::string& s, DType* out) {
  if (s == "F32") *out = DType::F32;
  else if (s == "BF16") *out = DType::BF16;
  else if (s == "F16") *out = DType::F16;
  else return false;
  return true;
}

// a * b into *out; false on overflow (all operands non-negative).
bool mul_checked(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return false;
  *out = a * b;
  return true;
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

uint16_t read_u16_le(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

uint32_t read_u32_le(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// One tensor entry of the header -> view (data pointer set later). Checks dtype, shape, offsets.
TensorView parse_entry(const std::string& path, const std::string& name, const json& e,
                       uint64_t* begin, uint64_t* end) {
  const std::string where = "tensor '" + name + "'";
  if (!e.is_object()) fail(path, where + " header entry is not a JSON object");
  TensorView v;
  v.name = name;
  v.file = path;

  auto dt = e.find("dtype");
  if (dt == e.end() || !dt->is_string()) fail(path, where + " has no string \"dtype\"");
  const std::string& dts = dt->get_ref<const std::string&>();
  if (!parse_dtype(dts, &v.dtype))
    fail(path, where + " has unsupported dtype '" + dts + "' (supported: F32, BF16, F16)");

  auto sh = e.find("shape");
  if (sh == e.end() || !sh->is_array()) fail(path, where + " has no \"shape\" array");
  uint64_t numel = 1;
  for (const json& d : *sh) {
    if (!d.is_number_integer()) fail(path, where + " has a non-integer dimension in its shape");
    if (d.is_number_unsigned()) {
      uint64_t u = d.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail(path, where + " has a dimension too large: " + std::to_string(u));
      v.shape.push_back(static_cast<int64_t>(u));
    } else {
      int64_t s = d.get<int64_t>();
      if (s < 0) fail(path, where + " has a negative dimension " + std::to_string(s) + " in its shape");
      v.shape.push_back(s);
    }
  }
  bool overflow = false;
  for (int64_t d : v.shape) overflow = overflow || !mul_checked(numel, static_cast<uint64_t>(d), &numel);
  uint64_t nbytes = 0;
  overflow = overflow || !mul_checked(numel, dtype_size(v.dtype), &nbytes);
  if (overflow)
    fail(path, where + " shape " + shape_text(v.shape) + " of " + dts + " overflows 64-bit byte size");

  auto off = e.find("data_offsets");
  if (off == e.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned())
    fail(path, where + " needs \"data_offsets\" as two non-negative integers");
  *begin = (*off)[0].get<uint64_t>();
  *end = (*off)[1].get<uint64_t>();
  if (*end < *begin)
    fail(path, where + " data_offsets [" + std::to_string(*begin) + ", " + std::to_string(*end) +
                   "] end before they begin");
  if (*end - *begin != nbytes)
    fail(path, where + " data_offsets [" + std::to_string(*begin) + ", " + std::to_string(*end) +
                   "] do not match shape " + shape_text(v.shape) + " of " + dts + " (" +
                   std::to_string(nbytes) + " bytes)");
  v.nbytes = static_cast<std::size_t>(nbytes);
  return v;
}

}  // namespace

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
  }
  return "?";
}

std::size_t dtype_size(DType d) { return d == DType::F32 ? 4 : 2; }

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated (no overflow) when the header was read
  return n;
}

// ---------------------------------------------------------------------------------------------
// File

std::unique_ptr<File> File::parse(const uint8_t* data, std::size_t size, const std::string& name) {
  if (size < 8)
    fail(name, "file is " + std::to_string(size) + " bytes, too short for the 8-byte header length");
  const uint64_t n = read_u64_le(data);
  if (n > kMaxHeaderBytes)
    fail(name, "header length " + std::to_string(n) + " exceeds the 100000000-byte limit");
  if (n > size - 8)
    fail(name, "header length " + std::to_string(n) + " runs past the end of the file (" +
                   std::to_string(size) + " bytes)");
  const char* text = reinterpret_cast<const char*>(data + 8);
  json header = parse_json_strict(text, text + n, name, "header");
  if (!header.is_object()) fail(name, "header is not a JSON object");

  std::unique_ptr<File> f(new File());
  f->path_ = name;
  f->size_ = size;
  const uint8_t* buffer = data + 8 + n;
  const uint64_t buffer_size = size - 8 - n;

  struct Span {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Span> spans;
  spans.reserve(header.size());
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) fail(name, "__metadata__ is not a JSON object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) fail(name, "__metadata__ value for '" + m.key() + "' is not a string");
        f->metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    uint64_t begin = 0, end = 0;
    TensorView v = parse_entry(name, it.key(), *it, &begin, &end);
    auto ins = f->tensors_.emplace(it.key(), std::move(v));
    if (!ins.second) fail(name, "duplicate tensor name '" + it.key() + "'");  // keys are unique
    spans.push_back({begin, end, &ins.first->first});
  }

  // Offsets must tile [0, buffer_size) exactly. Zero-byte tensors may share a boundary.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (const Span& s : spans) {
    const std::string range = "[" + std::to_string(s.begin) + ", " + std::to_string(s.end) + "]";
    if (s.begin < cursor)
      fail(name, "tensor '" + *s.name + "' data_offsets " + range +
                     " overlap the previous tensor (which ends at " + std::to_string(cursor) + ")");
    if (s.begin > cursor)
      fail(name, "tensor '" + *s.name + "' data_offsets " + range + " leave a gap after byte " +
                     std::to_string(cursor) + (cursor == 0 ? " (data must start at offset 0)" : ""));
    cursor = s.end;
  }
  if (cursor != buffer_size)
    fail(name, "tensor data ends at byte " + std::to_string(cursor) + " of a " +
                   std::to_string(buffer_size) + "-byte data buffer (must end exactly at the file end)");

  for (const Span& s : spans) {
    TensorView& v = f->tensors_.at(*s.name);
    v.data = buffer + s.begin;
  }
  return f;
}

std::unique_ptr<File> File::open(const std::string& path) {
  // O_NONBLOCK: a named pipe must not block the open; its type is refused just below.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail(path, "cannot open: " + errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    std::string err = errno_text();
    ::close(fd);
    fail(path, "cannot stat: " + err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "not a regular file");
  }
  const std::size_t size = static_cast<std::size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    fail(path, "file is " + std::to_string(size) + " bytes, too short for the 8-byte header length");
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const std::string map_err = map == MAP_FAILED ? errno_text() : std::string();
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) fail(path, "cannot mmap: " + map_err);
  try {
    std::unique_ptr<File> f = parse(static_cast<const uint8_t*>(map), size, path);
    f->map_ = map;
    return f;
  } catch (...) {
    ::munmap(map, size);
    throw;
  }
}

File::~File() {
  if (map_) ::munmap(map_, size_);
}

// ---------------------------------------------------------------------------------------------
// Checkpoint

std::unique_ptr<Checkpoint> Checkpoint::open_dir(const std::string& dir) {
  std::unique_ptr<Checkpoint> c(new Checkpoint());
  c->dir_ = dir;
  const std::string single = join_path(dir, "model.safetensors");
  const std::string index_path = join_path(dir, "model.safetensors.index.json");
  struct stat st {};
  if (::stat(single.c_str(), &st) == 0) {
    // Like transformers: a single model.safetensors wins over an index.
    c->files_.push_back(File::open(single));
    for (const auto& kv : c->files_.back()->tensors()) c->index_[kv.first] = &kv.second;
    return c;
  }
  if (::stat(index_path.c_str(), &st) != 0)
    fail(dir, "no model.safetensors or model.safetensors.index.json in the model directory");

  const std::string text = read_file(index_path, kMaxHeaderBytes);  // regular files only, capped
  json index = parse_json_strict(text.data(), text.data() + text.size(), index_path, "index");
  if (!index.is_object()) fail(index_path, "index is not a JSON object");
  auto wm = index.find("weight_map");
  if (wm == index.end() || !wm->is_object()) fail(index_path, "no \"weight_map\" object");
  if (wm->empty()) fail(index_path, "\"weight_map\" is empty");

  // Open every referenced shard once.
  std::map<std::string, const File*> shards;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it->is_string()) fail(index_path, "weight_map entry for '" + it.key() + "' is not a string");
    const std::string& shard = it->get_ref<const std::string&>();
    if (shard.empty() || shard.find('/') != std::string::npos ||
        shard.find('\\') != std::string::npos || shard.find("..") != std::string::npos)
      fail(index_path, "weight_map entry for '" + it.key() + "' names shard '" + shard +
                           "' outside the model directory (no '/', '\\' or '..' allowed)");
    if (shards.count(shard)) continue;
    c->files_.push_back(File::open(join_path(dir, shard)));
    shards[shard] = c->files_.back().get();
  }
  // Names unique across shards; every shard tensor listed in the index under that shard.
  std::map<std::string, const File*> owner;
  for (const auto& f : c->files_) {
    for (const auto& kv : f->tensors()) {
      auto prev = owner.find(kv.first);
      if (prev != owner.end())
        fail(index_path, "tensor '" + kv.first + "' appears in both " + prev->second->path() +
                             " and " + f->path());
      owner[kv.first] = f.get();
    }
  }
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    const File* shard = shards.at(it->get_ref<const std::string&>());
    auto t = shard->tensors().find(it.key());
    if (t == shard->tensors().end())
      fail(index_path, "weight_map puts tensor '" + it.key() + "' in " + shard->path() +
                           ", which does not contain it");
    c->index_[it.key()] = &t->second;
  }
  for (const auto& kv : owner) {
    if (!c->index_.count(kv.first))
      fail(index_path, "shard " + kv.second->path() + " holds tensor '" + kv.first +
                           "' that the weight_map does not list");
  }
  return c;
}

const TensorView* Checkpoint::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const TensorView& Checkpoint::get(const std::string& name) const {
  const TensorView* t = find(name);
  if (!t) fail(dir_, "tensor '" + name + "' not found in the checkpoint");
  return *t;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& kv : index_) out.push_back(kv.first);
  return out;
}

int64_t Checkpoint::total_bytes() const {
  int64_t n = 0;
  for (const auto& f : files_) n += static_cast<int64_t>(f->file_size());
  return n;
}

// ---------------------------------------------------------------------------------------------
// Conversions

uint16_t float_to_bf16(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u)  // NaN: keep sign and top payload, force quiet bit
    return static_cast<uint16_t>((u >> 16) | 0x0040u);
  // Round to nearest, ties to even: add 0x7fff plus the lowest kept bit. Overflow reaches inf.
  const uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(rounded >> 16);
}

float bf16_to_float(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

uint16_t float_to_f16(float f) {
  const uint32_t u = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) {  // inf or NaN
    if (a == 0x7f800000u) return sign | 0x7c00u;
    return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // quiet NaN
  }
  if (a >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds (ties-to-even) to inf
  if (a >= 0x38800000u) {                       // normal half: >= 2^-14
    const uint32_t exp = (a >> 23) - 127 + 15;
    const uint32_t mant = a & 0x7fffffu;
    uint32_t h = (exp << 10) | (mant >> 13);
    const uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry bumps the exponent
    return static_cast<uint16_t>(sign | h);
  }
  if (a < 0x33000000u) return sign;  // below 2^-25: rounds to zero
  // Subnormal half: value in units of 2^-24 is mant >> (126 - exp), rounded to nearest even.
  const uint32_t exp = a >> 23;                     // 102..112
  const uint32_t mant = (a & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126 - exp;                 // 14..24
  uint32_t h = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (h & 1u))) ++h;  // may carry into the smallest normal
  return static_cast<uint16_t>(sign | h);
}

float f16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;  // mant * 2^-24, exact
    return sign ? -v : v;
  }
  if (exp == 31) return bits_float(sign | 0x7f800000u | (mant << 13));
  return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
}

namespace {

constexpr bool kLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

// All 65536 halves decoded once (256 KiB): a load per element beats the branches of f16_to_float.
const float* f16_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t h = 0; h < 65536; ++h) t[h] = f16_to_float(static_cast<uint16_t>(h));
    return t;
  }();
  return table.data();
}

}  // namespace

// Where load time goes for bf16 checkpoints: the loops below are memcpy-based so that unaligned
// input is fine and the compiler can vectorize them.
void to_float32(const TensorView& t, float* out) {
  const std::size_t n = static_cast<std::size_t>(t.numel());
  const uint8_t* p = t.data;  // possibly unaligned: never cast the pointer
  switch (t.dtype) {
    case DType::F32:
      if (kLittleEndian) {
        std::memcpy(out, p, n * 4);
      } else {
        for (std::size_t i = 0; i < n; ++i) out[i] = bits_float(read_u32_le(p + 4 * i));
      }
      break;
    case DType::BF16:
      for (std::size_t i = 0; i < n; ++i) {
        uint16_t h;
        if (kLittleEndian) std::memcpy(&h, p + 2 * i, 2);
        else h = read_u16_le(p + 2 * i);
        const uint32_t u = static_cast<uint32_t>(h) << 16;
        std::memcpy(out + i, &u, 4);
      }
      break;
    case DType::F16: {
      const float* table = f16_table();
      for (std::size_t i = 0; i < n; ++i) {
        uint16_t h;
        if (kLittleEndian) std::memcpy(&h, p + 2 * i, 2);
        else h = read_u16_le(p + 2 * i);
        out[i] = table[h];
      }
      break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

void write_file(const std::string& path, const std::vector<TensorData>& tensors,
                const std::map<std::string, std::string>& metadata) {
  // Header: offsets contiguous in the order given.
  json header = json::object();
  if (!metadata.empty()) {
    json meta = json::object();
    for (const auto& kv : metadata) meta[kv.first] = kv.second;
    header["__metadata__"] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const TensorData& t : tensors) {
    const std::string where = "tensor '" + t.name + "'";
    if (t.name.empty() || t.name == "__metadata__") fail(path, "cannot write a tensor named '" + t.name + "'");
    if (header.contains(t.name)) fail(path, "duplicate tensor name '" + t.name + "'");
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) fail(path, where + " has a negative dimension in shape " + shape_text(t.shape));
      if (!mul_checked(numel, static_cast<uint64_t>(d), &numel))
        fail(path, where + " shape " + shape_text(t.shape) + " overflows");
    }
    uint64_t nbytes = 0;
    if (!mul_checked(numel, dtype_size(t.dtype), &nbytes) || nbytes != t.bytes.size())
      fail(path, where + " has " + std::to_string(t.bytes.size()) + " bytes, but shape " +
                     shape_text(t.shape) + " of " + dtype_name(t.dtype) + " needs " +
                     std::to_string(numel * dtype_size(t.dtype)));
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    fail(path, std::string("cannot encode header: ") + e.what());  // e.g. invalid UTF-8 in a name
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));

  AtomicFile f(path);  // temp file next to it, fsync, rename; removed on any failure
  f.write(len, 8);
  f.write(text.data(), text.size());
  for (const TensorData& t : tensors) f.write(t.bytes.data(), t.bytes.size());
  f.commit();
}

}  // namespace qins::st
