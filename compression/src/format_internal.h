// Constants of the .qins byte layout shared by the writer and reader (docs/file-format.md).
#pragma once

#include <cstdint>

namespace qins::comp::fmt {

constexpr uint8_t kMagic[8] = {0x89, 'Q', 'I', 'N', 'S', '\r', '\n', 0x1A};
// Header field offsets.
constexpr unsigned kOffMagic = 0, kOffMajor = 8, kOffMinor = 10, kOffHeaderSize = 12,
                   kOffFileSize = 16, kOffDirOffset = 24, kOffDirSize = 32, kOffDirChecksum = 40,
                   kOffFlags = 48, kOffHeaderChecksum = 56;
// Fixed bytes of one chunk record in the directory: codec u8, offset u64, stored u64,
// raw u32, checksum u64.
constexpr unsigned kChunkRecordSize = 1 + 8 + 8 + 4 + 8;

}  // namespace qins::comp::fmt
