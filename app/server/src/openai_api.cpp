#include "openai_api.h"

#include <algorithm>

#include <chrono>
#include <cmath>
#include <random>

namespace qins::server {

using nlohmann::json;

namespace {

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    default: return "an unsupported value";
  }
}

ApiError wrong_type(const std::string& field, const char* expected, const json& got) {
  return bad_field(field, "'" + field + "' must be " + expected + ", got " + type_name(got), "invalid_type");
}

// A present, non-null member; null counts as absent (OpenAI clients send nulls for defaults).
const json* member(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

double number_in(const json& body, const char* name, double lo, double hi, double fallback) {
  const json* v = member(body, name);
  if (!v) return fallback;
  if (!v->is_number()) throw wrong_type(name, "a number", *v);
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "'%s' must be between %g and %g, got %g", name, lo, hi, x);
    throw bad_field(name, buf);
  }
  return x;
}

// An integer (2.0 is accepted, 2.5 is not).
int64_t integer_in(const json& body, const char* name, int64_t lo, int64_t hi, int64_t fallback) {
  const json* v = member(body, name);
  if (!v) return fallback;
  if (v->is_number_integer() || v->is_number_unsigned()) {
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi)) {
      throw bad_field(name, "'" + std::string(name) + "' must be at most " + std::to_string(hi));
    }
  } else if (!(v->is_number_float() && std::floor(v->get<double>()) == v->get<double>() &&
               std::fabs(v->get<double>()) < 9e15)) {
    throw wrong_type(name, "an integer", *v);
  }
  const int64_t x = v->is_number_unsigned() ? static_cast<int64_t>(v->get<uint64_t>())
                    : v->is_number_float()  ? static_cast<int64_t>(v->get<double>())
                                            : v->get<int64_t>();
  if (x < lo || x > hi) {
    throw bad_field(name, "'" + std::string(name) + "' must be between " + std::to_string(lo) + " and " +
                              std::to_string(hi) + ", got " + std::to_string(x));
  }
  return x;
}

bool boolean(const json& body, const char* name, bool fallback) {
  const json* v = member(body, name);
  if (!v) return fallback;
  if (!v->is_boolean()) throw wrong_type(name, "a boolean", *v);
  return v->get<bool>();
}

// Message content: a string, or an array of {"type":"text","text":...} parts (joined).
std::string content_of(const json& content, const std::string& field) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_null()) return "";
  if (!content.is_array()) throw wrong_type(field, "a string or an array of text parts", content);
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    const std::string pf = field + "[" + std::to_string(i) + "]";
    if (!part.is_object()) throw wrong_type(pf, "an object", part);
    auto type = part.find("type");
    if (type == part.end() || !type->is_string()) throw bad_field(pf + ".type", "'" + pf + ".type' must be a string");
    if (*type != "text") {
      throw bad_field(pf + ".type", "content part type '" + type->get<std::string>() +
                                        "' is not supported (text only)", "unsupported_value");
    }
    auto t = part.find("text");
    if (t == part.end() || !t->is_string()) throw bad_field(pf + ".text", "'" + pf + ".text' must be a string", "invalid_type");
    text += t->get<std::string>();
  }
  return text;
}

std::vector<ChatMessage> messages_of(const json& body) {
  const json* v = member(body, "messages");
  if (!v) throw bad_field("messages", "'messages' is required", "missing_required_parameter");
  if (!v->is_array()) throw wrong_type("messages", "an array", *v);
  if (v->empty()) throw bad_field("messages", "'messages' must hold at least one message");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < v->size(); ++i) {
    const json& m = (*v)[i];
    const std::string f = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) throw wrong_type(f, "an object", m);
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) throw bad_field(f + ".role", "'" + f + ".role' must be a string", "invalid_type");
    const std::string r = role->get<std::string>();
    ChatMessage msg;
    if (r == "system" || r == "developer") {
      msg.role = Role::System;
    } else if (r == "user") {
      msg.role = Role::User;
    } else if (r == "assistant") {
      msg.role = Role::Assistant;
    } else {
      throw bad_field(f + ".role", "role '" + r + "' is not supported (system, user or assistant)", "unsupported_value");
    }
    auto content = m.find("content");
    if (content == m.end() && msg.role != Role::Assistant) {
      throw bad_field(f + ".content", "'" + f + ".content' is required", "missing_required_parameter");
    }
    msg.content = content == m.end() ? "" : content_of(*content, f + ".content");
    out.push_back(std::move(msg));
  }
  return out;
}

std::string prompt_of(const json& body) {
  const json* v = member(body, "prompt");
  if (!v) throw bad_field("prompt", "'prompt' is required", "missing_required_parameter");
  if (v->is_string()) return v->get<std::string>();
  if (v->is_array()) {
    for (const json& item : *v) {
      if (!item.is_string()) throw bad_field("prompt", "'prompt' must be a string (token id prompts are not supported)", "invalid_type");
    }
    if (v->size() == 1) return (*v)[0].get<std::string>();
    if (v->size() > 1) throw bad_field("prompt", "only one prompt per request is supported, got " + std::to_string(v->size()), "unsupported_value");
    throw bad_field("prompt", "'prompt' must be a string (token id prompts are not supported)", "invalid_type");
  }
  throw wrong_type("prompt", "a string", *v);
}

std::vector<std::string> stop_of(const json& body) {
  const json* v = member(body, "stop");
  if (!v) return {};
  std::vector<std::string> out;
  if (v->is_string()) {
    out.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    if (v->size() > 16) throw bad_field("stop", "'stop' holds at most 16 strings, got " + std::to_string(v->size()));
    for (size_t i = 0; i < v->size(); ++i) {
      if (!(*v)[i].is_string()) throw wrong_type("stop[" + std::to_string(i) + "]", "a string", (*v)[i]);
      out.push_back((*v)[i].get<std::string>());
    }
  } else {
    throw wrong_type("stop", "a string or an array of strings", *v);
  }
  for (const auto& s : out) {
    if (s.empty()) throw bad_field("stop", "'stop' strings must not be empty");
  }
  return out;
}

std::string random_hex(int n) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < n; ++i) s += digits[rng() & 15];
  return s;
}

json base(const ResponseMeta& meta, const char* object) {
  return json{{"id", meta.id}, {"object", object}, {"created", meta.created}, {"model", meta.model}};
}

const char* chunk_object(const ResponseMeta& meta) {
  return meta.endpoint == Endpoint::Chat ? "chat.completion.chunk" : "text_completion";
}

json choice(const ResponseMeta& meta, const std::string& text, const json& finish_reason, bool first) {
  if (meta.endpoint == Endpoint::Chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (first || !text.empty()) delta["content"] = text;
    return json{{"index", 0}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", finish_reason}};
  }
  return json{{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", finish_reason}};
}

json chunk(const ResponseMeta& meta, json the_choice, bool include_usage) {
  json c = base(meta, chunk_object(meta));
  c["choices"] = json::array({std::move(the_choice)});
  if (include_usage) c["usage"] = nullptr;
  return c;
}

}  // namespace

ApiError bad_field(const std::string& param, const std::string& message, const std::string& code) {
  return ApiError(400, "invalid_request_error", code, param, message);
}

json error_body(const ApiError& e) {
  return json{{"error",
               {{"message", e.what()},
                {"type", e.type},
                {"param", e.param.empty() ? json(nullptr) : json(e.param)},
                {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

ApiRequest parse_request(Endpoint endpoint, const std::string& body_text, int context_length) {
  json body;
  try {
    body = json::parse(body_text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1e999
    throw ApiError(400, "invalid_request_error", "invalid_json", "",
                   std::string("the request body is not valid JSON: ") + e.what());
  }
  if (!body.is_object()) throw ApiError(400, "invalid_request_error", "invalid_json", "", "the request body must be a JSON object");

  ApiRequest r;
  r.endpoint = endpoint;
  if (const json* m = member(body, "model")) {
    if (!m->is_string()) throw wrong_type("model", "a string", *m);
    r.model = m->get<std::string>();
  }
  if (endpoint == Endpoint::Chat) {
    r.batch.raw = false;
    r.batch.messages = messages_of(body);
  } else {
    r.batch.raw = true;
    r.batch.prompt = prompt_of(body);
  }
  if (integer_in(body, "n", 1, 1 << 20, 1) != 1) {
    throw bad_field("n", "'n' must be 1: one choice per request is supported", "unsupported_value");
  }
  if (endpoint == Endpoint::Completion) {
    if (integer_in(body, "best_of", 1, 1 << 20, 1) != 1) throw bad_field("best_of", "'best_of' must be 1", "unsupported_value");
    if (boolean(body, "echo", false)) throw bad_field("echo", "'echo' is not supported", "unsupported_value");
    if (const json* s = member(body, "suffix")) {
      if (!s->is_string() || !s->get<std::string>().empty()) throw bad_field("suffix", "'suffix' is not supported", "unsupported_value");
    }
  }
  r.stream = boolean(body, "stream", false);
  if (const json* so = member(body, "stream_options")) {
    if (!so->is_object()) throw wrong_type("stream_options", "an object", *so);
    if (auto it = so->find("include_usage"); it != so->end() && !it->is_null() && !it->is_boolean()) {
      throw wrong_type("stream_options.include_usage", "a boolean", *it);
    }
    r.include_usage = boolean(*so, "include_usage", false);
  }

  SamplingParams& p = r.batch.params;
  // OpenAI's defaults (temperature 1, top_p 1), not the app's.
  p.temperature = static_cast<float>(number_in(body, "temperature", 0.0, 2.0, 1.0));
  p.top_p = static_cast<float>(number_in(body, "top_p", 0.0, 1.0, 1.0));
  if (p.top_p <= 0.0f) throw bad_field("top_p", "'top_p' must be greater than 0");
  p.top_k = static_cast<int>(integer_in(body, "top_k", 0, 1 << 24, 0));
  p.min_p = static_cast<float>(number_in(body, "min_p", 0.0, 1.0, 0.0));
  p.repetition_penalty = static_cast<float>(number_in(body, "repetition_penalty", 0.01, 10.0, 1.0));
  r.batch.frequency_penalty = static_cast<float>(number_in(body, "frequency_penalty", -2.0, 2.0, 0.0));
  r.batch.presence_penalty = static_cast<float>(number_in(body, "presence_penalty", -2.0, 2.0, 0.0));
  const int64_t limit = std::max(1, context_length);
  int64_t max_tokens = integer_in(body, "max_tokens", 1, 1 << 30, limit);
  max_tokens = integer_in(body, "max_completion_tokens", 1, 1 << 30, max_tokens);
  p.max_new_tokens = static_cast<int>(std::min(max_tokens, limit));
  if (const json* s = member(body, "seed")) {
    if (!(s->is_number_integer() || s->is_number_unsigned())) throw wrong_type("seed", "an integer", *s);
    p.seed = s->is_number_unsigned() ? s->get<uint64_t>() : static_cast<uint64_t>(s->get<int64_t>());
    p.random_seed = false;
  } else {
    p.random_seed = true;
  }
  r.batch.stop = stop_of(body);
  return r;
}

ResponseMeta new_response_meta(Endpoint endpoint, const std::string& model) {
  ResponseMeta m;
  m.endpoint = endpoint;
  m.id = (endpoint == Endpoint::Chat ? "chatcmpl-" : "cmpl-") + random_hex(24);
  m.created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  m.model = model;
  return m;
}

std::string finish_reason_of(const BatchResult& result) { return result.finish_reason == "length" ? "length" : "stop"; }

json usage_of(const GenerationStats& s) {
  // cached_tokens (OpenAI's field): the prompt tokens the request's slot already held from its
  // previous request (the scheduler's prefix reuse), i.e. not prefilled again.
  const int cached = std::max(0, s.prompt_tokens - s.prefilled_tokens);
  return json{{"prompt_tokens", s.prompt_tokens},
              {"completion_tokens", s.generated_tokens},
              {"total_tokens", s.prompt_tokens + s.generated_tokens},
              {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

json full_response(const ResponseMeta& meta, const std::string& text, const BatchResult& result) {
  json r = base(meta, meta.endpoint == Endpoint::Chat ? "chat.completion" : "text_completion");
  json c;
  if (meta.endpoint == Endpoint::Chat) {
    c = json{{"index", 0},
             {"message", {{"role", "assistant"}, {"content", text}}},
             {"logprobs", nullptr},
             {"finish_reason", finish_reason_of(result)}};
  } else {
    c = json{{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", finish_reason_of(result)}};
  }
  r["choices"] = json::array({c});
  r["usage"] = usage_of(result.stats);
  return r;
}

json role_chunk(const ResponseMeta& meta, bool include_usage) {
  return chunk(meta, choice(meta, "", nullptr, true), include_usage);
}

json content_chunk(const ResponseMeta& meta, const std::string& piece, bool include_usage) {
  return chunk(meta, choice(meta, piece, nullptr, false), include_usage);
}

json finish_chunk(const ResponseMeta& meta, const std::string& finish_reason, bool include_usage) {
  return chunk(meta, choice(meta, "", finish_reason, false), include_usage);
}

json usage_chunk(const ResponseMeta& meta, const GenerationStats& stats) {
  json c = base(meta, chunk_object(meta));
  c["choices"] = json::array();
  c["usage"] = usage_of(stats);
  return c;
}

std::string sse_event(const std::string& payload) { return "data: " + payload + "\n\n"; }

}  // namespace qins::server
