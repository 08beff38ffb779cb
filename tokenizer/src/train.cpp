// train_phi3_style_tokenizer: a small Llama/Phi-3-shaped SentencePiece model for tests and tools.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <vector>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>

#include "spm_backend.h"
#include "qins/tokenizer/tokenizer.h"
#include "qins/util/files.h"

namespace qins::tok {
namespace {

namespace fs = std::filesystem;

// The Phi-3.5 chat template (PHI3.md §5) as Jinja: system turn only when its content is
// non-empty; every turn is `<|role|>\n{content}<|end|>\n`; then `<|assistant|>\n` if asked.
constexpr const char* kPhi3ChatTemplate =
    R"({% for message in messages %})"
    R"({% if message['role'] == 'system' and message['content'] %})"
    R"({{ '<|system|>\n' + message['content'] + '<|end|>\n' }})"
    R"({% elif message['role'] == 'user' %})"
    R"({{ '<|user|>\n' + message['content'] + '<|end|>\n' }})"
    R"({% elif message['role'] == 'assistant' %})"
    R"({{ '<|assistant|>\n' + message['content'] + '<|end|>\n' }})"
    R"({% endif %}{% endfor %})"
    R"({% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %})";

struct Added {
  const char* content;
  bool rstrip;
};
// Phi-3.5's added tokens in id order (32000..32010 there, base+0..base+10 here).
constexpr Added kPhi3Added[] = {
    {"<|endoftext|>", false}, {"<|assistant|>", true},    {"<|placeholder1|>", true},
    {"<|placeholder2|>", true}, {"<|placeholder3|>", true}, {"<|placeholder4|>", true},
    {"<|system|>", true},     {"<|end|>", true},          {"<|placeholder5|>", true},
    {"<|placeholder6|>", true}, {"<|user|>", true},
};


// util's atomic write (temp file, fsync, rename), failures as the tokenizer's own error type.
void write_atomic(const fs::path& path, const std::string& bytes) {
  try {
    write_file_atomic(path.string(), bytes);
  } catch (const std::exception& e) {
    throw TokenizerError(e.what());
  }
}

// SentencePiece refuses to train when the characters it must keep (those covering
// `character_coverage` of the text) plus 259 meta/byte pieces exceed the vocabulary. A small
// vocabulary over a many-script corpus hits that, so pick the coverage that keeps at most half of
// the free pieces as characters (the rest become merges); rarer characters use byte fallback.
// Lower bound: SentencePiece's own minimum coverage, 0.98.
double character_coverage_for(const std::string& corpus, int vocab_size) {
  std::unordered_map<std::uint32_t, std::uint64_t> counts;
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < corpus.size();) {
    const auto lead = static_cast<unsigned char>(corpus[i]);
    const std::size_t n = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    std::uint32_t cp = 0;
    for (std::size_t k = 0; k < n && i + k < corpus.size(); ++k) cp = (cp << 8) | static_cast<unsigned char>(corpus[i + k]);
    i += n;
    if (cp == '\n') continue;  // line separator, not part of any training sentence
    ++counts[cp == ' ' ? 0x2581u : cp];
    ++total;
  }
  std::vector<std::uint64_t> freq;
  freq.reserve(counts.size());
  for (const auto& kv : counts) freq.push_back(kv.second);
  std::sort(freq.begin(), freq.end(), std::greater<>());
  const std::size_t keep = static_cast<std::size_t>(std::max(1, (vocab_size - 259) / 2));
  if (freq.size() <= keep || total == 0) return 1.0;
  std::uint64_t kept = 0;
  for (std::size_t k = 0; k < keep; ++k) kept += freq[k];
  // SentencePiece adds characters while the covered fraction is below the coverage: stop at `keep`.
  // It accepts only coverages in [0.98, 1]; if 0.98 needs more characters than fit, it says so.
  return std::clamp((static_cast<double>(kept) - 0.5) / static_cast<double>(total), 0.98, 0.9995);
}

}  // namespace

void train_phi3_style_tokenizer(const std::string& corpus_path, int base_vocab_size, const std::string& out_dir) {
  std::error_code ec;
  if (!fs::is_regular_file(corpus_path, ec))
    throw TokenizerError(corpus_path + ": training corpus is missing or not a file");
  if (base_vocab_size < 260 || base_vocab_size >= 1000000)
    throw TokenizerError(corpus_path + ": base vocabulary size " + std::to_string(base_vocab_size) +
                         " must be in [260, 1000000) (3 control pieces + 256 byte pieces + merges)");
  std::string corpus;
  {
    std::ifstream in(corpus_path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    if (!in) throw TokenizerError(corpus_path + ": cannot read training corpus");
    corpus = ss.str();
  }
  if (corpus.empty()) throw TokenizerError(corpus_path + ": training corpus is empty");
  char coverage[32];
  std::snprintf(coverage, sizeof coverage, "%.9f", character_coverage_for(corpus, base_vocab_size));
  fs::create_directories(out_dir, ec);
  if (ec) throw TokenizerError(out_dir + ": cannot create output directory (" + ec.message() + ")");

  // Llama-2's trainer settings, scaled down: BPE, byte fallback, digits split, no normalization
  // (identity: round trips are exact), dummy prefix on, whitespace runs kept as they are.
  const std::unordered_map<std::string, std::string> args = {
      {"input", corpus_path},
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(base_vocab_size)},
      {"byte_fallback", "true"},
      {"split_digits", "true"},
      {"normalization_rule_name", "identity"},
      {"add_dummy_prefix", "true"},
      {"remove_extra_whitespaces", "false"},
      {"allow_whitespace_only_pieces", "true"},
      {"character_coverage", coverage},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"max_sentence_length", "16384"},
      {"num_threads", "1"},  // small corpora: threads cost more than they save
      {"minloglevel", "2"},  // quiet: errors only (process-wide SentencePiece setting)
  };
  std::string model;
  const auto status = detail::spm_train(args, &model);
  if (!status.ok()) throw TokenizerError(corpus_path + ": SentencePiece training failed: " + status.ToString());

  // Read the piece count back from the model itself (the trainer's limit is exact, but trust the file).
  const Tokenizer probe = Tokenizer::from_memory(model, R"({"added_tokens": []})", out_dir + "/tokenizer.model");
  const int base = probe.base_vocab_size();

  nlohmann::json decoder = nlohmann::json::object();
  const auto add = [&](int id, const char* content, bool rstrip) {
    decoder[std::to_string(id)] = {{"content", content}, {"lstrip", false},  {"normalized", false},
                                   {"rstrip", rstrip},   {"single_word", false}, {"special", true}};
  };
  add(0, "<unk>", false);
  add(1, "<s>", false);
  add(2, "</s>", false);
  for (int i = 0; i < static_cast<int>(std::size(kPhi3Added)); ++i) add(base + i, kPhi3Added[i].content, kPhi3Added[i].rstrip);

  const nlohmann::json config = {
      {"add_bos_token", false},
      {"add_eos_token", false},
      {"added_tokens_decoder", decoder},
      {"bos_token", "<s>"},
      {"chat_template", kPhi3ChatTemplate},
      {"clean_up_tokenization_spaces", false},
      {"eos_token", "<|endoftext|>"},
      {"legacy", false},
      {"pad_token", "<|endoftext|>"},
      {"tokenizer_class", "LlamaTokenizer"},
      {"unk_token", "<unk>"},
  };
  const fs::path dir(out_dir);
  write_atomic(dir / "tokenizer.model", model);
  write_atomic(dir / "tokenizer_config.json", config.dump(2) + "\n");
}

}  // namespace qins::tok
