// qins chat / qins generate: streaming generation from the terminal.
#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "commands.h"
#include "qins/runtime/engine.h"

namespace qins::cli {
namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_sigint(int) { g_stop.store(true); }

// Ctrl-C sets the stop flag (the reply in flight ends; the program goes on).
void install_sigint() {
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
}

struct CommonOptions {
  std::string model;
  SamplingParams sampling;
  int64_t seed = -1;
  int context = 4096;
  int threads = 0;
  std::string weights = "f32";
  std::string kv = "bf16";
  bool bf16_activations = false;
  bool stats = false;
  std::string device = "auto";
  std::string gpu_weights = "expand";
};

void add_common(CLI::App& app, CommonOptions& o) {
  app.add_option("model", o.model, "A .qins file or a Hugging Face model folder")->required();
  app.add_option("--temperature", o.sampling.temperature, "0 = greedy")->capture_default_str()->check(CLI::Range(0.0, 5.0));
  app.add_option("--top-p", o.sampling.top_p, "Nucleus sampling mass")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  app.add_option("--top-k", o.sampling.top_k, "0 = off")->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--min-p", o.sampling.min_p, "0 = off")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  app.add_option("--repeat-penalty", o.sampling.repetition_penalty, "1 = off")->capture_default_str()->check(CLI::Range(0.5, 3.0));
  app.add_option("--seed", o.seed, "Random seed (default: from the clock)");
  app.add_option("--max-tokens", o.sampling.max_new_tokens, "Maximum new tokens")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  app.add_option("--context", o.context, "Context length (KV cache positions)")->capture_default_str()->check(CLI::Range(16, 1 << 20));
  app.add_option("--threads", o.threads, "Threads (0 = all cores)")->capture_default_str();
  app.add_option("--weights", o.weights, "Hugging Face folders: f32 | bf16 | inverse | projective | uniform")->capture_default_str();
  app.add_option("--kv", o.kv, "KV cache precision: f32 | bf16 | f16")->capture_default_str()->check(CLI::IsMember({"f32", "bf16", "f16"}));
  app.add_flag("--bf16-activations", o.bf16_activations, "Compute activations in bf16 instead of f32");
  app.add_flag("--stats", o.stats, "Print speed statistics after each reply");
  app.add_option("--device", o.device,
                 "auto (MPS, then CUDA, then CPU) | cpu (fused QINS kernels) | cuda | mps | cpu-generic (the device path on CPU tensors)")
      ->capture_default_str()->check(CLI::IsMember({"auto", "cpu", "cuda", "mps", "cpu-generic"}));
  app.add_option("--gpu-weights", o.gpu_weights,
                 "Device path: expand (1 byte per weight, expanded per layer) | resident (kept expanded, 2 bytes per weight)")
      ->capture_default_str()->check(CLI::IsMember({"expand", "resident"}));
}

// Where the model runs, and why not where it was asked to (stderr).
void print_device(const ModelInfo& info) {
  std::fprintf(stderr, "device: %s, %s\n", info.device.c_str(), info.device_mode.c_str());
  if (!info.device_note.empty()) std::fprintf(stderr, "note: %s\n", info.device_note.c_str());
}

std::unique_ptr<Engine> load(const CommonOptions& o) {
  LoadOptions lo;
  lo.context_length = o.context;
  lo.threads = o.threads;
  lo.weight_format = o.weights;
  lo.kv_dtype = o.kv == "f32" ? KvDtype::F32 : o.kv == "f16" ? KvDtype::F16 : KvDtype::BF16;
  lo.bf16_activations = o.bf16_activations;
  lo.device = o.device;
  lo.gpu_weights = o.gpu_weights;
  return Engine::load(o.model, lo);
}

SamplingParams sampling_of(const CommonOptions& o) {
  SamplingParams p = o.sampling;
  if (o.seed >= 0) {
    p.seed = static_cast<uint64_t>(o.seed);
    p.random_seed = false;
  }
  return p;
}

void print_stats(const GenerationStats& s) {
  std::fprintf(stderr, "[%d prompt tokens (%d run), %d generated, first token %.2f s, %.1f tok/s, stop: %s%s]\n",
               s.prompt_tokens, s.prefilled_tokens, s.generated_tokens, s.time_to_first_token_s, s.tokens_per_s,
               s.stop_reason.c_str(),
               s.dropped_messages ? (", dropped " + std::to_string(s.dropped_messages) + " old messages").c_str() : "");
}

TokenFn stream_to_stdout() {
  return [](std::string_view piece) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  };
}

}  // namespace

Runner add_chat(CLI::App& app) {
  auto o = std::make_shared<CommonOptions>();
  auto system = std::make_shared<std::string>();
  add_common(app, *o);
  app.add_option("--system", *system, "System prompt");
  return [o, system]() {
    auto engine = load(*o);
    const ModelInfo& info = engine->info();
    std::fprintf(stderr, "Loaded %s (%s, %.1f M parameters, %s) in %.2f s. Commands: /reset, /system TEXT, /exit. "
                 "Ctrl-C stops a reply.\n",
                 info.name.c_str(), info.format.c_str(), info.n_params / 1e6, info.codebook.c_str(), info.load_seconds);
    if (!info.chat_template_note.empty()) std::fprintf(stderr, "note: %s\n", info.chat_template_note.c_str());
    print_device(info);
    install_sigint();
    auto session = engine->new_session();
    std::vector<ChatMessage> history;
    std::string system_prompt = *system;
    std::string line;
    for (;;) {
      std::fputs("\n> ", stdout);
      std::fflush(stdout);
      g_stop.store(false);
      if (!std::getline(std::cin, line)) break;
      if (line.empty()) continue;
      if (line == "/exit" || line == "/quit") break;
      if (line == "/reset") {
        history.clear();
        session->reset();
        std::puts("(conversation cleared)");
        continue;
      }
      if (line.rfind("/system", 0) == 0) {
        system_prompt = line.size() > 8 ? line.substr(8) : "";
        std::printf("(system prompt %s)\n", system_prompt.empty() ? "cleared" : "set");
        continue;
      }
      std::vector<ChatMessage> messages;
      if (!system_prompt.empty()) messages.push_back({Role::System, system_prompt});
      history.push_back({Role::User, line});
      messages.insert(messages.end(), history.begin(), history.end());
      std::string reply;
      auto out = stream_to_stdout();
      GenerationStats stats;
      try {
        stats = session->generate(messages, sampling_of(*o), [&](std::string_view piece) {
          reply.append(piece);
          return out(piece);
        }, &g_stop);
      } catch (const qins::Error& e) {
        // A refused message (too long) or a stopped reply (non-finite logits): say so, forget the
        // message, and take the next one; the cache may be half-written.
        std::fputs("\n", stdout);
        print_error(e.what());
        history.pop_back();
        session->reset();
        continue;
      }
      std::fputs("\n", stdout);
      if (stats.stop_reason == "cancelled") std::fputs("(stopped)\n", stderr);
      if (stats.dropped_messages > 0)
        std::fprintf(stderr, "(context full: the %d oldest messages were left out of the prompt)\n", stats.dropped_messages);
      history.push_back({Role::Assistant, reply});
      if (o->stats) print_stats(stats);
    }
    return 0;
  };
}

Runner add_generate(CLI::App& app) {
  auto o = std::make_shared<CommonOptions>();
  auto prompt = std::make_shared<std::string>();
  auto system = std::make_shared<std::string>();
  auto raw = std::make_shared<bool>(false);
  auto ids = std::make_shared<bool>(false);
  auto special = std::make_shared<bool>(false);
  add_common(app, *o);
  app.add_option("--prompt", *prompt, "The prompt (a user message unless --raw)")->required();
  app.add_option("--system", *system, "System prompt (chat mode)");
  app.add_flag("--raw", *raw, "Skip the chat template: complete the prompt text as is");
  app.add_flag("--ids", *ids, "Also print the generated token ids on their own line");
  app.add_flag("--special", *special, "--raw only: recognise added-token strings in the prompt");
  return [=]() {
    auto engine = load(*o);
    if (o->device != "auto" || !engine->info().device_note.empty() || o->stats) print_device(engine->info());
    install_sigint();
    auto session = engine->new_session();
    std::vector<int> out_ids;
    GenerationStats stats;
    if (*raw) {
      stats = session->complete(*prompt, sampling_of(*o), stream_to_stdout(), &g_stop, *special, &out_ids);
    } else {
      std::vector<ChatMessage> messages;
      if (!system->empty()) messages.push_back({Role::System, *system});
      messages.push_back({Role::User, *prompt});
      stats = session->generate(messages, sampling_of(*o), stream_to_stdout(), &g_stop, &out_ids);
    }
    std::fputs("\n", stdout);
    if (*ids) {
      for (size_t i = 0; i < out_ids.size(); ++i) std::printf("%s%d", i ? " " : "", out_ids[i]);
      std::fputs("\n", stdout);
    }
    if (o->stats) print_stats(stats);
    return 0;
  };
}

}  // namespace qins::cli
