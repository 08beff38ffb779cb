// Checksums for .qins chunks and metadata (xxHash64, seed 0).
#pragma once

#include <cstddef>
#include <cstdint>

namespace qins::comp {

uint64_t checksum64(const void* data, std::size_t size);

}  // namespace qins::comp
