#include "qins/tokenizer/utf8.h"

namespace qins::tok {
namespace {

// Expected sequence length from a lead byte; 0 for a byte that cannot start a character.
int sequence_length(unsigned char c) {
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return 2;
  if (c >= 0xE0 && c <= 0xEF) return 3;
  if (c >= 0xF0 && c <= 0xF4) return 4;
  return 0;
}

// Is s[i+1] a valid second byte for lead byte s[i]? (rejects overlongs and surrogates)
bool valid_second(unsigned char lead, unsigned char b) {
  if ((b & 0xC0) != 0x80) return false;
  if (lead == 0xE0) return b >= 0xA0;
  if (lead == 0xED) return b <= 0x9F;
  if (lead == 0xF0) return b >= 0x90;
  if (lead == 0xF4) return b <= 0x8F;
  return true;
}

// Length of the valid character at s[i]; 0 if it is invalid; -1 if valid so far but truncated.
int char_at(std::string_view s, std::size_t i) {
  const auto lead = static_cast<unsigned char>(s[i]);
  const int n = sequence_length(lead);
  if (n == 0) return 0;
  for (int k = 1; k < n; ++k) {
    if (i + k >= s.size()) return -1;
    const auto b = static_cast<unsigned char>(s[i + k]);
    if (k == 1 ? !valid_second(lead, b) : (b & 0xC0) != 0x80) return 0;
  }
  return n;
}

}  // namespace

std::size_t utf8_complete_prefix(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const int n = char_at(s, i);
    if (n < 0) return i;  // truncated sequence at the end: hold it
    i += n == 0 ? 1 : static_cast<std::size_t>(n);
  }
  return i;
}

std::string utf8_sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const int n = char_at(s, i);
    if (n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return out;
}

}  // namespace qins::tok
