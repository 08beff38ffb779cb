// UTF-8 helpers for streaming detokenization.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace qins::tok {

// Length of the longest prefix of `s` that ends on a character boundary, treating a trailing
// incomplete (but so far valid) multibyte sequence as not yet complete. Invalid bytes count as
// complete (they are emitted, replaced, rather than held forever).
std::size_t utf8_complete_prefix(std::string_view s);

// `s` with every invalid UTF-8 sequence replaced by U+FFFD.
std::string utf8_sanitize(std::string_view s);

}  // namespace qins::tok
