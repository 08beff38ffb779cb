// Chat corpora: JSONL files of {"messages": [{"role", "content"}...]}, one conversation a line,
// and the assistant mask that marks which tokens a model is scored or trained on. Shared by
// eval (scoring chat text) and the trainer.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "qins/tokenizer/tokenizer.h"

namespace qins {

// "system" | "user" | "assistant"; throws qins::Error naming `where` otherwise.
tok::ChatRole parse_chat_role(const std::string& role, const std::string& where);

// Calls fn(turns, where) for every non-blank line of the file; `where` is "path:line". A line
// that is not {"messages": [...]} with string role and content throws qins::Error naming it.
// fn returns false to stop reading.
void read_chat_jsonl(const std::string& path,
                     const std::function<bool(const std::vector<tok::ChatTurn>& turns, const std::string& where)>& fn);

// 1 for the tokens a reply consists of: from after each <|assistant|> through its <|end|>
// (message contents are encoded as plain text, so every such token came from the template).
// Throws qins::Error when the tokenizer lacks <|assistant|> / <|end|>.
std::vector<uint8_t> assistant_mask(const std::vector<int>& ids, const tok::Tokenizer& tok);

}  // namespace qins
