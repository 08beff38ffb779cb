// SentencePiece + Phi-3 added tokens + the Phi-3.5 chat template (PHI3.md §4, §5).
//
// tokenizer/ in one page
// - Tokenizer = a SentencePiece model (tokenizer.model, Llama-2 BPE with byte fallback) plus the
//   added tokens of tokenizer_config.json (`added_tokens_decoder`) or tokenizer.json
//   (`added_tokens`), `add_bos_token` (absent = false) and `chat_template` (only checked, see
//   chat_template_note(); the Phi-3.5 template is always applied, as code, by encode_chat()).
// - encode(text, allow_special): with allow_special, added-token strings are split out (leftmost,
//   longest first); an rstrip token swallows the whitespace to its right, an lstrip token the
//   whitespace to its left; every remaining segment is encoded by SentencePiece on its own, with
//   its own dummy "▁" prefix. Without allow_special the whole text is one segment (user text can
//   never produce a control token: the security rule of PHI3.md §4).
// - encode_chat(turns, gen): template token ids are emitted directly, contents as plain text.
// - decode(ids): "▁" -> space, <0xNN> byte tokens fused into UTF-8 (invalid bytes -> U+FFFD),
//   special tokens and SentencePiece control pieces skipped, then ONE leading space stripped from
//   the whole result. Hence decode(encode(x, false)) == x for every valid UTF-8 x without U+2581,
//   including x that starts with spaces (" a" encodes as "▁▁a" and decodes back to " a").
// - StreamDecoder: push() ids one by one; the concatenation of everything it returns, plus
//   flush(), equals decode() of the same ids.
// - Ids outside [0, vocab_size()) make decode/piece/StreamDecoder throw TokenizerError; unused ids
//   between the base vocabulary and the added tokens decode to nothing.
// - Errors (missing file, bad JSON, bad ids, duplicate tokens) throw TokenizerError naming the file.
// - A Tokenizer is immutable after loading; const members are safe to call from several threads.
//   A StreamDecoder keeps a pointer to its Tokenizer: keep the Tokenizer alive (and unmoved).
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace qins::tok {

class TokenizerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct AddedToken {
  int id = 0;
  std::string content;
  bool special = true;
  bool rstrip = false;
  bool lstrip = false;
};

enum class ChatRole { System, User, Assistant };
struct ChatTurn {
  ChatRole role = ChatRole::User;
  std::string content;
};

class Tokenizer {
 public:
  // `model_path`: tokenizer.model. `config_path`: tokenizer_config.json (added_tokens_decoder,
  // add_bos_token, chat_template) or tokenizer.json (added_tokens). A tokenizer_config.json with
  // neither added_tokens_decoder nor added_tokens takes them from tokenizer.json beside it (and
  // bos/eos/unk it lacks from special_tokens_map.json), or has none; config_json() is then that
  // merged config. Errors name the file.
  static Tokenizer from_files(const std::string& model_path, const std::string& config_path);
  // Same, from bytes (the .qins file carries both). `origin` names the source in errors.
  static Tokenizer from_memory(std::string_view model_bytes, std::string_view config_json,
                               const std::string& origin);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Plain text -> ids. Added-token strings are recognised only if `allow_special` (text the
  // chat template writes); user-typed text passes false. No BOS here.
  std::vector<int> encode(std::string_view text, bool allow_special) const;
  // The Phi-3.5 chat template as code; user/system/assistant contents are plain text.
  std::vector<int> encode_chat(const std::vector<ChatTurn>& turns, bool add_generation_prompt) const;
  // Ids -> text (byte tokens fused, special tokens skipped, one leading space stripped).
  // Throws TokenizerError for an id outside [0, vocab_size()).
  std::string decode(const std::vector<int>& ids) const;

  std::string piece(int id) const;          // the raw piece or added-token text
  int base_vocab_size() const;              // SentencePiece pieces
  int vocab_size() const;                   // base + added (max id + 1)
  bool is_special(int id) const;            // added special token
  int bos_id() const;
  bool add_bos() const;                     // tokenizer_config add_bos_token
  int token_id(std::string_view added_token_text) const;  // -1 if not an added token
  const std::vector<AddedToken>& added_tokens() const;
  // The config's chat_template ("" if absent); informational only.
  const std::string& chat_template() const;
  // Non-empty when the config's chat_template is present and is not the Phi-3 template.
  const std::string& chat_template_note() const;
  const std::string& model_bytes() const;   // serialized SentencePiece model
  const std::string& config_json() const;   // the config it was read from

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  friend class StreamDecoder;
};

// Streaming detokenizer: feed ids one at a time, get text back only at UTF-8 character
// boundaries (byte-fallback tokens of a multibyte character are held until complete).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok);
  std::string push(int id);   // text that became complete with this id ("" if none)
  std::string flush();        // whatever is held (invalid bytes become U+FFFD)
  void reset();

 private:
  const Tokenizer* tok_;
  std::string pending_;   // bytes not yet forming whole characters
  bool at_start_ = true;  // strip the leading space of the very first piece
};

// Test/tool helper: train a SentencePiece BPE model (byte fallback) on `corpus_path` and write
// `<out_dir>/tokenizer.model` and `<out_dir>/tokenizer_config.json` with the eleven Phi-3 added
// tokens placed after the base vocabulary (base+0 = <|endoftext|> ... base+10 = <|user|>).
// Pieces: 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF> as in Llama; identity normalization.
// The config also lists <unk>, <s>, </s> (ids 0..2, special) as Phi-3.5's does. Writes are atomic.
// Throws TokenizerError (naming the corpus or the output) if training or writing fails.
void train_phi3_style_tokenizer(const std::string& corpus_path, int base_vocab_size, const std::string& out_dir);

}  // namespace qins::tok
