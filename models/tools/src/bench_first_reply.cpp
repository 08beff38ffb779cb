// `qins bench --first-reply`: fresh processes, launch to first token (bench_first_reply.h).
#include "qins/tools/bench_first_reply.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "bench_system.h"
#include "qins/runtime/engine.h"
#include "qins/runtime/internal.h"
#include "qins/tools/bench.h"
#include "qins/tools/fixture.h"
#include "qins/util/files.h"
#include "qins/util/timing.h"

#if defined(__linux__) || defined(__APPLE__)
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#endif
#if defined(__APPLE__)
#include <mach-o/dyld.h>
#endif

extern char** environ;

namespace qins {

namespace {

using json = nlohmann::json;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// The user message: the fixture corpus's first words, as many as keep the rendered chat prompt
// within `prompt_tokens` tokens (at least one word). A few small tokenizations, inside the
// measured launch-to-first-token time (well under a millisecond each).
std::string user_message(const Engine& engine, int prompt_tokens) {
  std::istringstream in(fixture_corpus());
  std::string word, msg;
  while (in >> word) {
    const std::string next = msg.empty() ? word : msg + " " + word;
    const auto ids = engine.tokenize_chat({{Role::User, next}}, true);
    if (!msg.empty() && static_cast<int>(ids.size()) > prompt_tokens) break;
    msg = next;
  }
  return msg;
}

json reply_json(const ReplyFigures& f) {
  return {{"prompt_tokens", f.prompt_tokens}, {"generated_tokens", f.generated_tokens}, {"ttft_s", f.ttft_s},
          {"prefill_tps", f.prefill_tps},     {"decode_tps", f.decode_tps},             {"background_done", f.background_done}};
}

ReplyFigures reply_from(const json& j, const std::string& what) {
  ReplyFigures f;
  try {
    f.prompt_tokens = j.at("prompt_tokens").get<int>();
    f.generated_tokens = j.at("generated_tokens").get<int>();
    f.ttft_s = j.at("ttft_s").get<double>();
    f.prefill_tps = j.at("prefill_tps").get<double>();
    f.decode_tps = j.at("decode_tps").get<double>();
    f.background_done = j.at("background_done").get<bool>();
  } catch (const json::exception& e) {
    throw Error("first-reply child result: '" + what + "': " + e.what());
  }
  return f;
}

json run_json(const FirstReplyRun& r) {
  return {{"cold", r.cold},
          {"cold_method", r.cold_method},
          {"cold_resident_fraction", r.cold_resident_fraction},
          {"launch_to_start_s", r.launch_to_start_s},
          {"load_s", r.load_s},
          {"launch_to_first_token_s", r.launch_to_first_token_s},
          {"huge_page_s", r.huge_page_s},
          {"huge_page_bytes", r.huge_page_bytes},
          {"first", reply_json(r.first)},
          {"second", reply_json(r.second)},
          {"steady", reply_json(r.steady)}};
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

}  // namespace

std::string self_executable() {
#if defined(__linux__)
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw Error(std::string("/proc/self/exe: cannot read the link: ") + std::strerror(errno));
  return std::string(buf, static_cast<size_t>(n));
#elif defined(__APPLE__)
  uint32_t size = 0;
  _NSGetExecutablePath(nullptr, &size);
  std::string p(size, '\0');
  if (_NSGetExecutablePath(p.data(), &size) != 0) throw Error("_NSGetExecutablePath failed");
  p.resize(std::strlen(p.c_str()));
  return p;
#else
  throw Error("--first-reply: finding this program's executable is not supported on this platform");
#endif
}

void run_first_reply_child(const std::string& model_path, const FirstReplyOptions& o, int64_t launch_ns,
                           const std::string& json_out) {
  const int64_t start_ns = now_ns();
  configure_threads(o.threads);
  LoadOptions lo;
  lo.threads = o.threads;
  lo.context_length = std::max(o.context, o.prompt_tokens * 2 + o.gen_tokens + 8);
  const auto t_load = Clock::now();
  auto engine = Engine::load(model_path, lo);
  const double load_s = seconds_since(t_load);

  auto session = engine->new_session();
  const std::vector<ChatMessage> messages{{Role::User, user_message(*engine, o.prompt_tokens)}};
  SamplingParams sp;
  sp.temperature = 0.0f;  // greedy: the same reply each time
  sp.random_seed = false;
  sp.max_new_tokens = o.gen_tokens;
  int64_t first_token_ns = 0;
  auto reply = [&](bool record_first) {
    ReplyFigures f;
    f.background_done = engine->background_work().done;
    session->reset();  // a fresh conversation: every reply prefills the whole prompt
    const int64_t t0 = now_ns();
    const GenerationStats s = session->generate(messages, sp, [](std::string_view) { return true; });
    if (record_first) first_token_ns = t0 + static_cast<int64_t>(s.time_to_first_token_s * 1e9);
    f.prompt_tokens = s.prompt_tokens;
    f.generated_tokens = s.generated_tokens;
    f.ttft_s = s.time_to_first_token_s;
    f.prefill_tps = s.prefill_tokens_per_s;
    f.decode_tps = s.tokens_per_s;
    return f;
  };
  FirstReplyRun r;
  r.first = reply(true);
  r.second = reply(false);
  engine->wait_for_background_work();
  const Engine::BackgroundWork bw = engine->background_work();
  r.huge_page_s = bw.seconds;
  r.huge_page_bytes = bw.bytes;
  r.steady = reply(false);
  r.launch_to_start_s = static_cast<double>(start_ns - launch_ns) / 1e9;
  r.load_s = load_s;
  r.launch_to_first_token_s = static_cast<double>(first_token_ns - launch_ns) / 1e9;
  json j = run_json(r);
  j["model_name"] = engine->info().name;
  write_file_atomic(json_out, j.dump(2));
}

FirstReplyResult run_first_reply_bench(const std::string& exe, const std::string& model_path,
                                       const FirstReplyOptions& o, const FirstReplyLog& log) {
  FirstReplyResult res;
  res.model_path = model_path;
  res.cpu = cpuinfo_field("model name");
  res.load_average = read_text("/proc/loadavg");
  while (!res.load_average.empty() && res.load_average.back() == '\n') res.load_average.pop_back();
  res.threads = o.threads;
  res.prompt_tokens = o.prompt_tokens;
  res.gen_tokens = o.gen_tokens;
  res.context = o.context;
#if defined(__linux__) || defined(__APPLE__)
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/qins-first-reply-XXXXXX";
  const int fd = ::mkstemp(templ.data());
  if (fd < 0) throw Error(templ + ": cannot create a temporary file: " + std::strerror(errno));
  ::close(fd);
  const std::string out = templ;
  struct Cleanup {
    std::string p;
    ~Cleanup() { std::remove(p.c_str()); }
  } cleanup{out};

  for (int i = 0; i < o.runs; ++i) {
    FirstReplyRun run;
    run.cold = o.cold;
    if (o.cold) {
      run.cold_method = drop_page_cache(model_path);
      if (run.cold_method.empty())
        throw Error("--cold: cannot drop " + model_path + " from the page cache here (no drop_caches, no posix_fadvise)");
      run.cold_resident_fraction = page_cache_fraction(model_path);
    }
    std::remove(out.c_str());
    const int64_t launch = now_ns();
    std::vector<std::string> args{exe,
                                  "bench",
                                  model_path,
                                  "--first-reply-child",
                                  std::to_string(launch),
                                  "--json-out",
                                  out,
                                  "--prompt-tokens",
                                  std::to_string(o.prompt_tokens),
                                  "--gen-tokens",
                                  std::to_string(o.gen_tokens),
                                  "--threads",
                                  std::to_string(o.threads),
                                  "--context",
                                  std::to_string(o.context)};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    const int rc = ::posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv.data(), environ);
    if (rc != 0) throw Error(exe + ": cannot start a fresh process: " + std::strerror(rc));
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0)
      if (errno != EINTR) throw Error(exe + ": waitpid failed: " + std::strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      throw Error("--first-reply: run " + std::to_string(i + 1) + ": the child process " +
                  (WIFEXITED(status) ? "exited with status " + std::to_string(WEXITSTATUS(status))
                                     : "was killed by signal " + std::to_string(WTERMSIG(status))) +
                  " (its message is above)");
    json j;
    try {
      j = json::parse(read_file(out, 1 << 20));
      run.launch_to_start_s = j.at("launch_to_start_s").get<double>();
      run.load_s = j.at("load_s").get<double>();
      run.launch_to_first_token_s = j.at("launch_to_first_token_s").get<double>();
      run.huge_page_s = j.at("huge_page_s").get<double>();
      run.huge_page_bytes = j.at("huge_page_bytes").get<int64_t>();
      res.model_name = j.at("model_name").get<std::string>();
    } catch (const json::exception& e) {
      throw Error(out + ": the first-reply child's result is not valid: " + e.what());
    }
    run.first = reply_from(j.at("first"), "first");
    run.second = reply_from(j.at("second"), "second");
    run.steady = reply_from(j.at("steady"), "steady");
    if (log)
      log("run " + std::to_string(i + 1) + (o.cold ? " (cold)" : " (warm)") + ": launch to first token " +
          fmt("%.2f", run.launch_to_first_token_s) + " s (load " + fmt("%.2f", run.load_s) + " s), first reply " +
          fmt("%.1f", run.first.prefill_tps) + " / " + fmt("%.2f", run.first.decode_tps) + " tok/s, steady " +
          fmt("%.1f", run.steady.prefill_tps) + " / " + fmt("%.2f", run.steady.decode_tps) + " tok/s");
    res.runs.push_back(run);
  }
#else
  (void)exe;
  (void)log;
  throw Error("--first-reply: spawning a fresh process is not supported on this platform");
#endif
  return res;
}

std::string first_reply_json(const FirstReplyResult& r) {
  json runs = json::array();
  for (const auto& x : r.runs) runs.push_back(run_json(x));
  json j{{"model_path", r.model_path}, {"model_name", r.model_name}, {"cpu", r.cpu},
         {"load_average", r.load_average}, {"threads", r.threads},  {"prompt_tokens", r.prompt_tokens},
         {"gen_tokens", r.gen_tokens}, {"context", r.context}, {"runs", runs}};
  return j.dump(2) + "\n";
}

std::string first_reply_text(const FirstReplyResult& r) {
  std::ostringstream s;
  const bool cold = !r.runs.empty() && r.runs[0].cold;
  s << "model: " << r.model_name << " (" << r.model_path << ")\n"
    << "cpu: " << r.cpu << ", threads " << (r.threads > 0 ? std::to_string(r.threads) : "all") << ", load average before: "
    << r.load_average << "\n"
    << r.runs.size() << " fresh process(es), " << (cold ? "cold (model file dropped from the page cache before each)" : "warm page cache")
    << "; each: load, reply 1 at once, reply 2 right after, reply 3 after the background huge-page move\n"
    << "(every reply: a fresh conversation, the same user message, greedy, up to " << r.gen_tokens << " new tokens)\n\n";
  auto col = [&](const char* label, auto get, const char* f) {
    std::vector<double> v;
    s << "  " << label;
    for (const auto& x : r.runs) {
      v.push_back(get(x));
      s << fmt(f, v.back());
    }
    s << "   median" << fmt(f, median(v)) << "\n";
  };
  s << "                                     ";
  for (size_t i = 0; i < r.runs.size(); ++i) s << fmt("   run %-3.0f", double(i + 1));
  s << "\n";
  col("launch -> first token (s)        ", [](const FirstReplyRun& x) { return x.launch_to_first_token_s; }, "%10.2f");
  col("  launch -> bench code runs (s)  ", [](const FirstReplyRun& x) { return x.launch_to_start_s; }, "%10.2f");
  col("  load (s)                       ", [](const FirstReplyRun& x) { return x.load_s; }, "%10.2f");
  col("  reply 1 time to first token (s)", [](const FirstReplyRun& x) { return x.first.ttft_s; }, "%10.2f");
  col("reply 1 prefill (tok/s)          ", [](const FirstReplyRun& x) { return x.first.prefill_tps; }, "%10.1f");
  col("reply 1 decode (tok/s)           ", [](const FirstReplyRun& x) { return x.first.decode_tps; }, "%10.2f");
  col("reply 2 prefill (tok/s)          ", [](const FirstReplyRun& x) { return x.second.prefill_tps; }, "%10.1f");
  col("reply 2 decode (tok/s)           ", [](const FirstReplyRun& x) { return x.second.decode_tps; }, "%10.2f");
  col("steady prefill (tok/s)           ", [](const FirstReplyRun& x) { return x.steady.prefill_tps; }, "%10.1f");
  col("steady decode (tok/s)            ", [](const FirstReplyRun& x) { return x.steady.decode_tps; }, "%10.2f");
  col("reply 1 / steady, prefill        ", [](const FirstReplyRun& x) { return x.first.prefill_tps / std::max(1e-9, x.steady.prefill_tps); }, "%10.2f");
  col("reply 1 / steady, decode         ", [](const FirstReplyRun& x) { return x.first.decode_tps / std::max(1e-9, x.steady.decode_tps); }, "%10.2f");
  col("huge-page move (s, background)   ", [](const FirstReplyRun& x) { return x.huge_page_s; }, "%10.2f");
  if (!r.runs.empty()) {
    const auto& x = r.runs[0];
    s << "\nprompt " << x.first.prompt_tokens << " tokens, reply " << x.first.generated_tokens
      << " tokens; background move " << (x.first.background_done ? "already done" : "still running")
      << " when reply 1 started, " << (x.second.background_done ? "done" : "still running") << " when reply 2 started";
    if (cold) s << "; file " << fmt("%.0f", 100.0 * x.cold_resident_fraction) << " % cached before launch (" << x.cold_method << ")";
    s << "\n";
  }
  return s.str();
}

}  // namespace qins
