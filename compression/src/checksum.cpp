#include "qins/compression/checksum.h"

#include <xxhash.h>

namespace qins::comp {

uint64_t checksum64(const void* data, std::size_t size) { return XXH64(data, size, 0); }

}  // namespace qins::comp
