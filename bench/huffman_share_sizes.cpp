// What the writer's shared Huffman code per section costs in file size, on real files: rewrites
// each .qins given (its metadata and every tensor section, decoded) through ContainerWriter twice
// with the default encode options, once with a Huffman code per chunk and once with one code per
// section (CodecOptions::share_huffman_code), and prints both file sizes and the chunks each codec
// got. Usage: huffman_share_sizes [--chunk-kib N] OUT_DIR FILE.qins...  (writes OUT_DIR/own.qins
// and OUT_DIR/shared.qins, removed afterwards). --chunk-kib: a chunk size other than the
// writer's 1 MiB, e.g. to split a small model's tensors into several chunks as a large model's are.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "qins/compression/container.h"

namespace {

using namespace qins::comp;

struct Result {
  uint64_t file = 0;
  uint64_t chunks[kNumCodecs] = {};
  uint64_t stored[kNumCodecs] = {};
};

std::size_t g_chunk = std::size_t(1) << 20;

Result rewrite(const ContainerReader& r, const std::string& out, bool share) {
  {
    ContainerWriter w(out);
    for (const auto& k : r.metadata_keys()) w.put_metadata(k, r.metadata(k));
    EncodeOptions eo;
    eo.codecs.share_huffman_code = share;
    eo.chunk_size = g_chunk;
    std::vector<uint8_t> buf;
    std::vector<std::vector<uint8_t>> keep;
    for (const auto& t : r.tensors()) {
      std::vector<SectionData> sections;
      keep.assign(t.sections.size(), {});
      for (std::size_t i = 0; i < t.sections.size(); ++i) {
        keep[i].resize(std::size_t(t.sections[i].raw_size));
        r.decode_section(t, t.sections[i].name, keep[i].data(), keep[i].size());
        sections.push_back({t.sections[i].name, keep[i].data(), keep[i].size()});
      }
      w.add_tensor(t, sections, eo);
    }
    w.commit();
  }
  Result res;
  res.file = std::filesystem::file_size(out);
  const ContainerReader o = ContainerReader::open(out);
  for (const auto& t : o.tensors())
    for (const auto& s : t.sections)
      for (const auto& c : s.chunks) {
        ++res.chunks[unsigned(c.codec)];
        res.stored[unsigned(c.codec)] += c.stored_size;
      }
  std::filesystem::remove(out);
  return res;
}

void print(const char* what, const Result& r) {
  std::printf("  %-22s %14llu bytes;", what, static_cast<unsigned long long>(r.file));
  for (unsigned c = 0; c < kNumCodecs; ++c)
    std::printf(" %s %llu chunks (%llu stored bytes)", codec_name(Codec(c)),
                static_cast<unsigned long long>(r.chunks[c]),
                static_cast<unsigned long long>(r.stored[c]));
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  int a = 1;
  if (argc > 2 && std::string(argv[1]) == "--chunk-kib") {
    const long kib = std::atol(argv[2]);
    if (kib <= 0 || kib > 65536) {
      std::fprintf(stderr, "huffman_share_sizes: --chunk-kib must be in 1..65536, got '%s'\n", argv[2]);
      return 2;
    }
    g_chunk = std::size_t(kib) << 10;
    a = 3;
  }
  if (argc - a < 2) {
    std::fprintf(stderr, "usage: %s [--chunk-kib N] OUT_DIR FILE.qins...\n", argv[0]);
    return 2;
  }
  try {
    const std::string dir = argv[a];
    std::printf("chunk size %zu bytes\n", g_chunk);
    for (int i = a + 1; i < argc; ++i) {
      const ContainerReader r = ContainerReader::open(argv[i]);
      std::printf("%s (%llu bytes as stored)\n", argv[i], static_cast<unsigned long long>(r.file_size()));
      const Result own = rewrite(r, dir + "/own.qins", false);
      const Result shared = rewrite(r, dir + "/shared.qins", true);
      print("code per chunk:", own);
      print("code per section:", shared);
      const double huf_own = double(own.stored[unsigned(Codec::huffman)]);
      const double huf_sh = double(shared.stored[unsigned(Codec::huffman)]);
      std::printf("  file: shared / per chunk = %.5f (%+lld bytes); Huffman payloads: %.5f\n",
                  double(shared.file) / double(own.file),
                  static_cast<long long>(shared.file) - static_cast<long long>(own.file),
                  huf_own > 0 ? huf_sh / huf_own : 1.0);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "huffman_share_sizes: %s\n", e.what());
    return 1;
  }
  return 0;
}
