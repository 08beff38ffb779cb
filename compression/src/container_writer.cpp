// ContainerWriter: streams chunks to a temp file next to the target, then directory + header,
// fsync, rename (util/AtomicFile). Chunks of a section are encoded in parallel in bounded batches.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "format_internal.h"
#include "qins/compression/bitstream.h"
#include "qins/compression/checksum.h"
#include "qins/compression/container.h"
#include "qins/compression/huffman.h"
#include "qins/util/files.h"

namespace qins::comp {
namespace {


class DirWriter {
 public:
  std::vector<uint8_t> bytes;
  void u8(uint8_t v) { bytes.push_back(v); }
  void u16(uint16_t v) { u8(uint8_t(v)), u8(uint8_t(v >> 8)); }
  void u32(uint32_t v) { u16(uint16_t(v)), u16(uint16_t(v >> 16)); }
  void u64(uint64_t v) { u32(uint32_t(v)), u32(uint32_t(v >> 32)); }
  void str(const std::string& s, unsigned width, const char* what) {
    const uint64_t max = width == 1 ? 0xFF : width == 2 ? 0xFFFF : 0xFFFFFFFFu;
    if (s.size() > max) throw std::invalid_argument(std::string(what) + " too long: " + s.substr(0, 64));
    if (width == 1) u8(uint8_t(s.size()));
    if (width == 2) u16(uint16_t(s.size()));
    if (width == 4) u32(uint32_t(s.size()));
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
};

unsigned resolve_threads(unsigned t) {
  if (t == 0) t = std::max(1u, std::thread::hardware_concurrency());
  return t;
}

// Runs fn(i) for i in [b0, b1) on up to `threads` threads (this one included); rethrows the
// first exception after all have stopped.
template <class Fn>
void parallel_for(std::size_t b0, std::size_t b1, unsigned threads, const Fn& fn) {
  std::atomic<std::size_t> next{b0};
  std::exception_ptr err;
  std::mutex err_mu;
  auto work = [&] {
    for (;;) {
      const std::size_t c = next.fetch_add(1);
      if (c >= b1) return;
      try {
        fn(c);
      } catch (...) {
        std::lock_guard<std::mutex> lk(err_mu);
        if (!err) err = std::current_exception();
      }
    }
  };
  std::vector<std::thread> pool;
  const unsigned nt = unsigned(std::min<std::size_t>(threads, b1 - b0));
  for (unsigned t = 1; t < nt; ++t) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
  if (err) std::rethrow_exception(err);
}

}  // namespace

ContainerWriter::ContainerWriter(std::string path, WriterOptions opt)
    : path_(std::move(path)), opt_(std::move(opt)), file_(std::make_unique<AtomicFile>(path_)) {
  const uint8_t zeros[kHeaderSize] = {};
  append(zeros, sizeof zeros);  // header placeholder, rewritten by commit()
}

ContainerWriter::~ContainerWriter() = default;  // not committed: AtomicFile removes the temp file

const std::string& ContainerWriter::temp_path() const { return file_->temp_path(); }

void ContainerWriter::check_open() const {
  if (committed_) throw std::logic_error(path_ + ": writer already committed");
  if (failed_) throw std::logic_error(path_ + ": writer failed earlier; start again");
}

void ContainerWriter::write_at(uint64_t offset, const void* data, std::size_t size) {
  try {
    if (opt_.before_write) opt_.before_write(offset, size);
    file_->write_at(offset, data, size);
  } catch (...) {
    failed_ = true;
    throw;
  }
}

void ContainerWriter::append(const void* data, std::size_t size) {
  write_at(offset_, data, size);
  offset_ += size;
}

void ContainerWriter::align(std::size_t to) {
  static const uint8_t zeros[kRawChunkAlignment] = {};
  static_assert(kRawChunkAlignment % kDataAlignment == 0, "alignments must nest");
  const std::size_t pad = std::size_t((to - offset_ % to) % to);
  if (pad) append(zeros, pad);
}

void ContainerWriter::put_metadata(const std::string& key, const void* data, std::size_t size) {
  check_open();
  for (const auto& m : meta_)
    if (m.key == key) throw std::invalid_argument(path_ + ": duplicate metadata key " + key);
  if (key.size() > 0xFFFF) throw std::invalid_argument("metadata key too long");
  if (size > kMaxMetadataRaw)
    throw std::invalid_argument(path_ + ": metadata " + key + " exceeds the 256 MiB limit");
  std::vector<uint8_t> z(ZSTD_compressBound(size));
  std::size_t zs = size ? ZSTD_compress(z.data(), z.size(), data, size, opt_.metadata_zstd_level) : 0;
  if (ZSTD_isError(zs)) throw std::runtime_error(std::string("zstd: ") + ZSTD_getErrorName(zs));
  MetaEntry e{key, Codec::zstd, 0, zs, size, checksum64(data, size)};
  align();
  e.offset = offset_;
  if (size == 0 || zs >= size) {
    e.codec = Codec::raw;
    e.stored_size = size;
    append(data, size);
  } else {
    append(z.data(), zs);
  }
  meta_.push_back(std::move(e));
}

void ContainerWriter::add_tensor(const TensorRecord& tensor, const std::vector<SectionData>& sections,
                                 const EncodeOptions& opt) {
  check_open();
  for (const auto& t : tensors_)
    if (t.name == tensor.name) throw std::invalid_argument(path_ + ": duplicate tensor " + tensor.name);
  if (tensor.shape.size() > kMaxDims) throw std::invalid_argument(tensor.name + ": too many dims");
  if (opt.chunk_size == 0 || opt.chunk_size > kMaxChunkRaw)
    throw std::invalid_argument("chunk_size must be in 1..64 MiB");
  if (sections.size() > 0xFFFF) throw std::invalid_argument(tensor.name + ": too many sections");
  TensorInfo info;
  static_cast<TensorRecord&>(info) = tensor;
  const unsigned threads = resolve_threads(opt.threads);
  for (const auto& sd : sections) {
    for (const auto& s : info.sections)
      if (s.name == sd.name)
        throw std::invalid_argument(tensor.name + ": duplicate section " + sd.name);
    SectionInfo si;
    si.name = sd.name;
    si.raw_size = sd.size;
    const uint8_t* src = static_cast<const uint8_t*>(sd.data);
    const std::size_t n_chunks = (sd.size + opt.chunk_size - 1) / opt.chunk_size;
    auto chunk_len = [&](std::size_t c) { return std::min(opt.chunk_size, sd.size - c * opt.chunk_size); };
    // One Huffman code for all chunks of the section (CodecOptions::share_huffman_code), built
    // from their merged histogram; each chunk's histogram is kept for its codec choice.
    const bool share = opt.codecs.allow_huffman && opt.codecs.share_huffman_code && n_chunks >= 2;
    std::vector<huf::Histogram> hists;
    huf::CodeLengths shared{};
    if (share) {
      hists.resize(n_chunks);
      parallel_for(0, n_chunks, threads, [&](std::size_t c) {
        hists[c] = huf::histogram(src + c * opt.chunk_size, chunk_len(c));
      });
      huf::Histogram all{};
      for (const auto& h : hists) huf::merge_histogram(all, h);
      shared = huf::build_code_lengths(all);
    }
    // Batches of a few chunks per thread bound the encoded bytes held in memory.
    const std::size_t batch = std::size_t(threads) * 4;
    for (std::size_t b0 = 0; b0 < n_chunks; b0 += batch) {
      const std::size_t b1 = std::min(n_chunks, b0 + batch);
      std::vector<EncodedChunk> enc(b1 - b0);
      std::vector<uint64_t> sums(b1 - b0);
      parallel_for(b0, b1, threads, [&](std::size_t c) {
        const uint8_t* p = src + c * opt.chunk_size;
        const std::size_t len = chunk_len(c);
        enc[c - b0] = share ? encode_best(p, len, opt.codecs, shared, hists[c])
                            : encode_best(p, len, opt.codecs);
        sums[c - b0] = checksum64(p, len);
      });
      for (std::size_t c = b0; c < b1; ++c) {
        const std::size_t len = chunk_len(c);
        // Raw chunks of a page or more start on a page (a loader uses them in place from the
        // file mapping); the smaller ones (scales, tables) keep the 64-byte alignment.
        align(enc[c - b0].codec == Codec::raw && len >= kRawChunkAlignment ? kRawChunkAlignment : kDataAlignment);
        ChunkInfo ci;
        ci.codec = enc[c - b0].codec;
        ci.offset = offset_;
        ci.stored_size = enc[c - b0].data.size();
        ci.raw_size = uint32_t(len);
        ci.checksum = sums[c - b0];
        append(enc[c - b0].data.data(), enc[c - b0].data.size());
        si.chunks.push_back(ci);
      }
    }
    info.sections.push_back(std::move(si));
  }
  tensors_.push_back(std::move(info));
}

void ContainerWriter::commit() {
  check_open();
  DirWriter d;
  d.u32(uint32_t(meta_.size()));
  for (const auto& m : meta_) {
    d.str(m.key, 2, "metadata key");
    d.u8(uint8_t(m.codec));
    d.u64(m.offset);
    d.u64(m.stored_size);
    d.u64(m.raw_size);
    d.u64(m.checksum);
  }
  d.u32(uint32_t(tensors_.size()));
  for (const auto& t : tensors_) {
    d.str(t.name, 2, "tensor name");
    d.str(t.encoding, 1, "encoding");
    d.str(t.codebook, 2, "codebook id");
    d.u8(uint8_t(t.shape.size()));
    for (uint64_t dim : t.shape) d.u64(dim);
    d.u32(uint32_t(t.extras.size()));
    for (const auto& kv : t.extras) {
      d.str(kv.first, 2, "extra key");
      d.str(kv.second, 4, "extra value");
    }
    d.u16(uint16_t(t.sections.size()));
    for (const auto& s : t.sections) {
      d.str(s.name, 1, "section name");
      d.u64(s.raw_size);
      d.u32(uint32_t(s.chunks.size()));
      for (const auto& c : s.chunks) {
        d.u8(uint8_t(c.codec));
        d.u64(c.offset);
        d.u64(c.stored_size);
        d.u32(c.raw_size);
        d.u64(c.checksum);
      }
    }
  }
  if (d.bytes.size() > kMaxDirectorySize) throw std::runtime_error(path_ + ": directory too large");
  align();
  const uint64_t dir_offset = offset_;
  append(d.bytes.data(), d.bytes.size());

  uint8_t h[kHeaderSize] = {};
  std::memcpy(h + fmt::kOffMagic, fmt::kMagic, 8);
  h[fmt::kOffMajor] = uint8_t(kFormatMajor), h[fmt::kOffMajor + 1] = uint8_t(kFormatMajor >> 8);
  h[fmt::kOffMinor] = uint8_t(kFormatMinor), h[fmt::kOffMinor + 1] = uint8_t(kFormatMinor >> 8);
  store_le32(h + fmt::kOffHeaderSize, uint32_t(kHeaderSize));
  store_le64(h + fmt::kOffFileSize, offset_);
  store_le64(h + fmt::kOffDirOffset, dir_offset);
  store_le64(h + fmt::kOffDirSize, d.bytes.size());
  store_le64(h + fmt::kOffDirChecksum, checksum64(d.bytes.data(), d.bytes.size()));
  store_le64(h + fmt::kOffFlags, 0);
  store_le64(h + fmt::kOffHeaderChecksum, checksum64(h, fmt::kOffHeaderChecksum));
  write_at(0, h, sizeof h);

  try {
    file_->commit();  // fsync, rename over the target, fsync the directory
  } catch (...) {
    failed_ = true;
    throw;
  }
  committed_ = true;
}

}  // namespace qins::comp
