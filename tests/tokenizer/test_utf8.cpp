// utf8_complete_prefix / utf8_sanitize: the boundary rules StreamDecoder relies on.
#include <gtest/gtest.h>

#include "qins/tokenizer/utf8.h"

namespace qins::tok {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

TEST(Utf8, CompletePrefixHoldsTruncatedCharacters) {
  const std::string emoji = "\xF0\x9F\x98\x80";  // U+1F600
  EXPECT_EQ(utf8_complete_prefix(""), 0u);
  EXPECT_EQ(utf8_complete_prefix("abc"), 3u);
  for (std::size_t k = 1; k < 4; ++k) EXPECT_EQ(utf8_complete_prefix("ab" + emoji.substr(0, k)), 2u) << k;
  EXPECT_EQ(utf8_complete_prefix("ab" + emoji), 6u);
  EXPECT_EQ(utf8_complete_prefix("\xC3"), 0u);          // first byte of é
  EXPECT_EQ(utf8_complete_prefix("\xE2\x82"), 0u);      // two bytes of €
  EXPECT_EQ(utf8_complete_prefix("\xE2\x82\xAC"), 3u);  // €
}

TEST(Utf8, InvalidBytesCountAsComplete) {
  EXPECT_EQ(utf8_complete_prefix("\xFF"), 1u);              // never valid
  EXPECT_EQ(utf8_complete_prefix("\x80"), 1u);              // stray continuation
  EXPECT_EQ(utf8_complete_prefix("\xC0\xAF"), 2u);          // overlong '/'
  EXPECT_EQ(utf8_complete_prefix("\xE0\x80"), 2u);          // overlong 3-byte start
  EXPECT_EQ(utf8_complete_prefix("\xED\xA0"), 2u);          // surrogate half
  EXPECT_EQ(utf8_complete_prefix("\xF4\x90"), 2u);          // above U+10FFFF
  EXPECT_EQ(utf8_complete_prefix("\xF0\x9F" "A"), 3u);      // broken by ASCII
}

TEST(Utf8, SanitizeReplacesEachInvalidByte) {
  EXPECT_EQ(utf8_sanitize("plain"), "plain");
  EXPECT_EQ(utf8_sanitize("caf\xC3\xA9 \xF0\x9F\x98\x80"), "caf\xC3\xA9 \xF0\x9F\x98\x80");
  EXPECT_EQ(utf8_sanitize("a\xFF" "b"), "a" + kFffd + "b");
  EXPECT_EQ(utf8_sanitize("\xF0\x9F\x98"), kFffd + kFffd + kFffd);  // truncated at the end
  EXPECT_EQ(utf8_sanitize("\xED\xA0\x80"), kFffd + kFffd + kFffd);  // encoded surrogate
  EXPECT_EQ(utf8_sanitize("\xC0\xAF"), kFffd + kFffd);
  EXPECT_EQ(utf8_sanitize(std::string("a\0b", 3)), std::string("a\0b", 3));
}

TEST(Utf8, SplittingAtCompletePrefixPreservesSanitize) {
  // StreamDecoder emits sanitize(prefix) now and sanitize(rest) later: same as sanitize(all).
  const std::string samples[] = {"ab\xF0\x9F\x98\x80" "cd", "\xE2\x82\xAC\xE2\x82", "x\xF0\x9F" "A\xC3\xA9",
                                 "\xFF\xF0\x9F\x98", "\xE2\x82" "\xE2\x82\xAC"};
  for (const std::string& s : samples) {
    for (std::size_t cut = 0; cut <= s.size(); ++cut) {
      const std::string head = s.substr(0, cut);
      const std::size_t n = utf8_complete_prefix(head);
      EXPECT_EQ(utf8_sanitize(head.substr(0, n)) + utf8_sanitize(s.substr(n)), utf8_sanitize(s)) << cut;
    }
  }
}

}  // namespace
}  // namespace qins::tok
