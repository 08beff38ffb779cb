// libFuzzer entry point for the tokenizer: config-JSON parsing (Tokenizer::from_memory), encode,
// encode_chat, decode and StreamDecoder, with the invariants the app relies on checked as aborts.
//
// Input layout: byte 0 = flags, bytes 1..2 = length L of the config part (little endian, clamped),
// then L bytes of config JSON, then the text. A config that fails to load must fail with
// TokenizerError (anything else escapes and is a crash); the text is then run through the
// tokenizer trained at start-up with its own config.
//
// The SentencePiece model is trained once at start-up from a small built-in corpus (a few
// hundred milliseconds), or read from $QINS_FUZZ_TOKENIZER_DIR/{tokenizer.model,
// tokenizer_config.json} when set.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "qins/tokenizer/tokenizer.h"
#include "qins/tokenizer/utf8.h"

namespace {

using qins::tok::ChatRole;
using qins::tok::ChatTurn;
using qins::tok::StreamDecoder;
using qins::tok::Tokenizer;
using qins::tok::TokenizerError;

std::unique_ptr<Tokenizer> g_tok;

#define FUZZ_CHECK(cond)                                                     \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::fprintf(stderr, "fuzz_tokenizer: check failed: %s\n", #cond);     \
      std::abort();                                                          \
    }                                                                        \
  } while (0)

// A varied little corpus: words, punctuation, digits, code, a few scripts and emoji.
std::string builtin_corpus() {
  const char* lines[] = {
      "The quick brown fox jumps over the lazy dog near the river bank.",
      "She sells sea shells by the sea shore, and the shells she sells are surely from the shore.",
      "int main() { return 0; }  // four spaces    and\ttabs",
      "def f(x):\n    return x * 2",
      "Numbers: 12345 67890 3.14159 -42 2024-01-01 09:30",
      "Caf\xC3\xA9 na\xC3\xAFve r\xC3\xA9sum\xC3\xA9 \xC3\xBC\xC3\xB6\xC3\xA4 \xC3\x9F \xE2\x82\xAC 12",
      "\xE4\xBB\x8A\xE5\xA4\xA9\xE5\xA4\xA9\xE6\xB0\x94\xE5\xBE\x88\xE5\xA5\xBD \xF0\x9F\x98\x80 \xF0\x9F\x8E\x89",
      "Hello world! How are you today? I am fine, thank you very much.",
      "A tokenizer splits text into pieces; the model sees only the ids.",
  };
  std::string corpus;
  for (int rep = 0; rep < 40; ++rep)
    for (const char* l : lines) corpus += std::string(l) + " " + std::to_string(rep) + "\n";
  return corpus;
}

void init_tokenizer() {
  if (const char* dir = std::getenv("QINS_FUZZ_TOKENIZER_DIR")) {
    g_tok = std::make_unique<Tokenizer>(Tokenizer::from_files(std::string(dir) + "/tokenizer.model",
                                                              std::string(dir) + "/tokenizer_config.json"));
    return;
  }
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("qins_fuzz_tok_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path corpus = dir / "corpus.txt";
  if (FILE* f = std::fopen(corpus.c_str(), "wb")) {
    const std::string text = builtin_corpus();
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }
  qins::tok::train_phi3_style_tokenizer(corpus.string(), 400, dir.string());
  g_tok = std::make_unique<Tokenizer>(
      Tokenizer::from_files((dir / "tokenizer.model").string(), (dir / "tokenizer_config.json").string()));
  std::error_code ec;
  fs::remove_all(dir, ec);
}

bool valid_utf8(std::string_view s) { return qins::tok::utf8_sanitize(s) == s; }

std::string stream(const Tokenizer& tok, const std::vector<int>& ids) {
  StreamDecoder sd(tok);
  std::string out;
  for (const int id : ids) {
    const std::string piece = sd.push(id);
    FUZZ_CHECK(valid_utf8(piece));
    out += piece;
  }
  return out + sd.flush();
}

// `trusted`: the trained tokenizer, whose config we know (Phi-3 tokens, special, above the base
// vocabulary); a fuzzed config may declare anything, so only crash-freedom and decoder agreement
// are checked for it.
void exercise(const Tokenizer& tok, std::string_view text, std::uint8_t flags, bool trusted) {
  const bool allow_special = (flags & 1) != 0;
  const std::vector<int> ids = tok.encode(text, allow_special);
  for (const int id : ids) FUZZ_CHECK(id >= 0 && id < tok.vocab_size());
  if (trusted && !allow_special) {
    for (const int id : ids) FUZZ_CHECK(!tok.is_special(id));  // user text never yields control tokens
  }
  const std::string decoded = tok.decode(ids);
  FUZZ_CHECK(valid_utf8(decoded));
  FUZZ_CHECK(stream(tok, ids) == decoded);
  // Exact round trip for plain text that SentencePiece can represent: valid UTF-8 without "▁".
  if (trusted && !allow_special && valid_utf8(text) && text.find("\xE2\x96\x81") == std::string_view::npos)
    FUZZ_CHECK(decoded == text);

  // Chat: turns split at '\x01'; contents are plain text, so the template's tokens are all the
  // special ids there are.
  std::vector<ChatTurn> turns;
  std::size_t start = 0;
  for (int k = 0; k < 6 && start <= text.size(); ++k) {
    const std::size_t end = std::min(text.find('\x01', start), text.size());
    turns.push_back({static_cast<ChatRole>((flags >> 1 & 3) % 3 == 0 ? k % 3 : (k + 1) % 3),
                     std::string(text.substr(start, end - start))});
    start = end + 1;
  }
  try {
    const std::vector<int> chat = tok.encode_chat(turns, (flags & 8) != 0);
    std::size_t specials = 0;
    for (const int id : chat) specials += tok.is_special(id) ? 1 : 0;
    std::size_t expected = (flags & 8) != 0 ? 1 : 0;
    for (const ChatTurn& t : turns) expected += (t.role == ChatRole::System && t.content.empty()) ? 0 : 2;
    if (trusted) FUZZ_CHECK(specials == expected);
    FUZZ_CHECK(stream(tok, chat) == tok.decode(chat));
  } catch (const TokenizerError&) {
    // a fuzzed config without the Phi-3 template tokens
  }

  // Arbitrary ids (two bytes each) through decode and the stream decoder.
  std::vector<int> raw;
  for (std::size_t i = 0; i + 1 < text.size() && raw.size() < 64; i += 2)
    raw.push_back((static_cast<unsigned char>(text[i]) | static_cast<unsigned char>(text[i + 1]) << 8) %
                  tok.vocab_size());
  FUZZ_CHECK(stream(tok, raw) == tok.decode(raw));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  init_tokenizer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (!g_tok) init_tokenizer();
  if (size < 3 || size > (1u << 16)) return 0;
  const std::uint8_t flags = data[0];
  const std::size_t config_len = std::min<std::size_t>(data[1] | data[2] << 8, size - 3);
  const std::string_view config(reinterpret_cast<const char*>(data + 3), config_len);
  const std::string_view text(reinterpret_cast<const char*>(data + 3 + config_len), size - 3 - config_len);

  if ((flags & 16) != 0) {
    try {
      const Tokenizer tok = Tokenizer::from_memory(g_tok->model_bytes(), config, "fuzz");
      FUZZ_CHECK(tok.vocab_size() >= tok.base_vocab_size() && tok.vocab_size() <= 1000000);
      exercise(tok, text, flags, false);
      return 0;
    } catch (const TokenizerError&) {
      // rejected config: fall through to the known-good tokenizer
    }
  }
  exercise(*g_tok, text, flags, true);
  return 0;
}
