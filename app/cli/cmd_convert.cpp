// qins convert: a Hugging Face Phi-3 folder -> one self-contained .qins file.
#include <chrono>
#include <cstdio>
#include <memory>

#include "code_options.h"
#include "commands.h"
#include "progress_bar.h"
#include "qins/io/converter.h"
#include "qins/io/qins_file.h"

namespace qins::cli {

Runner add_convert(CLI::App& app) {
  struct Opts {
    std::string in, out, codebook = "projective", table = "lloyd";
    int group = 16;
    double pole = 300.0;
    int prune_index = 0, threads = 0;
    bool quiet = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("hf_dir", o->in, "Hugging Face model folder (config.json, safetensors, tokenizer files)")->required();
  app.add_option("-o,--output", o->out, "Output .qins file")->required();
  app.add_option("--codebook", o->codebook, codebook_help())
      ->capture_default_str()
      ->check(CLI::IsMember({"inverse", "projective", "uniform", "qins4"}));
  add_qins4_options(app, o->group, o->table);
  CLI::Option* pole_opt = app.add_option("--pole", o->pole, "projective: the pole C of s*j/(C-j); 0 = fit per tensor by weight MSE")
      ->capture_default_str();
  app.add_option("--prune-index", o->prune_index,
                 "Lossy, off by default: codes with magnitude index <= N become zero (see qins eval for the cost)")
      ->capture_default_str()
      ->check(CLI::Range(0, 126));
  app.add_option("--threads", o->threads, "Threads (0 = all cores)")->capture_default_str();
  app.add_flag("-q,--quiet", o->quiet, "No progress bar");
  return [o, pole_opt]() {
    ConvertOptions co;
    co.qins4 = apply_code_choice(o->codebook, o->pole, pole_opt->count() > 0, o->group, o->table, co.quant, co.quant4);
    co.quant.threads = o->threads;
    co.prune_index = o->prune_index;
    ProgressBar bar("converting", !o->quiet);
    const ConvertReport r = convert_to_qins(o->in, o->out, co, [&](double f, const std::string& name) {
      bar.update(f, name);
      return true;
    });
    bar.finish();
    double worst = 1e9, sum = 0;
    int n = 0;
    for (const auto& t : r.tensors)
      if (t.quantized) {
        worst = std::min(worst, t.sqnr_db);
        sum += t.sqnr_db;
        ++n;
      }
    std::printf("wrote %s: %lld parameters, %.1f MB (input %.1f MB, %.2fx smaller), %d tensors quantized with %s "
                "(mean SQNR %.1f dB, worst %.1f dB), %.1f s\n",
                o->out.c_str(), static_cast<long long>(r.params), r.output_bytes / 1e6, r.input_bytes / 1e6,
                static_cast<double>(r.input_bytes) / static_cast<double>(r.output_bytes), n, o->codebook.c_str(),
                n ? sum / n : 0.0, n ? worst : 0.0, r.seconds);
    return 0;
  };
}

}  // namespace qins::cli
