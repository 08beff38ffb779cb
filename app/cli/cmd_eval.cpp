// qins eval: the accuracy report (per-tensor weight error, perplexity / KL / top-1 agreement
// against the fp32 model) and, with --synthetic, codebook SQNR on synthetic weights.
#include <cstdio>
#include <iostream>
#include <memory>

#include "commands.h"
#include "qins/runtime/engine.h"
#include "qins/tools/eval.h"

namespace qins::cli {

Runner add_eval(CLI::App& app) {
  struct Opts {
    std::string model, text, codebook = "all", reference, synthetic, scheme;
    double pole = 300.0;
    int prune_index = 0, window = 256, batch_tokens = 2048, threads = 0;
    int64_t max_tokens = 4096, rows = 512, cols = 3072;
    uint64_t seed = 1;
    bool json = false, quiet = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("model", o->model, "Hugging Face model folder (fp32 reference + each codebook) or a .qins file");
  app.add_option("--text", o->text,
                 "Evaluation text: plain text, or .jsonl chat lines {\"messages\": [...]} (assistant tokens scored)");
  app.add_option("--codebook", o->codebook, "inverse | projective | uniform | all (Hugging Face models)")
      ->capture_default_str()
      ->check(CLI::IsMember({"inverse", "projective", "uniform", "all", "none"}));
  app.add_option("--scheme", o->scheme,
                 "Extra rows (Hugging Face models), comma-separated: qins4, qins4-g16, qins4-g64, qins4-projective, qins4-uniform, "
                 "qins8-g32, qins8-g64, qins8-g32-fp16, qins8-g64-fp16 (8-bit codes, a scale per group: 8-bit log or fp16), "
                 "simulated llama.cpp q4_0, q4_1, q4_k, q8_0, or 4bit (qins4, qins4-g16, qins4-g64 and the four simulations) "
                 "or 8bit (the four qins8 groupings and q8_0)");
  app.add_option("--pole", o->pole,
                 "Fixed pole C of the projective rows (projective is also evaluated with C fitted per tensor by "
                 "weight MSE; <= 0: only that)")
      ->capture_default_str();
  app.add_option("--prune-index", o->prune_index,
                 "Also evaluate opt-in pruning: codes with magnitude index 0 < j <= N become zero (0 = off)")
      ->capture_default_str()
      ->check(CLI::Range(0, 126));
  app.add_option("--window", o->window, "Tokens per forward window")->capture_default_str()->check(CLI::Range(2, 1 << 20));
  app.add_option("--max-tokens", o->max_tokens, "Evaluate on about this many tokens of the text")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 40));
  app.add_option("--batch-tokens", o->batch_tokens, "Tokens per forward batch (windows are right-padded)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 24));
  app.add_option("--reference", o->reference, "For a .qins model: the Hugging Face folder of its unquantized weights");
  app.add_option("--synthetic", o->synthetic,
                 "No model: codebook SQNR on synthetic weights (gaussian | laplace | t5 | all)")
      ->check(CLI::IsMember({"gaussian", "laplace", "t5", "all"}));
  app.add_option("--rows", o->rows, "--synthetic: rows")->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--cols", o->cols, "--synthetic: columns")->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--seed", o->seed, "--synthetic: generator seed")->capture_default_str();
  app.add_option("--threads", o->threads, "Threads (0 = all cores)")->capture_default_str();
  app.add_flag("--json", o->json, "JSON instead of Markdown");
  app.add_flag("-q,--quiet", o->quiet, "No progress lines on stderr");
  return [o]() {
    if (!o->synthetic.empty()) {
      if (!o->model.empty() || !o->text.empty()) throw Error("--synthetic takes no model and no --text");
      const auto r = evaluate_synthetic(o->synthetic, o->rows, o->cols, o->seed, o->pole, o->threads);
      std::cout << (o->json ? synthetic_json(r) : synthetic_markdown(r));
      return 0;
    }
    if (o->model.empty()) throw Error("eval: give a MODEL (Hugging Face folder or .qins file) or --synthetic DIST");
    if (o->text.empty()) throw Error("eval: --text FILE is required (plain text or .jsonl chat)");
    EvalOptions eo;
    eo.codebooks = o->codebook;
    eo.schemes = o->scheme;
    eo.pole = o->pole;
    eo.prune_index = o->prune_index;
    eo.window = o->window;
    eo.max_tokens = o->max_tokens;
    eo.batch_tokens = o->batch_tokens;
    eo.reference = o->reference;
    eo.threads = o->threads;
    if (!o->quiet) eo.log = [](const std::string& s) { std::cerr << "eval: " << s << "\n"; };
    const EvalReport r = evaluate(o->model, o->text, eo);
    std::cout << (o->json ? eval_report_json(r) : eval_report_markdown(r));
    return 0;
  };
}

}  // namespace qins::cli
