// libFuzzer target: parse arbitrary bytes as a .qins container and decode every metadata blob
// and every section. The header and directory checksums are repaired first (when the fields
// they cover are in range) so the fuzzer explores the directory parser and the codecs rather
// than stopping at a checksum; checksum rejection itself is covered by the golden-error tests.
#include <cstdint>
#include <cstring>
#include <vector>

#include "qins/compression/bitstream.h"
#include "qins/compression/checksum.h"
#include "qins/compression/container.h"

using namespace qins::comp;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> f(data, data + size);
  if (f.size() >= kHeaderSize) {
    const uint64_t off = load_le64(f.data() + 24), n = load_le64(f.data() + 32);
    if (off <= f.size() && n <= f.size() - off) store_le64(f.data() + 40, checksum64(f.data() + off, n));
    store_le64(f.data() + 56, checksum64(f.data(), 56));
  }
  try {
    ContainerReader r = ContainerReader::from_memory(f.data(), f.size(), "fuzz.qins");
    for (const auto& k : r.metadata_keys()) {
      try {
        (void)r.metadata(k);
      } catch (const FormatError&) {
      }
    }
    std::vector<uint8_t> buf;
    for (const auto& t : r.tensors())
      for (const auto& s : t.sections) {
        if (s.raw_size > (uint64_t(16) << 20)) continue;  // keep each run cheap
        buf.resize(std::size_t(s.raw_size));
        try {
          r.decode_section(t, s.name, buf.data(), buf.size(), true);
        } catch (const FormatError&) {
        }
      }
  } catch (const FormatError&) {
  }
  return 0;
}
