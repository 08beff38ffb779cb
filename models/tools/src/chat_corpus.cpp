#include "qins/tools/chat_corpus.h"

#include <nlohmann/json.hpp>

#include <fstream>

#include "qins/util/errors.h"

namespace qins {

tok::ChatRole parse_chat_role(const std::string& role, const std::string& where) {
  if (role == "system") return tok::ChatRole::System;
  if (role == "user") return tok::ChatRole::User;
  if (role == "assistant") return tok::ChatRole::Assistant;
  throw Error(where + ": unknown role '" + role + "' (expected system, user or assistant)");
}

namespace {

std::vector<tok::ChatTurn> parse_chat_line(const std::string& line, const std::string& where) {
  std::vector<tok::ChatTurn> turns;
  try {
    const auto j = nlohmann::json::parse(line);
    if (!j.is_object() || !j.contains("messages") || !j["messages"].is_array())
      throw Error(where + ": expected {\"messages\": [...]}");
    for (const auto& m : j["messages"]) {
      if (!m.is_object() || !m.contains("role") || !m.contains("content") || !m["role"].is_string() ||
          !m["content"].is_string())
        throw Error(where + ": each message needs string \"role\" and \"content\"");
      turns.push_back({parse_chat_role(m["role"].get<std::string>(), where), m["content"].get<std::string>()});
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": not valid JSON (" + std::string(e.what()) + ")");
  }
  return turns;
}

}  // namespace

void read_chat_jsonl(const std::string& path,
                     const std::function<bool(const std::vector<tok::ChatTurn>&, const std::string&)>& fn) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open for reading");
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    if (!fn(parse_chat_line(line, where), where)) return;
  }
  if (in.bad()) throw Error(path + ": read failed");
}

std::vector<uint8_t> assistant_mask(const std::vector<int>& ids, const tok::Tokenizer& tok) {
  const int assistant = tok.token_id("<|assistant|>"), end = tok.token_id("<|end|>");
  if (assistant < 0 || end < 0) throw Error("the tokenizer has no <|assistant|> / <|end|> added tokens");
  std::vector<uint8_t> mask(ids.size(), 0);
  bool inside = false;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (inside) {
      mask[i] = 1;
      if (ids[i] == end) inside = false;
    } else if (ids[i] == assistant) {
      inside = true;
    }
  }
  return mask;
}

}  // namespace qins
