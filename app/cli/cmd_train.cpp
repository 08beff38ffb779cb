// qins train: the demo model's trainer (models/src/trainer.cpp does the work).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "commands.h"
#include "qins/tools/trainer.h"

namespace qins::cli {

namespace {

// The trainer's progress line on stderr: redrawn in place on a terminal, else one line per
// train_log.csv row.
void draw_train_progress(const train::TrainProgress& p, bool tty) {
  if (!tty && !p.logged) return;
  const bool eval = !std::isnan(p.val_loss);
  const int filled = static_cast<int>(std::clamp(p.fraction, 0.0, 1.0) * 24);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(24, '.');
  const std::string of = p.steps > 0 ? "/" + std::to_string(p.steps) : "";
  const std::string val = eval ? " val " + std::to_string(p.val_loss) : "";
  std::fprintf(stderr, "%s[%s] step %lld%s loss %.3f lr %.2e %.0f tok/s ETA %s%s%s%s", tty ? "\r" : "", bar.c_str(),
               (long long)p.step, of.c_str(), p.loss_ema, p.lr, p.tokens_per_s, train::format_duration(p.eta_s).c_str(),
               val.c_str(), tty ? "   " : "", tty && !eval ? "" : "\n");
  std::fflush(stderr);
}

}  // namespace

Runner add_train(CLI::App& app) {
  auto o = std::make_shared<train::TrainOptions>();
  auto dtype = std::make_shared<std::string>("bf16");
  app.add_option("--corpus", o->corpus_dir, "Corpus folder from scripts/build_corpus.py (train.jsonl, valid.jsonl, tokenizer_text.txt)")->required();
  app.add_option("-o,--out", o->out_dir, "Output model folder (Hugging Face layout)")->required();
  app.add_option("--hidden", o->hidden, "Hidden size (multiple of 64)")->capture_default_str();
  app.add_option("--layers", o->layers)->capture_default_str();
  app.add_option("--heads", o->heads)->capture_default_str();
  app.add_option("--kv-heads", o->kv_heads, "Key/value heads (< heads: grouped-query attention)")->capture_default_str();
  app.add_option("--intermediate", o->intermediate, "MLP size")->capture_default_str();
  app.add_option("--vocab", o->vocab, "SentencePiece base vocabulary (the 11 Phi-3 added tokens follow)")->capture_default_str();
  app.add_option("--seq", o->seq, "Tokens per packed training row")->capture_default_str();
  app.add_option("--batch", o->batch, "Rows per step")->capture_default_str();
  app.add_option("--lr", o->lr, "Peak learning rate")->capture_default_str();
  app.add_option("--min-lr-ratio", o->min_lr_ratio, "Cosine floor as a fraction of --lr")->capture_default_str();
  app.add_option("--warmup", o->warmup, "Linear warm-up steps")->capture_default_str();
  app.add_option("--weight-decay", o->weight_decay)->capture_default_str();
  app.add_option("--clip", o->clip, "Gradient-norm clip")->capture_default_str();
  app.add_option("--steps", o->steps, "Planned steps: the cosine schedule's length (deterministic)");
  app.add_option("--minutes", o->minutes, "Wall-clock budget; without --steps the schedule follows time (not reproducible)");
  app.add_option("--stop-after", o->stop_after, "Stop at this step without changing the schedule (resume later)");
  app.add_option("--seed", o->seed)->capture_default_str();
  app.add_option("--resume", o->resume, "checkpoint.pt to continue from (same options)");
  app.add_option("--checkpoint-every", o->checkpoint_every, "Steps between checkpoints (0: at the end only)")->capture_default_str();
  app.add_option("--eval-every", o->eval_every, "Steps between validation passes (0: at the end only)")->capture_default_str();
  app.add_option("--eval-rows", o->eval_rows, "Validation rows used by periodic passes (the final pass uses all)")->capture_default_str();
  app.add_option("--final-eval-rows", o->final_eval_rows, "Validation rows for the final pass (0: all)")->capture_default_str();
  app.add_option("--log-every", o->log_every, "Steps between train_log.csv rows")->capture_default_str();
  app.add_option("--dtype", *dtype, "model.safetensors dtype: bf16 or f32")->check(CLI::IsMember({"bf16", "f32"}))->capture_default_str();
  app.add_option("--tokenizer-sample", o->tokenizer_sample_bytes, "Bytes of tokenizer text sampled for SentencePiece")->capture_default_str();
  app.add_option("--threads", o->threads, "Intra-op threads")->capture_default_str();
  return [=]() {
    o->bf16 = *dtype == "bf16";
    const bool tty = ::isatty(2) != 0;
    bool mid_line = false;  // a redrawn progress line is on screen
    train::TrainCallbacks cb;
    cb.log = [&](const std::string& line) {
      std::fprintf(stderr, "%s%s\n", mid_line ? "\n" : "", line.c_str());
      mid_line = false;
    };
    cb.progress = [&](const train::TrainProgress& p) {
      draw_train_progress(p, tty);
      mid_line = tty && std::isnan(p.val_loss);
    };
    const train::TrainResult r = train::run_training(*o, cb);
    std::printf("steps %lld, tokens %lld, %.0f s, parameters %lld, final train loss %.4f, validation loss %.4f (perplexity %.2f)\n",
                (long long)r.steps_done, (long long)r.tokens_seen, r.seconds, (long long)r.n_params, r.final_train_loss,
                r.final_val_loss, std::exp(r.final_val_loss));
    std::printf("wrote %s\n", o->out_dir.c_str());
    return 0;
  };
}

}  // namespace qins::cli
