// qins synth / qins bench.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>

#include "code_options.h"
#include "commands.h"
#include "qins/tools/bench.h"
#include "qins/tools/bench_first_reply.h"
#include "qins/runtime/engine.h"
#include "qins/tools/synth.h"
#include "qins/util/files.h"

namespace qins::cli {

Runner add_synth(CLI::App& app) {
  struct Opts {
    std::string out, like = "phi-3.5-mini", dist = "gaussian", codebook = "projective", table = "lloyd";
    int group = 16;
    bool absmax_scales = false;
    double pole = 300.0, std_dev = 0.02;
    uint64_t seed = 1;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("-o,--output", o->out, "Output .qins file (write it outside the repository: it is GBs)")->required();
  app.add_option("--like", o->like, "Shapes: phi-3.5-mini | mid | demo")->capture_default_str();
  app.add_option("--dist", o->dist, "Weight distribution: gaussian | laplace | t5")->capture_default_str();
  app.add_option("--std", o->std_dev, "Weight standard deviation")->capture_default_str();
  app.add_option("--codebook", o->codebook, codebook_help())->capture_default_str();
  add_qins4_options(app, o->group, o->table);
  app.add_flag("--absmax-scales", o->absmax_scales,
               "qins4: group scales from the absmax only, no scale search (much faster to write; for "
               "benchmark files, whose size and speed do not depend on it)");
  CLI::Option* pole_opt = app.add_option("--pole", o->pole, "Projective pole (<= 0: fit per tensor)")->capture_default_str();
  app.add_option("--seed", o->seed)->capture_default_str();
  app.add_option("--threads", o->threads, "0 = all cores")->capture_default_str();
  return [o, pole_opt]() {
    SynthOptions so;
    so.like = o->like;
    so.dist = synth_dist_from_name(o->dist);
    so.weight_std = o->std_dev;
    so.seed = o->seed;
    so.quant4.refine_scales = !o->absmax_scales;
    so.qins4 = apply_code_choice(o->codebook, o->pole, pole_opt->count() > 0, o->group, o->table, so.quant, so.quant4);
    so.quant.threads = o->threads;
    int last = -1;
    const auto rep = write_synthetic_model(o->out, so, [&](double f, const std::string& name) {
      const int pct = static_cast<int>(f * 100);
      if (pct != last) {
        std::fprintf(stderr, "\r%3d%% %-48s", pct, name.c_str());
        last = pct;
      }
      return true;
    });
    std::fprintf(stderr, "\r%-60s\r", "");
    std::printf("wrote %s\n  %s\n  %.3f G parameters, file %.2f GB (codes + scales %.2f GB)\n"
                "  %.1f s: random numbers %.1f s, quantize %.1f s, compress + write %.1f s\n",
                o->out.c_str(), rep.config_summary.c_str(), rep.params / 1e9, rep.file_bytes / 1e9,
                rep.code_bytes / 1e9, rep.seconds, rep.generate_seconds, rep.quantize_seconds, rep.write_seconds);
    return 0;
  };
}

Runner add_bench(CLI::App& app) {
  struct Opts {
    std::string model, baseline = "all", json_path, concurrent;
    BenchOptions b;
    bool json = false;
    int first_reply = 0;
    bool cold = false;
    int64_t first_reply_child = -1;  // the parent's launch time (hidden: the child mode)
  };
  auto o = std::make_shared<Opts>();
  app.add_option("model", o->model, "A .qins file or a Hugging Face model folder")->required();
  app.add_option("--prompt-tokens", o->b.prompt_tokens)->capture_default_str()->check(CLI::Range(1, 1 << 20));
  app.add_option("--gen-tokens", o->b.gen_tokens)->capture_default_str()->check(CLI::Range(1, 1 << 20));
  app.add_option("--threads", o->b.threads, "0 = all cores")->capture_default_str();
  app.add_option("--context", o->b.context, "KV cache positions")->capture_default_str()->check(CLI::Range(16, 1 << 20));
  app.add_option("--depth", o->b.depth, "Also decode with this many positions in the cache (0 = skip)")
      ->capture_default_str()->check(CLI::Range(0, 1 << 20));
  app.add_option("--baseline", o->baseline, "fp32 | bf16 | naive | all | none (comma-separated list allowed); fp32-4k / bf16-4k: the dense weights left on torch's default pages instead of huge pages")
      ->capture_default_str();
  app.add_option("--bandwidth-gib", o->b.bandwidth_gib, "Buffer for the plain-read bandwidth")->capture_default_str();
  app.add_option("--paired", o->b.paired_rounds,
                 "Also keep QINS and the bf16 baseline loaded together and alternate N decode rounds "
                 "(same memory bandwidth for both; needs memory for both)")
      ->capture_default_str()->check(CLI::Range(0, 100));
  app.add_option("--profile-steps", o->b.profile_steps,
                 "Profile mode: load, then only this many decode steps at --depth (for perf record); "
                 "prints the time per step")
      ->capture_default_str()->check(CLI::Range(0, 1 << 20));
  app.add_option("--concurrent", o->concurrent,
                 "Concurrency mode: for each count (comma-separated, e.g. 1,2,4,8) decode that many greedy "
                 "streams together through the batch scheduler; aggregate and per-stream tok/s side by side "
                 "(uses --prompt-tokens, --gen-tokens, --threads, --context)");
  app.add_option("--first-reply", o->first_reply,
                 "First-reply mode: start this many fresh processes of qins, each loading the model and "
                 "replying at once; launch to first token, the first reply's prefill and decode tok/s next to "
                 "the steady state (uses --prompt-tokens, --gen-tokens, --threads, --context)")
      ->check(CLI::Range(1, 100));
  app.add_flag("--cold", o->cold, "--first-reply: drop the model file from the page cache before each launch");
  app.add_option("--first-reply-child", o->first_reply_child, "(internal: one --first-reply process)")->group("");
  app.add_flag("--json", o->json, "Print JSON instead of the table");
  app.add_option("--json-out", o->json_path, "Also write the JSON to this file");
  return [o]() {
    auto log = [](const std::string& s) { std::fprintf(stderr, "[bench] %s\n", s.c_str()); };
    if (o->cold && o->first_reply == 0) throw Error("--cold needs --first-reply N");
    if (o->first_reply > 0 || o->first_reply_child >= 0) {
      FirstReplyOptions fo;
      fo.runs = o->first_reply;
      fo.cold = o->cold;
      fo.prompt_tokens = o->b.prompt_tokens;
      fo.gen_tokens = o->b.gen_tokens;
      fo.threads = o->b.threads;
      fo.context = o->b.context;
      if (o->first_reply_child >= 0) {
        if (o->json_path.empty()) throw Error("--first-reply-child needs --json-out");
        run_first_reply_child(o->model, fo, o->first_reply_child, o->json_path);
        return 0;
      }
      const auto r = run_first_reply_bench(self_executable(), o->model, fo, log);
      const std::string js = first_reply_json(r);
      if (!o->json_path.empty()) write_file_atomic(o->json_path, js);
      std::cout << (o->json ? js : first_reply_text(r));
      return 0;
    }
    if (o->b.profile_steps > 0) {
      const double s = run_decode_profile(o->model, o->b, log);
      std::printf("decode step at depth %d: %.2f ms (%.2f tok/s) over %d steps\n", o->b.depth, s * 1e3, 1.0 / s,
                  o->b.profile_steps);
      return 0;
    }
    if (!o->concurrent.empty()) {
      std::vector<int> counts;
      for (size_t p = 0; p <= o->concurrent.size();) {
        const size_t c = std::min(o->concurrent.find(',', p), o->concurrent.size());
        const std::string v = o->concurrent.substr(p, c - p);
        size_t used = 0;
        int n = 0;
        try {
          n = std::stoi(v, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (v.empty() || used != v.size() || n < 1 || n > 64)
          throw Error("--concurrent: '" + v + "' is not a stream count in [1, 64] (expected e.g. 1,2,4,8)");
        counts.push_back(n);
        p = c + 1;
      }
      const auto r = run_concurrent_bench(o->model, o->b, counts, log);
      const std::string js = concurrent_bench_json(r);
      if (!o->json_path.empty()) write_file_atomic(o->json_path, js);
      std::cout << (o->json ? js : concurrent_bench_text(r));
      return 0;
    }
    std::string list = o->baseline == "all" ? "naive,bf16,fp32" : o->baseline == "none" ? "" : o->baseline;
    for (size_t p = 0; p < list.size();) {
      const size_t c = std::min(list.find(',', p), list.size());
      const std::string v = list.substr(p, c - p);
      if (v != "fp32" && v != "bf16" && v != "naive" && v != "fp32-4k" && v != "bf16-4k")
        throw Error("--baseline: unknown '" + v + "' (expected fp32, bf16, naive, fp32-4k, bf16-4k, all or none)");
      o->b.baselines.push_back(v);
      p = c + 1;
    }
    const auto r = run_bench(o->model, o->b, log);
    const std::string js = bench_json(r);
    if (!o->json_path.empty()) {
      std::ofstream out(o->json_path, std::ios::trunc);
      out << js;
      if (!out.flush()) throw Error(o->json_path + ": write failed");
    }
    std::cout << (o->json ? js : bench_text(r));
    return 0;
  };
}

}  // namespace qins::cli
