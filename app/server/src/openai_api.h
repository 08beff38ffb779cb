// The OpenAI wire format of `qins serve`: request bodies -> BatchRequest, results -> response
// bodies and stream chunks. No sockets here (server.cpp does the HTTP); nlohmann/json.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "qins/runtime/batch.h"

namespace qins::server {

// An error answered as {"error":{"message","type","param","code"}} with an HTTP status.
struct ApiError : std::runtime_error {
  ApiError(int status_, std::string type_, std::string code_, std::string param_, const std::string& message)
      : std::runtime_error(message), status(status_), type(std::move(type_)), code(std::move(code_)),
        param(std::move(param_)) {}
  int status;
  std::string type;   // invalid_request_error | authentication_error | rate_limit_error | server_error
  std::string code;   // e.g. invalid_type, context_length_exceeded, queue_full ("" = null)
  std::string param;  // the offending field ("" = null)
};

// 400 naming the field.
ApiError bad_field(const std::string& param, const std::string& message, const std::string& code = "invalid_value");

nlohmann::json error_body(const ApiError& e);

enum class Endpoint { Chat, Completion };

// What one POST asks for.
struct ApiRequest {
  Endpoint endpoint = Endpoint::Chat;
  BatchRequest batch;
  std::string model;  // "" when the body names none
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

// Parses a request body. `context_length` is the default for max_tokens (generate until the model
// stops or the context is full). Throws ApiError (400) naming the field for malformed JSON,
// wrong types, out-of-range values, `n` > 1 and unsupported content.
ApiRequest parse_request(Endpoint endpoint, const std::string& body, int context_length);

// The ids and fields every response of one request shares.
struct ResponseMeta {
  Endpoint endpoint = Endpoint::Chat;
  std::string id;  // chatcmpl-... | cmpl-...
  int64_t created = 0;
  std::string model;
};
ResponseMeta new_response_meta(Endpoint endpoint, const std::string& model);

// finish_reason of a finished result: "stop" | "length" (the scheduler's other outcomes are
// answered as errors before they reach a response body).
std::string finish_reason_of(const BatchResult& result);

nlohmann::json usage_of(const GenerationStats& stats);

// The whole non-streaming response.
nlohmann::json full_response(const ResponseMeta& meta, const std::string& text, const BatchResult& result);

// Stream chunks (each sent as `data: <json>\n\n`). include_usage adds "usage": null to every
// chunk, as OpenAI does, and the final usage chunk has empty choices.
nlohmann::json role_chunk(const ResponseMeta& meta, bool include_usage);  // chat only: delta.role
nlohmann::json content_chunk(const ResponseMeta& meta, const std::string& piece, bool include_usage);
nlohmann::json finish_chunk(const ResponseMeta& meta, const std::string& finish_reason, bool include_usage);
nlohmann::json usage_chunk(const ResponseMeta& meta, const GenerationStats& stats);

// One SSE event: "data: " + payload + "\n\n".
std::string sse_event(const std::string& payload);

}  // namespace qins::server
