// `qins bench --first-reply N`: what a user meets when starting a chat, measured in fresh
// processes. The parent spawns this same executable N times (`qins bench MODEL
// --first-reply-child ...`, so the libraries, the model file mapping and the engine are truly
// new each time); each child loads the model and at once runs a chat reply (no wait for the
// background huge-page move), then a second one right after, then waits for the background work
// and runs a third: the steady state. Times are taken on the system-wide monotonic clock, so
// "launch to first token" runs from the parent's spawn call to the child's first sampled token.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace qins {

struct FirstReplyOptions {
  int runs = 3;            // fresh processes
  bool cold = false;       // drop the model file from the page cache before each launch
  int prompt_tokens = 64;  // the user message is sized to about this many tokens of the chat prompt
  int gen_tokens = 32;     // max new tokens per reply (greedy)
  int threads = 0;         // 0 = all cores
  int context = 4096;      // KV cache positions, as `qins chat` allocates them
};

// One reply of a child (Session::generate on a fresh conversation, same message each time).
struct ReplyFigures {
  int prompt_tokens = 0;
  int generated_tokens = 0;
  double ttft_s = 0.0;       // message in -> first token sampled
  double prefill_tps = 0.0;  // prompt tokens / prefill time
  double decode_tps = 0.0;   // tokens after the first / their time
  bool background_done = false;  // was the huge-page move finished when this reply started
};

struct FirstReplyRun {
  bool cold = false;
  std::string cold_method;              // how the page cache was dropped (cold runs)
  double cold_resident_fraction = -1;   // share of the file cached right before the launch
  double launch_to_start_s = 0.0;       // spawn -> the child's bench code runs (exec, libraries, init)
  double load_s = 0.0;                  // Engine::load in the child
  double launch_to_first_token_s = 0.0; // spawn -> first token of the first reply
  double huge_page_s = 0.0;             // the background move after load, wall time
  int64_t huge_page_bytes = 0;
  ReplyFigures first, second, steady;
};

struct FirstReplyResult {
  std::string model_path, model_name, cpu, load_average;  // load_average: /proc/loadavg before
  int threads = 0, prompt_tokens = 0, gen_tokens = 0, context = 0;
  std::vector<FirstReplyRun> runs;
};

using FirstReplyLog = std::function<void(const std::string&)>;

// The parent: spawns `exe` (this program) o.runs times. Throws Error when a child fails (its exit
// status and the child's own message) or the platform cannot spawn it.
FirstReplyResult run_first_reply_bench(const std::string& exe, const std::string& model_path,
                                       const FirstReplyOptions& o, const FirstReplyLog& log = {});
// The child: loads, replies three times, writes its FirstReplyRun as JSON to `json_out`.
// `launch_ns`: the parent's spawn time on the monotonic clock (steady_clock, ns since its epoch).
void run_first_reply_child(const std::string& model_path, const FirstReplyOptions& o, int64_t launch_ns,
                           const std::string& json_out);

std::string first_reply_text(const FirstReplyResult& r);
std::string first_reply_json(const FirstReplyResult& r);

// This program's own executable (/proc/self/exe on Linux, _NSGetExecutablePath on macOS); throws
// Error where it cannot be found.
std::string self_executable();

}  // namespace qins
