// ContainerReader: mmap, validate every header/directory field before use, decode chunks
// straight into caller buffers (on a thread pool: container_decode.cpp).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>

#include "format_internal.h"
#include "qins/compression/bitstream.h"
#include "qins/compression/checksum.h"
#include "qins/compression/container.h"

namespace qins::comp {
namespace {

// Bounds-checked little-endian cursor over the directory; every read names what it reads.
class Cursor {
 public:
  Cursor(const uint8_t* p, uint64_t n, const std::string& file) : p_(p), n_(n), file_(file) {}
  uint64_t left() const { return n_ - pos_; }
  uint64_t pos() const { return pos_; }
  const uint8_t* take(uint64_t k, const char* what) {
    if (k > left())
      throw FormatError(file_ + ": directory truncated at byte " + std::to_string(pos_) +
                        " while reading " + what);
    const uint8_t* r = p_ + pos_;
    pos_ += k;
    return r;
  }
  uint8_t u8(const char* w) { return *take(1, w); }
  uint16_t u16(const char* w) { const uint8_t* b = take(2, w); return uint16_t(b[0] | b[1] << 8); }
  uint32_t u32(const char* w) { return load_le32(take(4, w)); }
  uint64_t u64(const char* w) { return load_le64(take(8, w)); }
  std::string str(unsigned width, const char* w) {
    const uint64_t len = width == 1 ? u8(w) : width == 2 ? u16(w) : u32(w);
    const uint8_t* b = take(len, w);
    return std::string(reinterpret_cast<const char*>(b), std::size_t(len));
  }
  // A count of records that each need >= min_bytes: capped by the bytes left, so a hostile
  // count cannot trigger a huge reserve().
  uint64_t count(uint64_t c, uint64_t min_bytes, const char* what) {
    if (c > left() / min_bytes)
      throw FormatError(file_ + ": directory count of " + what + " (" + std::to_string(c) +
                        ") exceeds what the directory can hold");
    return c;
  }

 private:
  const uint8_t* p_;
  uint64_t n_, pos_ = 0;
  const std::string& file_;
};

struct Mapping {
  void* addr = nullptr;
  std::size_t size = 0;
  ~Mapping() {
    if (addr) ::munmap(addr, size);
  }
};

bool add_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_add_overflow(a, b, out); }

// Maps the whole file read-only. Large files are placed at a 2 MiB-aligned address and marked
// MADV_HUGEPAGE: file offset and address then agree modulo 2 MiB, so where the kernel keeps the
// file in 2 MiB page-cache folios (ext4 on Linux 6.x does for a file read through such a
// mapping) it maps them with one page-table entry each, and raw tensors used in place stream
// from 2 MiB pages like the huge-page copies the loader makes of decoded ones.
void* map_file(int fd, std::size_t size) {
#if defined(__linux__)
  constexpr std::size_t kHuge = std::size_t(2) << 20;
  if (size >= 2 * kHuge) {
    void* res = ::mmap(nullptr, size + kHuge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (res != MAP_FAILED) {
      const auto base = reinterpret_cast<uintptr_t>(res);
      const uintptr_t at = (base + kHuge - 1) & ~uintptr_t(kHuge - 1);
      void* a = ::mmap(reinterpret_cast<void*>(at), size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
      if (a == MAP_FAILED) {
        const int e = errno;
        ::munmap(res, size + kHuge);
        errno = e;
        return MAP_FAILED;
      }
      // Give back the reservation around the file mapping (page-rounded end).
      const std::size_t page = std::size_t(::sysconf(_SC_PAGESIZE));
      const uintptr_t end = at + (size + page - 1) / page * page;
      if (at > base) ::munmap(res, at - base);
      if (base + size + kHuge > end) ::munmap(reinterpret_cast<void*>(end), base + size + kHuge - end);
#if defined(MADV_HUGEPAGE)
      (void)::madvise(a, size, MADV_HUGEPAGE);
#endif
      return a;
    }
  }
#endif
  return ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
}

}  // namespace

const SectionInfo* TensorInfo::section(const std::string& n) const {
  for (const auto& s : sections)
    if (s.name == n) return &s;
  return nullptr;
}

uint64_t SectionInfo::raw_offset_of_chunk(std::size_t i) const {
  uint64_t off = 0;
  for (std::size_t k = 0; k < i && k < chunks.size(); ++k) off += chunks[k].raw_size;
  return off;
}

void ContainerReader::fail(const std::string& what) const { throw FormatError(name_ + ": " + what); }

ContainerReader ContainerReader::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw FormatError(path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw FormatError(path + ": cannot stat: " + std::strerror(e));
  }
  auto map = std::make_shared<Mapping>();
  if (st.st_size > 0) {
    void* a = map_file(fd, std::size_t(st.st_size));
    if (a == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      throw FormatError(path + ": cannot mmap: " + std::strerror(e));
    }
    map->addr = a;
    map->size = std::size_t(st.st_size);
  }
  ::close(fd);
  ContainerReader r;
  r.keep_ = map;
  r.base_ = static_cast<const uint8_t*>(map->addr);
  r.size_ = uint64_t(st.st_size);
  r.name_ = path;
  r.parse();
  return r;
}

ContainerReader ContainerReader::from_memory(const void* data, std::size_t size,
                                             const std::string& name) {
  ContainerReader r;
  r.base_ = static_cast<const uint8_t*>(data);
  r.size_ = size;
  r.name_ = name;
  r.parse();
  return r;
}

namespace {

[[noreturn]] void fail_in(const std::string& file, const std::string& what) { throw FormatError(file + ": " + what); }

// The fixed header, checked: version, checksums, sizes, where the directory lies.
struct Header {
  uint16_t major = 0, minor = 0;
  uint64_t header_size = 0, dir_off = 0, dir_size = 0;
};

Header read_header(const uint8_t* h, uint64_t size, const std::string& file) {
  auto fail = [&](const std::string& what) { fail_in(file, what); };
  if (size < kHeaderSize)
    fail("truncated: " + std::to_string(size) + " bytes, the header alone needs " + std::to_string(kHeaderSize));
  if (std::memcmp(h + fmt::kOffMagic, fmt::kMagic, 8) != 0) fail("not a .qins file (wrong magic)");
  Header r;
  r.major = uint16_t(h[fmt::kOffMajor] | h[fmt::kOffMajor + 1] << 8);
  r.minor = uint16_t(h[fmt::kOffMinor] | h[fmt::kOffMinor + 1] << 8);
  if (r.major != kFormatMajor)
    fail("unsupported version " + std::to_string(r.major) + "." + std::to_string(r.minor) +
         " (this reader understands " + std::to_string(kFormatMajor) + ".x)");
  if (load_le64(h + fmt::kOffHeaderChecksum) != checksum64(h, fmt::kOffHeaderChecksum)) fail("bad header checksum");
  r.header_size = load_le32(h + fmt::kOffHeaderSize);
  const uint64_t file_size = load_le64(h + fmt::kOffFileSize);
  r.dir_off = load_le64(h + fmt::kOffDirOffset);
  r.dir_size = load_le64(h + fmt::kOffDirSize);
  if (r.header_size < kHeaderSize || r.header_size > size)
    fail("header size " + std::to_string(r.header_size) + " out of range");
  if (file_size != size)
    fail(file_size > size ? "truncated: header says " + std::to_string(file_size) + " bytes, file has " +
                                std::to_string(size)
                          : "trailing data: header says " + std::to_string(file_size) + " bytes, file has " +
                                std::to_string(size));
  uint64_t dir_end;
  if (add_overflows(r.dir_off, r.dir_size, &dir_end)) fail("directory offset + size overflows");
  if (r.dir_off < r.header_size || dir_end > size)
    fail("directory offset " + std::to_string(r.dir_off) + " + size " + std::to_string(r.dir_size) +
         " out of range of the " + std::to_string(size) + "-byte file");
  if (r.dir_size > kMaxDirectorySize) fail("directory size " + std::to_string(r.dir_size) + " exceeds the cap");
  if (load_le64(h + fmt::kOffDirChecksum) != checksum64(h + r.dir_off, r.dir_size)) fail("bad directory checksum");
  return r;
}

// Blob / chunk payloads must lie in the data region [header_size, dir_off).
struct DataRegion {
  const std::string& file;
  uint64_t begin, end;
  void check(uint64_t off, uint64_t n, const std::string& what) const {
    uint64_t stop;
    if (add_overflows(off, n, &stop)) fail_in(file, what + ": offset + size overflows");
    if (off < begin || stop > end)
      fail_in(file, what + ": offset " + std::to_string(off) + " size " + std::to_string(n) +
                        " out of range of the data region [" + std::to_string(begin) + ", " + std::to_string(end) + ")");
  }
};

ChunkInfo read_chunk(Cursor& c, const std::string& cw, const DataRegion& region) {
  ChunkInfo ch;
  const uint8_t codec = c.u8("chunk codec");
  ch.offset = c.u64("chunk offset");
  ch.stored_size = c.u64("chunk size");
  ch.raw_size = c.u32("chunk raw size");
  ch.checksum = c.u64("chunk checksum");
  if (!codec_valid(codec)) fail_in(region.file, cw + ": unknown codec " + std::to_string(codec));
  ch.codec = Codec(codec);
  if (ch.raw_size == 0 || ch.raw_size > kMaxChunkRaw)
    fail_in(region.file, cw + ": raw size " + std::to_string(ch.raw_size) + " out of range");
  if (ch.codec == Codec::raw && ch.stored_size != ch.raw_size) fail_in(region.file, cw + ": raw chunk size mismatch");
  region.check(ch.offset, ch.stored_size, cw);
  return ch;
}

SectionInfo read_section(Cursor& c, const TensorInfo& t, const DataRegion& region) {
  SectionInfo s;
  s.name = c.str(1, "section name");
  s.raw_size = c.u64("section raw size");
  const std::string where = "tensor '" + t.name + "' section '" + s.name + "'";
  if (t.section(s.name)) fail_in(region.file, where + ": duplicate section");
  const uint64_t n_chunks = c.count(c.u32("chunk count"), fmt::kChunkRecordSize, "chunks");
  s.chunks.reserve(n_chunks);
  uint64_t total = 0;
  for (uint64_t ci = 0; ci < n_chunks; ++ci) {
    s.chunks.push_back(read_chunk(c, where + " chunk " + std::to_string(ci), region));
    if (add_overflows(total, s.chunks.back().raw_size, &total)) fail_in(region.file, where + ": size overflow");
  }
  if (total != s.raw_size)
    fail_in(region.file, where + ": raw size " + std::to_string(s.raw_size) + " does not match its chunks (" +
                             std::to_string(total) + ")");
  return s;
}

TensorInfo read_tensor(Cursor& c, const DataRegion& region) {
  TensorInfo t;
  t.name = c.str(2, "tensor name");
  t.encoding = c.str(1, "tensor encoding");
  t.codebook = c.str(2, "tensor codebook");
  const unsigned ndim = c.u8("tensor rank");
  if (ndim > kMaxDims)
    fail_in(region.file, "tensor '" + t.name + "': rank " + std::to_string(ndim) + " exceeds " + std::to_string(kMaxDims));
  for (unsigned d = 0; d < ndim; ++d) t.shape.push_back(c.u64("tensor dim"));
  const uint64_t n_extra = c.count(c.u32("extra count"), 2 + 4, "tensor extras");
  for (uint64_t e = 0; e < n_extra; ++e) {
    std::string k = c.str(2, "extra key");
    std::string v = c.str(4, "extra value");
    if (!t.extras.emplace(std::move(k), std::move(v)).second)
      fail_in(region.file, "tensor '" + t.name + "': duplicate extra key");
  }
  const uint64_t n_sec = c.count(c.u16("section count"), 1 + 8 + 4, "sections");
  for (uint64_t si = 0; si < n_sec; ++si) t.sections.push_back(read_section(c, t, region));
  return t;
}

}  // namespace

void ContainerReader::parse() {
  const Header h = read_header(base_, size_, name_);
  major_ = h.major;
  minor_ = h.minor;
  const DataRegion region{name_, h.header_size, h.dir_off};

  Cursor c(base_ + h.dir_off, h.dir_size, name_);
  const uint64_t n_meta = c.count(c.u32("metadata count"), 2 + 1 + 32, "metadata entries");
  meta_.reserve(n_meta);
  for (uint64_t i = 0; i < n_meta; ++i) {
    MetaEntry m;
    m.key = c.str(2, "metadata key");
    const uint8_t codec = c.u8("metadata codec");
    m.offset = c.u64("metadata offset");
    m.stored_size = c.u64("metadata size");
    m.raw_size = c.u64("metadata raw size");
    m.checksum = c.u64("metadata checksum");
    const std::string what = "metadata '" + m.key + "'";
    if (codec != uint8_t(Codec::raw) && codec != uint8_t(Codec::zstd))
      fail(what + ": unsupported codec " + std::to_string(codec));
    m.codec = Codec(codec);
    if (m.raw_size > kMaxMetadataRaw) fail(what + ": raw size " + std::to_string(m.raw_size) + " exceeds the cap");
    if (m.codec == Codec::raw && m.stored_size != m.raw_size) fail(what + ": raw blob size mismatch");
    region.check(m.offset, m.stored_size, what);
    for (const auto& o : meta_)
      if (o.key == m.key) fail("duplicate metadata key '" + m.key + "'");
    meta_.push_back(std::move(m));
  }
  const uint64_t n_tensors = c.count(c.u32("tensor count"), 2 + 1 + 2 + 1 + 4 + 2, "tensors");
  tensors_.reserve(n_tensors);
  for (uint64_t ti = 0; ti < n_tensors; ++ti) {
    TensorInfo t = read_tensor(c, region);
    if (!tensor_index_.emplace(t.name, tensors_.size()).second) fail("duplicate tensor '" + t.name + "'");
    tensors_.push_back(std::move(t));
  }
  if (c.left() != 0) fail("directory has " + std::to_string(c.left()) + " trailing bytes");
  check_no_overlap();
}

// Every payload (metadata blob, chunk) owns its bytes: two records pointing at the same stored
// bytes would let a small file decode without bound (one 2 KB zstd frame referenced by every chunk
// of a 145 KB file once made `inspect` decode 2.5 GiB). Checked before anything is decoded.
void ContainerReader::check_no_overlap() const {
  struct Range {
    uint64_t begin, end;
    std::string what;
  };
  std::vector<Range> ranges;
  for (const auto& m : meta_)
    if (m.stored_size) ranges.push_back({m.offset, m.offset + m.stored_size, "metadata '" + m.key + "'"});
  for (const auto& t : tensors_)
    for (const auto& s : t.sections)
      for (std::size_t i = 0; i < s.chunks.size(); ++i)
        if (s.chunks[i].stored_size)
          ranges.push_back({s.chunks[i].offset, s.chunks[i].offset + s.chunks[i].stored_size,
                            "tensor '" + t.name + "' section '" + s.name + "' chunk " + std::to_string(i)});
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (std::size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].begin < ranges[i - 1].end)
      fail(ranges[i].what + " overlaps the stored bytes of " + ranges[i - 1].what);
}

std::vector<std::string> ContainerReader::metadata_keys() const {
  std::vector<std::string> k;
  for (const auto& m : meta_) k.push_back(m.key);
  return k;
}

bool ContainerReader::has_metadata(const std::string& key) const {
  for (const auto& m : meta_)
    if (m.key == key) return true;
  return false;
}

std::string ContainerReader::metadata(const std::string& key) const {
  for (const auto& m : meta_) {
    if (m.key != key) continue;
    std::string out(std::size_t(m.raw_size), '\0');
    const uint8_t* src = base_ + m.offset;
    if (m.codec == Codec::raw) {
      if (m.raw_size) std::memcpy(out.data(), src, std::size_t(m.raw_size));
    } else {
      const std::size_t r = ZSTD_decompress(out.data(), out.size(), src, std::size_t(m.stored_size));
      if (ZSTD_isError(r) || r != m.raw_size)
        fail("metadata '" + key + "': corrupt zstd blob" +
             (ZSTD_isError(r) ? std::string(" (") + ZSTD_getErrorName(r) + ")" : std::string()));
    }
    if (checksum64(out.data(), out.size()) != m.checksum) fail("bad checksum in metadata '" + key + "'");
    return out;
  }
  fail("no metadata '" + key + "'");
}

const TensorInfo* ContainerReader::find_tensor(const std::string& name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

void ContainerReader::decode_chunk_into(const TensorInfo& t, const SectionInfo& s, std::size_t i,
                                        uint8_t* dst, bool verify) const {
  const ChunkInfo& c = s.chunks[i];
  try {
    decode_chunk(c.codec, base_ + c.offset, std::size_t(c.stored_size), dst, c.raw_size);
  } catch (const CodecError& e) {
    fail("tensor '" + t.name + "' section '" + s.name + "' chunk " + std::to_string(i) + " (" +
         codec_name(c.codec) + "): " + e.what());
  }
  if (verify && checksum64(dst, c.raw_size) != c.checksum)
    fail("bad checksum in tensor '" + t.name + "' section '" + s.name + "' chunk " +
         std::to_string(i));
}

void ContainerReader::decode_section(const TensorInfo& t, const std::string& section, void* dst,
                                     std::size_t dst_size, bool verify) const {
  const SectionInfo* s = t.section(section);
  if (!s) throw std::invalid_argument(name_ + ": tensor '" + t.name + "' has no section '" + section + "'");
  if (dst_size != s->raw_size)
    throw std::invalid_argument(name_ + ": tensor '" + t.name + "' section '" + section + "' has " +
                                std::to_string(s->raw_size) + " bytes, buffer has " +
                                std::to_string(dst_size));
  uint8_t* o = static_cast<uint8_t*>(dst);
  for (std::size_t i = 0; i < s->chunks.size(); ++i) {
    decode_chunk_into(t, *s, i, o, verify);
    o += s->chunks[i].raw_size;
  }
}

void ContainerReader::decode_section(const std::string& tensor, const std::string& section,
                                     void* dst, std::size_t dst_size, bool verify) const {
  const TensorInfo* t = find_tensor(tensor);
  if (!t) throw std::invalid_argument(name_ + ": no tensor '" + tensor + "'");
  decode_section(*t, section, dst, dst_size, verify);
}

const uint8_t* ContainerReader::mapped_section(const TensorInfo& t, const std::string& section) const {
  const SectionInfo* s = t.section(section);
  if (!keep_ || !s || s->chunks.empty()) return nullptr;
  if (s->chunks[0].offset % kDataAlignment != 0) return nullptr;
  for (std::size_t i = 0; i < s->chunks.size(); ++i) {
    const ChunkInfo& c = s->chunks[i];
    if (c.codec != Codec::raw) return nullptr;
    if (i > 0 && c.offset != s->chunks[i - 1].offset + s->chunks[i - 1].stored_size) return nullptr;
  }
  return base_ + s->chunks[0].offset;
}

SectionStats& SectionStats::operator+=(const SectionStats& o) {
  raw_bytes += o.raw_bytes;
  stored_bytes += o.stored_bytes;
  for (unsigned i = 0; i < kNumCodecs; ++i) chunks[i] += o.chunks[i], raw_by_codec[i] += o.raw_by_codec[i];
  return *this;
}

SectionStats section_stats(const SectionInfo& s) {
  SectionStats st;
  st.raw_bytes = s.raw_size;
  for (const auto& c : s.chunks) {
    st.stored_bytes += c.stored_size;
    ++st.chunks[unsigned(c.codec)];
    st.raw_by_codec[unsigned(c.codec)] += c.raw_size;
  }
  return st;
}

SectionStats tensor_stats(const TensorInfo& t) {
  SectionStats st;
  for (const auto& s : t.sections) st += section_stats(s);
  return st;
}

}  // namespace qins::comp
