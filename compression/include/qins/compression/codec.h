// Per-chunk codecs and the writer's choice among them. Every chunk decodes on its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "qins/compression/huffman.h"

namespace qins::comp {

// Values are the on-disk codec ids (docs/file-format.md).
enum class Codec : uint8_t { raw = 0, huffman = 1, sparse_huffman = 2, zstd = 3 };
constexpr unsigned kNumCodecs = 4;

const char* codec_name(Codec c);
bool codec_valid(uint8_t id);

struct CodecOptions {
  bool allow_huffman = true;
  bool allow_sparse = true;   // tried when >= 1/8 of the bytes are zero
  bool allow_zstd = true;
  int zstd_level = 3;
  // An entropy codec is kept only when its payload is at least this many percent smaller than
  // the raw bytes; otherwise the chunk is stored raw (and a loader can map it in place instead
  // of decoding it). 0 keeps any saving, as writers before this option did. Why 10: see
  // docs/file-format.md, "When a chunk stays raw".
  unsigned min_saving_percent = 10;
  // ContainerWriter: the Huffman chunks of one section share one code, built from the
  // histogram of the whole section (each payload still carries its table, the same bytes in
  // every chunk, so readers need nothing new). A loader decoding two such chunks together
  // builds the lookup tables once (half the L1 footprint; docs/benchmarks.md, "Huffman decode,
  // third round"). A chunk keeps its own code where the shared one would cost more than 1 % of
  // its raw size (codec.h, encode_best). Costs a little size (docs/file-format.md).
  bool share_huffman_code = true;
};

struct EncodedChunk {
  Codec codec = Codec::raw;
  std::vector<uint8_t> data;
};

// Encodes with one codec (appends to out). For n = 0 every codec writes nothing.
void encode_with(Codec c, const uint8_t* src, std::size_t n, std::vector<uint8_t>& out,
                 int zstd_level = 3);

// Tries the allowed codecs and keeps the smallest, if it saves at least min_saving_percent of
// the raw size; raw otherwise.
EncodedChunk encode_best(const uint8_t* src, std::size_t n, const CodecOptions& opt = {});

// The same choice, with src's histogram already counted (hist) and a code shared by several
// chunks (it must give every byte of src a code): the Huffman candidate uses the shared code
// unless that is more than 1 % of n larger than src's own code (then its own). Whether Huffman
// pays is judged on the payload size with the code it uses.
EncodedChunk encode_best(const uint8_t* src, std::size_t n, const CodecOptions& opt,
                         const huf::CodeLengths& huffman_code, const huf::Histogram& hist);

// Decodes a payload of codec c into exactly dst_size bytes. Throws CodecError if malformed.
void decode_chunk(Codec c, const uint8_t* src, std::size_t src_size, uint8_t* dst,
                  std::size_t dst_size);

}  // namespace qins::comp
