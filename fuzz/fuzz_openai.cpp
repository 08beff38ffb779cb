// libFuzzer entry: the OpenAI request parser of `qins serve` (app/server/src/openai_api.cpp) on
// both endpoints. A body either parses into a request within the documented ranges, or throws
// ApiError with a 4xx status and a message (what the server answers); any other exception
// (a JSON type error, std::out_of_range, ...) would be a 500 and escapes to libFuzzer as a crash.
// The response builders then run on what was parsed (the model name comes back in every body).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "openai_api.h"

namespace {

using qins::server::ApiError;
using qins::server::ApiRequest;
using qins::server::Endpoint;

// As server.cpp sends every body: invalid UTF-8 (a client's bytes quoted in an error) replaced.
std::string dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

void check(bool ok) {
  if (!ok) std::abort();
}

void check_ranges(const ApiRequest& r, Endpoint e, int context) {
  const qins::SamplingParams& p = r.batch.params;
  check(p.temperature >= 0.0f && p.temperature <= 2.0f);
  check(p.top_p > 0.0f && p.top_p <= 1.0f);
  check(p.top_k >= 0);
  check(p.min_p >= 0.0f && p.min_p <= 1.0f);
  check(p.repetition_penalty >= 0.01f && p.repetition_penalty <= 10.0f);
  check(r.batch.frequency_penalty >= -2.0f && r.batch.frequency_penalty <= 2.0f);
  check(r.batch.presence_penalty >= -2.0f && r.batch.presence_penalty <= 2.0f);
  check(p.max_new_tokens >= 1 && p.max_new_tokens <= context);
  check(r.batch.raw == (e == Endpoint::Completion));
  check(e == Endpoint::Completion || !r.batch.messages.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  constexpr int kContext = 4096;
  for (Endpoint e : {Endpoint::Chat, Endpoint::Completion}) {
    try {
      const ApiRequest r = qins::server::parse_request(e, body, kContext);
      check_ranges(r, e, kContext);
      const auto meta = qins::server::new_response_meta(e, r.model.empty() ? "m" : r.model);
      qins::BatchResult done;
      done.finish_reason = "length";
      done.stats.generated_tokens = 1;
      std::string out = dump(qins::server::full_response(meta, "text", done));
      out += qins::server::sse_event(dump(qins::server::content_chunk(meta, "piece", r.include_usage)));
      out += qins::server::sse_event(dump(qins::server::finish_chunk(meta, "stop", r.include_usage)));
      check(!out.empty());
    } catch (const ApiError& err) {
      check(err.status >= 400 && err.status < 500);
      check(err.what()[0] != '\0');
      check(!dump(qins::server::error_body(err)).empty());
    }
  }
  return 0;
}
