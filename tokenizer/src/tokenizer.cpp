// Tokenizer: SentencePiece for ordinary text, a small table of added tokens on top of it, and the
// Phi-3.5 chat template written as code (PHI3.md §4, §5).
#include "spm_backend.h"
#include "qins/tokenizer/tokenizer.h"


#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "qins/tokenizer/utf8.h"
#include "qins/util/errors.h"
#include "qins/util/files.h"

namespace qins::tok {
namespace {

using nlohmann::json;

constexpr int kMaxAddedId = 1000000;      // ids are bounds-checked against this (exclusive)
constexpr int kMaxJsonDepth = 64;         // deeper nesting is not a tokenizer config
constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581 "▁", SentencePiece's space

// How one id turns into text when decoding.
enum class Surface : std::uint8_t {
  Text,     // `surface` bytes ("▁" already turned into spaces)
  Byte,     // one raw byte (<0xNN> byte-fallback piece)
  Skip,     // special added token, SentencePiece control piece, or an unused id
};

// Code point of the UTF-8 character at s[i] and its length; {-1, 1} for an invalid byte.
std::pair<long, std::size_t> decode_char(std::string_view s, std::size_t i) {
  const auto lead = static_cast<unsigned char>(s[i]);
  if (lead < 0x80) return {lead, 1};
  const std::size_t n = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
  if (lead < 0xC2 || lead > 0xF4 || i + n > s.size()) return {-1, 1};
  long cp = lead & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
  for (std::size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return {-1, 1};
    cp = (cp << 6) | (b & 0x3F);
  }
  constexpr long kMinCp[] = {0, 0, 0x80, 0x800, 0x10000};  // shorter encodings are overlong
  if (cp < kMinCp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {-1, 1};
  return {cp, n};
}

// Unicode White_Space, the set Hugging Face's rstrip/lstrip (Rust char::is_whitespace) swallows.
bool is_unicode_space(long cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// Bytes of leading whitespace of `s`.
std::size_t leading_space(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto [cp, n] = decode_char(s, i);
    if (!is_unicode_space(cp)) break;
    i += n;
  }
  return i;
}

// Bytes of `s` up to and including its last non-whitespace character.
std::size_t without_trailing_space(std::string_view s) {
  std::size_t i = 0, end = 0;
  while (i < s.size()) {
    const auto [cp, n] = decode_char(s, i);
    i += n;
    if (!is_unicode_space(cp)) end = i;
  }
  return end;
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
  return s;
}

// Through util's read_file: regular files only (a FIFO or /dev/zero is refused), at most `cap` bytes.
std::string read_file_or_throw(const std::string& path, const char* what, uint64_t cap = kMaxTokenizerBytes) {
  try {
    return read_file(path, cap);
  } catch (const Error& e) {
    throw TokenizerError(std::string(e.what()) + " (" + what + ")");
  }
}

// nlohmann's parser recurses on destruction; refuse absurd nesting before parsing (fuzz safety).
void check_json_depth(std::string_view text, const std::string& name) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) throw TokenizerError(name + ": JSON nested deeper than 64 levels");
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
}

// nlohmann keeps the last of two equal keys; a tokenizer config with a key twice (two entries for
// one id in added_tokens_decoder) is ambiguous and refused.
json parse_without_duplicate_keys(std::string_view text, const std::string& name) {
  std::vector<std::unordered_set<std::string>> keys;  // per open object
  auto on_event = [&](int, json::parse_event_t event, json& parsed) -> bool {
    if (event == json::parse_event_t::object_start) {
      keys.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!keys.empty()) keys.pop_back();
    } else if (event == json::parse_event_t::key && !keys.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!keys.back().insert(key).second) throw TokenizerError(name + ": duplicate key \"" + key + "\"");
    }
    return true;
  };
  return json::parse(text.begin(), text.end(), on_event);
}

bool optional_bool(const json& obj, const char* key, bool fallback, const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw TokenizerError(where + ": \"" + key + "\" must be true or false");
  return it->get<bool>();
}

// One added-token entry (the object of added_tokens_decoder or an element of added_tokens).
AddedToken parse_added_token(const json& obj, int id, const std::string& where) {
  if (!obj.is_object()) throw TokenizerError(where + ": added token entry must be a JSON object");
  const auto content = obj.find("content");
  if (content == obj.end() || !content->is_string())
    throw TokenizerError(where + ": added token " + std::to_string(id) + " has no \"content\" string");
  AddedToken t;
  t.id = id;
  t.content = content->get<std::string>();
  if (t.content.empty()) throw TokenizerError(where + ": added token " + std::to_string(id) + " has empty content");
  t.special = optional_bool(obj, "special", false, where);
  t.rstrip = optional_bool(obj, "rstrip", false, where);
  t.lstrip = optional_bool(obj, "lstrip", false, where);
  return t;
}

// "32000" -> 32000; only plain decimal digits in range.
int parse_id_key(const std::string& key, const std::string& name) {
  const bool digits = !key.empty() && key.size() <= 7 &&
                      std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; });
  const long v = digits ? std::stol(key) : -1;
  if (v < 0 || v >= kMaxAddedId)
    throw TokenizerError(name + ": added_tokens_decoder key \"" + key +
                         "\" is not a token id in [0, 1000000)");
  return static_cast<int>(v);
}

std::string token_text(const json& v) {  // "bos_token": "<s>" or {"content": "<s>", ...}
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return {};
}

// Skips the characters a Jinja expression puts between a marker and the "\n" that follows it
// (`'<|user|>\n'`, `'<|user|>' + '\n'`), then tells whether a newline comes next.
bool newline_follows(std::string_view t, std::size_t at) {
  while (at < t.size() && std::string_view(" '\"+~").find(t[at]) != std::string_view::npos) ++at;
  return t.substr(at, 2) == "\\n" || t.substr(at, 1) == "\n";
}

// Does `tmpl` write Phi-3 turns: `<|user|>`/`<|assistant|>` (and `<|system|>` if present) each
// followed by a newline, turns closed by `<|end|>`, and no marker of another chat format?
bool looks_like_phi3_template(std::string_view tmpl) {
  for (const std::string_view foreign :
       {"<|im_start|>", "<|im_end|>", "[INST]", "<|start_header_id|>", "<|eot_id|>", "<start_of_turn>",
        "<|begin_of_text|>", "<|turn>", "<|START_OF_TURN_TOKEN|>"}) {
    if (tmpl.find(foreign) != std::string_view::npos) return false;
  }
  if (tmpl.find("<|end|>") == std::string_view::npos) return false;
  for (const std::string_view marker : {"<|user|>", "<|assistant|>", "<|system|>"}) {
    bool seen = false;
    for (std::size_t at = tmpl.find(marker); at != std::string_view::npos; at = tmpl.find(marker, at + 1)) {
      seen = true;
      if (!newline_follows(tmpl, at + marker.size())) return false;
    }
    if (!seen && marker != "<|system|>") return false;  // Phi-3-mini-4k's template has no system turn
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
struct Tokenizer::Impl {
  detail::SentencePiece sp;
  std::string model_bytes;
  std::string config_json;
  std::string config_name;  // names the config in errors raised after loading
  std::string chat_template;
  std::string chat_template_note;

  std::vector<AddedToken> added;                  // sorted by id
  std::unordered_map<int, std::size_t> added_at;  // id -> index into `added`
  std::vector<std::size_t> match_order;           // indices into `added`, longest content first
  std::array<bool, 256> match_first{};            // first bytes of added-token contents

  int base_size = 0;
  int vocab = 0;
  int bos = -1;
  bool add_bos = false;
  int id_system = -1, id_user = -1, id_assistant = -1, id_end = -1;

  std::vector<Surface> kind;      // [vocab] how each id decodes
  std::vector<std::string> text;  // [vocab] decoded bytes for Surface::Text, 1 byte for Surface::Byte

  const AddedToken* added_token(int id) const {
    const auto it = added_at.find(id);
    return it == added_at.end() ? nullptr : &added[it->second];
  }

  void check_id(int id) const {
    if (id < 0 || id >= vocab)
      throw TokenizerError(config_name + ": token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                           std::to_string(vocab) + ")");
  }

  // SentencePiece on one segment: its own dummy "▁" prefix, no added tokens.
  void encode_piece(std::string_view segment, std::vector<int>& out) const {
    if (segment.empty()) return;
    std::vector<int> ids;
    const auto status = sp.Encode(segment, &ids);
    if (!status.ok()) throw TokenizerError(config_name + ": SentencePiece encode failed: " + status.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
  }

  // Text between two added tokens (`before`, `after`; nullptr at the ends): rstrip of `before`
  // swallows leading whitespace, lstrip of `after` trailing whitespace (reference rule 2).
  void encode_stripped(std::string_view segment, const AddedToken* before, const AddedToken* after,
                       std::vector<int>& out) const {
    if (before != nullptr && before->rstrip) segment.remove_prefix(leading_space(segment));
    if (after != nullptr && after->lstrip) segment = segment.substr(0, without_trailing_space(segment));
    encode_piece(segment, out);
  }

  // Longest added token whose content starts at text[i], or nullptr.
  const AddedToken* match_at(std::string_view text, std::size_t i) const {
    if (!match_first[static_cast<unsigned char>(text[i])]) return nullptr;
    for (const std::size_t k : match_order) {
      const std::string& c = added[k].content;
      if (text.compare(i, c.size(), c) == 0) return &added[k];
    }
    return nullptr;
  }

  // `text` sits between `before` and `after`. With `allow_special`, added-token strings inside it
  // are split out (leftmost, longest first) and become their ids.
  void encode_text(std::string_view text, bool allow_special, const AddedToken* before, const AddedToken* after,
                   std::vector<int>& out) const {
    std::size_t start = 0;
    if (allow_special && !added.empty()) {
      for (std::size_t i = 0; i < text.size();) {
        const AddedToken* t = match_at(text, i);
        if (t == nullptr) {
          ++i;
          continue;
        }
        encode_stripped(text.substr(start, i - start), before, t, out);
        out.push_back(t->id);
        before = t;
        i += t->content.size();
        start = i;
      }
    }
    encode_stripped(text.substr(start), before, after, out);
  }

  // Loads the SentencePiece model and the added tokens / template flags from the config JSON.
  static std::unique_ptr<Impl> load(std::string_view model_bytes, const std::string& model_name,
                                    std::string_view config_json, const std::string& config_name);

  void append_bytes(int id, std::string& bytes) const {
    check_id(id);
    const auto k = kind[static_cast<std::size_t>(id)];
    if (k != Surface::Skip) bytes += text[static_cast<std::size_t>(id)];
  }
};

auto Tokenizer::Impl::load(std::string_view model_bytes, const std::string& model_name,
                           std::string_view config_json, const std::string& config_name) -> std::unique_ptr<Impl> {
  auto impl = std::make_unique<Impl>();
  impl->config_name = config_name;
  if (model_bytes.empty()) throw TokenizerError(model_name + ": empty SentencePiece model");
  const auto status = impl->sp.LoadFromSerializedProto(model_bytes);
  if (!status.ok())
    throw TokenizerError(model_name + ": not a SentencePiece model (" + status.ToString() + ")");
  impl->model_bytes.assign(model_bytes.data(), model_bytes.size());
  impl->base_size = impl->sp.GetPieceSize();
  if (impl->base_size <= 0 || impl->base_size >= kMaxAddedId)
    throw TokenizerError(model_name + ": SentencePiece model has " + std::to_string(impl->base_size) + " pieces");

  // ---- config JSON
  if (config_json.empty()) throw TokenizerError(config_name + ": empty tokenizer config");
  check_json_depth(config_json, config_name);
  json cfg;
  try {
    cfg = parse_without_duplicate_keys(config_json, config_name);
  } catch (const json::exception& e) {
    throw TokenizerError(config_name + ": invalid JSON (" + e.what() + ")");
  }
  if (!cfg.is_object()) throw TokenizerError(config_name + ": top level must be a JSON object");
  impl->config_json.assign(config_json.data(), config_json.size());

  std::vector<AddedToken> added;
  if (const auto dec = cfg.find("added_tokens_decoder"); dec != cfg.end()) {  // tokenizer_config.json
    if (!dec->is_object()) throw TokenizerError(config_name + ": added_tokens_decoder must be an object");
    for (const auto& [key, entry] : dec->items()) {
      const int id = parse_id_key(key, config_name);
      added.push_back(parse_added_token(entry, id, config_name + ": added_tokens_decoder[\"" + key + "\"]"));
    }
  } else if (const auto list = cfg.find("added_tokens"); list != cfg.end()) {  // tokenizer.json
    if (!list->is_array()) throw TokenizerError(config_name + ": added_tokens must be an array");
    for (std::size_t i = 0; i < list->size(); ++i) {
      const json& entry = (*list)[i];
      const std::string where = config_name + ": added_tokens[" + std::to_string(i) + "]";
      if (!entry.is_object()) throw TokenizerError(where + ": entry must be a JSON object");
      const auto id = entry.find("id");
      if (id == entry.end() || !id->is_number_integer())
        throw TokenizerError(where + ": \"id\" must be an integer");
      const auto v = id->get<std::int64_t>();
      if (v < 0 || v >= kMaxAddedId)
        throw TokenizerError(where + ": id " + std::to_string(v) + " is outside [0, 1000000)");
      added.push_back(parse_added_token(entry, static_cast<int>(v), where));
    }
  }  // neither: a tokenizer without added tokens (from_files has already looked beside the config)

  std::sort(added.begin(), added.end(), [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });
  std::unordered_map<std::string, int> by_content;
  for (std::size_t i = 0; i < added.size(); ++i) {
    if (i > 0 && added[i].id == added[i - 1].id)
      throw TokenizerError(config_name + ": added token id " + std::to_string(added[i].id) + " appears twice");
    if (!by_content.emplace(added[i].content, added[i].id).second)
      throw TokenizerError(config_name + ": added token \"" + added[i].content + "\" appears twice (ids " +
                           std::to_string(by_content[added[i].content]) + " and " + std::to_string(added[i].id) +
                           ")");
    impl->added_at.emplace(added[i].id, i);
    impl->match_order.push_back(i);
    impl->match_first[static_cast<unsigned char>(added[i].content[0])] = true;
  }
  impl->added = std::move(added);
  std::stable_sort(impl->match_order.begin(), impl->match_order.end(), [&](std::size_t a, std::size_t b) {
    return impl->added[a].content.size() > impl->added[b].content.size();
  });
  impl->vocab = std::max(impl->base_size, impl->added.empty() ? 0 : impl->added.back().id + 1);

  impl->add_bos = optional_bool(cfg, "add_bos_token", false, config_name);
  impl->bos = impl->sp.bos_id();
  if (const auto b = cfg.find("bos_token"); b != cfg.end() && !b->is_null()) {
    const std::string bos_text = token_text(*b);
    if (bos_text.empty()) throw TokenizerError(config_name + ": bos_token must be a string or {\"content\": ...}");
    if (const auto it = by_content.find(bos_text); it != by_content.end()) {
      impl->bos = it->second;
    } else {
      const int id = impl->sp.PieceToId(bos_text);
      if (impl->sp.IdToPiece(id) == bos_text) impl->bos = id;
    }
  }
  if (impl->add_bos && impl->bos < 0)
    throw TokenizerError(config_name + ": add_bos_token is true but the tokenizer has no BOS token");

  if (const auto t = cfg.find("chat_template"); t != cfg.end() && !t->is_null()) {
    if (t->is_string()) {
      impl->chat_template = t->get<std::string>();
    } else if (t->is_array()) {  // [{"name": "default", "template": "..."}, ...]
      for (const auto& e : *t) {
        if (!e.is_object() || !e.contains("template") || !e["template"].is_string())
          throw TokenizerError(config_name + ": chat_template list entries need a \"template\" string");
        if (impl->chat_template.empty() || (e.contains("name") && e["name"] == "default"))
          impl->chat_template = e["template"].get<std::string>();
      }
    } else {
      throw TokenizerError(config_name + ": chat_template must be a string");
    }
    if (!impl->chat_template.empty() && !looks_like_phi3_template(impl->chat_template))
      impl->chat_template_note = "The chat template in " + config_name +
                                 " is not the Phi-3 template; QINS Chat formats conversations with its "
                                 "built-in Phi-3.5 template (<|system|>, <|user|>, <|assistant|> turns, each "
                                 "closed by <|end|>) instead.";
  }

  const auto find = [&](const char* s) {
    const auto it = by_content.find(s);
    return it == by_content.end() ? -1 : it->second;
  };
  impl->id_system = find("<|system|>");
  impl->id_user = find("<|user|>");
  impl->id_assistant = find("<|assistant|>");
  impl->id_end = find("<|end|>");

  // ---- decode table, one entry per id
  impl->kind.assign(static_cast<std::size_t>(impl->vocab), Surface::Skip);
  impl->text.assign(static_cast<std::size_t>(impl->vocab), std::string());
  for (int id = 0; id < impl->vocab; ++id) {
    const auto u = static_cast<std::size_t>(id);
    if (const AddedToken* t = impl->added_token(id)) {
      if (!t->special && !(id < impl->base_size && impl->sp.IsControl(id))) {
        impl->kind[u] = Surface::Text;
        impl->text[u] = t->content;
      }
    } else if (id >= impl->base_size || impl->sp.IsControl(id)) {
      // unused id between the base vocabulary and the added tokens, or <s> / </s>: no text
    } else if (impl->sp.IsByte(id)) {
      const std::string p = impl->sp.IdToPiece(id);  // "<0xNN>"
      unsigned v = 0;
      if (p.size() != 6 || std::sscanf(p.c_str(), "<0x%2X>", &v) != 1)
        throw TokenizerError(model_name + ": byte piece " + std::to_string(id) + " is not <0xNN>");
      impl->kind[u] = Surface::Byte;
      impl->text[u] = std::string(1, static_cast<char>(v));
    } else if (impl->sp.IsUnknown(id)) {
      impl->kind[u] = Surface::Text;
      impl->text[u] = "\xEF\xBF\xBD";  // a character the vocabulary could not represent
    } else {
      impl->kind[u] = Surface::Text;
      impl->text[u] = replace_all(impl->sp.IdToPiece(id), kSpaceMarker, " ");
    }
  }
  return impl;
}

// ---------------------------------------------------------------------------------------------
Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

namespace {

// Folders on the Hub vary: a tokenizer_config.json without added_tokens_decoder (older Llama-style
// folders) takes its added tokens from tokenizer.json's added_tokens beside it, and bos/eos/unk
// names it lacks from special_tokens_map.json; with neither file the tokenizer has no added tokens.
// The result is the config the tokenizer keeps (config_json()), so a converted model carries it.
std::string merge_sibling_token_files(const std::string& config, const std::string& config_path) {
  json cfg;
  try {
    cfg = json::parse(config);
  } catch (const json::exception&) {
    return config;  // Impl::load reports it
  }
  if (!cfg.is_object() || cfg.contains("added_tokens_decoder") || cfg.contains("added_tokens")) return config;
  const std::filesystem::path dir = std::filesystem::path(config_path).parent_path();
  const auto read_json = [&](const char* name, json& out) {
    const auto p = dir / name;
    std::error_code ec;
    if (!std::filesystem::is_regular_file(p, ec)) return false;
    const std::string text = read_file_or_throw(p.string(), name);
    check_json_depth(text, p.string());
    try {
      out = json::parse(text);
    } catch (const json::exception& e) {
      throw TokenizerError(p.string() + ": invalid JSON (" + e.what() + ")");
    }
    return out.is_object();
  };
  json tj, sm;
  if (read_json("tokenizer.json", tj) && tj.contains("added_tokens")) cfg["added_tokens"] = tj["added_tokens"];
  else cfg["added_tokens"] = json::array();
  if (read_json("special_tokens_map.json", sm))
    for (const char* k : {"bos_token", "eos_token", "unk_token"})
      if (!cfg.contains(k) && sm.contains(k)) cfg[k] = sm[k];
  return cfg.dump();
}

}  // namespace

Tokenizer Tokenizer::from_files(const std::string& model_path, const std::string& config_path) {
  const std::string model = read_file_or_throw(model_path, "tokenizer model");
  const std::string config = merge_sibling_token_files(read_file_or_throw(config_path, "tokenizer config"), config_path);
  return Tokenizer(Impl::load(model, model_path, config, config_path));
}

Tokenizer Tokenizer::from_memory(std::string_view model_bytes, std::string_view config_json,
                                 const std::string& origin) {
  return Tokenizer(Impl::load(model_bytes, origin + " (tokenizer model)", config_json, origin + " (tokenizer config)"));
}

std::vector<int> Tokenizer::encode(std::string_view text, bool allow_special) const {
  std::vector<int> out;
  impl_->encode_text(text, allow_special, nullptr, nullptr, out);
  return out;
}

std::vector<int> Tokenizer::encode_chat(const std::vector<ChatTurn>& turns, bool add_generation_prompt) const {
  const Impl& m = *impl_;
  for (const auto& [id, name] : {std::pair{m.id_user, "<|user|>"}, {m.id_assistant, "<|assistant|>"},
                                 {m.id_end, "<|end|>"}, {m.id_system, "<|system|>"}}) {
    if (id < 0)
      throw TokenizerError(m.config_name + ": this model has no chat template qins can use (no " + name +
                         " added token, which the Phi-3 chat template needs); raw completion still works "
                         "(qins generate --raw)");
  }
  // The rendered template alternates template tokens and text; the text between two tokens is the
  // "\n" the template writes plus the (plain) message content, encoded as one segment.
  std::vector<int> out;
  if (m.add_bos) out.push_back(m.bos);
  const AddedToken* before = nullptr;  // the template token just written
  std::string pending;                 // text written since it
  const auto emit = [&](int id) {
    const AddedToken* t = m.added_token(id);
    m.encode_text(pending, false, before, t, out);
    out.push_back(id);
    before = t;
    pending.clear();
  };
  for (const ChatTurn& turn : turns) {
    if (turn.role == ChatRole::System && turn.content.empty()) continue;
    emit(turn.role == ChatRole::System ? m.id_system : turn.role == ChatRole::User ? m.id_user : m.id_assistant);
    pending = "\n" + turn.content;
    emit(m.id_end);
    pending = "\n";
  }
  if (add_generation_prompt) {
    emit(m.id_assistant);
    pending = "\n";
  }
  m.encode_text(pending, false, before, nullptr, out);
  return out;
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  std::string bytes;
  for (const int id : ids) impl_->append_bytes(id, bytes);
  if (!bytes.empty() && bytes[0] == ' ') bytes.erase(0, 1);
  return utf8_sanitize(bytes);
}

std::string Tokenizer::piece(int id) const {
  impl_->check_id(id);
  if (const AddedToken* t = impl_->added_token(id)) return t->content;
  if (id < impl_->base_size) return impl_->sp.IdToPiece(id);
  return {};
}

int Tokenizer::base_vocab_size() const { return impl_->base_size; }
int Tokenizer::vocab_size() const { return impl_->vocab; }
bool Tokenizer::is_special(int id) const {
  const AddedToken* t = impl_->added_token(id);
  return t != nullptr && t->special;
}
int Tokenizer::bos_id() const { return impl_->bos; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }
int Tokenizer::token_id(std::string_view added_token_text) const {
  for (const AddedToken& t : impl_->added)
    if (t.content == added_token_text) return t.id;
  return -1;
}
const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }
const std::string& Tokenizer::chat_template_note() const { return impl_->chat_template_note; }
const std::string& Tokenizer::model_bytes() const { return impl_->model_bytes; }
const std::string& Tokenizer::config_json() const { return impl_->config_json; }

// ---------------------------------------------------------------------------------------------
StreamDecoder::StreamDecoder(const Tokenizer& tok) : tok_(&tok) {}

std::string StreamDecoder::push(int id) {
  tok_->impl_->append_bytes(id, pending_);
  if (at_start_ && !pending_.empty()) {  // decode() strips one leading space of the whole text
    if (pending_[0] == ' ') pending_.erase(0, 1);
    at_start_ = false;
  }
  const std::size_t n = utf8_complete_prefix(pending_);
  std::string out = utf8_sanitize(std::string_view(pending_).substr(0, n));
  pending_.erase(0, n);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out = utf8_sanitize(pending_);
  pending_.clear();
  return out;
}

void StreamDecoder::reset() {
  pending_.clear();
  at_start_ = true;
}

}  // namespace qins::tok
