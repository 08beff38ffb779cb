// qins: the command line twin of the app.
#include <iostream>
#include <map>

#include "commands.h"
#include "qins/runtime/engine.h"

namespace qins::cli {
void print_error(const std::string& message) { std::cerr << "qins: error: " << message << "\n"; }
}  // namespace qins::cli

int main(int argc, char** argv) {
  CLI::App app{"qins: run, convert, inspect and measure Phi-3 models stored as QINS codes"};
  app.require_subcommand(1);
  std::map<CLI::App*, qins::cli::Runner> runners;
  auto add = [&](const char* name, const char* help, qins::cli::Runner (*fn)(CLI::App&)) {
    CLI::App* sub = app.add_subcommand(name, help);
    runners[sub] = fn(*sub);
  };
  add("chat", "Interactive multi-turn chat with streaming replies", qins::cli::add_chat);
  add("generate", "Generate a reply (or a raw completion) for one prompt", qins::cli::add_generate);
  add("tokenize", "Print the token ids the engine would feed the model", qins::cli::add_tokenize);
  add("inspect", "Show a model's config, tensors, parameter count and memory estimate", qins::cli::add_inspect);
  add("convert", "Convert a Hugging Face Phi-3 folder into one compressed .qins file", qins::cli::add_convert);
  add("pull", "Download a model from the Hugging Face Hub (resumable, verified) and convert it to .qins", qins::cli::add_pull);
  add("synth", "Write a .qins with Phi-3 shapes and random weights (phi-3.5-mini | mid | demo)", qins::cli::add_synth);
  add("bench", "Measure load time, memory, prefill and decode speed against baselines", qins::cli::add_bench);
  add("eval", "Accuracy report: weight SQNR, perplexity, KL and top-1 agreement of each codebook vs fp32", qins::cli::add_eval);
  add("fixture", "Write a tiny random-weight Phi-3 model folder (for tests and demos)", qins::cli::add_fixture);
  add("train", "Train a small Phi-3 chat model from a chat corpus (the demo model)", qins::cli::add_train);
  add("serve", "Serve the model over an OpenAI-compatible HTTP API (batched decoding)", qins::cli::add_serve);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  for (auto& [sub, run] : runners) {
    if (!sub->parsed()) continue;
    try {
      return run();
    } catch (const qins::Error& e) {
      qins::cli::print_error(e.what());
      return 1;
    } catch (const std::exception& e) {
      qins::cli::print_error(e.what());
      return 1;
    }
  }
  return 1;
}
