// Batched decoding with continuous batching (issue 15): several requests share each pass over the
// weights. Free of torch and Qt, like engine.h; `qins serve` and the app's server build on it.
//
// Up to SchedulerOptions::parallel sequences, each with its own KV cache, decode together: one
// step runs B rows through every projection, and the QINS kernels read each code once for all B
// rows. Requests join and leave between steps; a new request's prompt is prefilled in chunks of
// prefill_chunk tokens between decode steps. With temperature 0 a request produces exactly the
// tokens it would produce alone (Session::generate / Session::complete).
//
// Threading: submit, cancel, counters, drain and info may be called from any thread. All model
// work and every callback run on the scheduler's one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "qins/runtime/engine.h"

namespace qins {

struct BatchRequest {
  bool raw = false;                    // false: chat (messages rendered with the model's chat template,
  std::vector<ChatMessage> messages;   //        user text never becomes control tokens); true: `prompt` as raw text
  std::string prompt;
  SamplingParams params;               // engine.h (temperature, top_p, top_k, min_p, repetition_penalty, seed, max_new_tokens)
  float frequency_penalty = 0.0f;      // OpenAI semantics (0 = off): logit -= count * frequency_penalty,
  float presence_penalty = 0.0f;       // and -= presence_penalty once a token occurs; over the generated tokens
  std::vector<std::string> stop;       // stop strings: generation ends before the first occurrence; the text of
                                       // a stop string is never emitted (the scheduler holds back a possible prefix)
};

struct BatchResult {
  GenerationStats stats;               // prompt_tokens, generated_tokens, times, ... (stop_reason as in Session,
                                       // plus "stop_string"; time_to_first_token_s counts from submit)
  std::string finish_reason;           // "stop" (stop token or stop string) | "length" | "cancelled" | "error"
  std::string error;                   // message when finish_reason == "error"
};

struct BatchCallbacks {
  // Both are called on the scheduler's thread, must be quick and must not call into the scheduler.
  std::function<bool(std::string_view piece)> on_piece;  // whole UTF-8 chars; return false = cancel
  std::function<void(const BatchResult&)> on_done;        // exactly once per accepted request, last
};

class BatchHandle {                    // returned by submit; thread-safe
 public:
  virtual ~BatchHandle() = default;
  virtual void cancel() = 0;           // stops the request at the next token (or before prefill); on_done follows
  virtual bool done() const = 0;       // true once on_done has returned
};

struct BatchCounters {                 // a snapshot, thread-safe to read
  int64_t submitted = 0, completed = 0, cancelled = 0, failed = 0;  // completed: finished "stop" or "length"
  int64_t generated_tokens = 0, prefilled_tokens = 0, decode_steps = 0;
  // Of prefilled_tokens, those of prompts short enough for the projections' row paths (the decode
  // kernels row by row; QINS-4 models, prompts of at most 24 new tokens): Session picks the same.
  int64_t row_path_prefilled_tokens = 0;
  // Decode steps alone (prefill chunks between them excluded): sequences advanced (one token each)
  // and wall seconds in those steps (the batched model pass and sampling). full_*: the same over
  // the steps in which every one of the `parallel` slots was decoding (the steady state).
  int64_t decode_rows = 0, full_decode_rows = 0;
  double decode_s = 0.0, full_decode_s = 0.0;
  int active = 0, queued = 0;          // active: holding a slot (prefilling or decoding); queued: waiting for one
};

class QueueFull : public Error { using Error::Error; };    // submit when the queue is full
class PromptTooLong : public Error { using Error::Error; }; // prompt + 1 > context: message names the sizes

struct SchedulerOptions {
  int parallel = 4;        // sequences decoded together (each with its own KV cache)
  int max_queue = 64;      // waiting requests beyond `parallel`
  int prefill_chunk = 64;  // prompt tokens prefilled between two decode steps
};

class BatchScheduler {
 public:
  BatchScheduler(Engine& engine, SchedulerOptions options = {});  // starts its thread; engine outlives it
  ~BatchScheduler();                   // cancels everything (each on_done still called), joins
  BatchScheduler(const BatchScheduler&) = delete;
  BatchScheduler& operator=(const BatchScheduler&) = delete;

  // Validates and tokenizes on the caller's thread: throws PromptTooLong / QueueFull / Error (bad params)
  // without calling any callback; otherwise the request is queued and callbacks follow on the scheduler thread.
  std::shared_ptr<BatchHandle> submit(BatchRequest request, BatchCallbacks callbacks);
  BatchCounters counters() const;
  void drain();                        // stop accepting (submit throws Error), wait until all requests are done
  const ModelInfo& info() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace qins
