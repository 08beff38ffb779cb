// The trainer behind `qins train`. Where time goes: almost all of it in forward()/backward()
// (the lm_head matmul and the MLP for small models); tokenizing the corpus takes a few seconds
// up front, SentencePiece training on the sampled tokenizer text well under a minute.
#include "qins/core/blas_threads.h"
#include "qins/graph/phi3_layout.h"
#include "qins/tools/chat_corpus.h"
#include "qins/tools/nll.h"
#include "qins/util/files.h"
#include "qins/util/timing.h"
#include "qins/tools/trainer.h"



#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include "qins/runtime/engine.h"
#include "qins/io/safetensors.h"

namespace fs = std::filesystem;

namespace qins::train {
namespace {


void write_atomic(const fs::path& p, const std::string& bytes) { write_file_atomic(p.string(), bytes); }

// Platform-independent Fisher-Yates (std::shuffle's algorithm differs between standard libraries).
void shuffle_indices(std::vector<int64_t>& v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(rng() % i);
    std::swap(v[i - 1], v[j]);
  }
}

// A seeded sample of the tokenizer text's lines, about `bytes` long, written to `out`.
// SentencePiece on the whole 29 MB text takes many minutes on this machine; a few MB of
// randomly chosen lines give the same merges to within noise for a 4k vocabulary.
void sample_lines(const fs::path& in_path, const fs::path& out, int64_t bytes, uint64_t seed) {
  const std::string text = read_file(in_path.string());
  std::vector<std::pair<size_t, size_t>> lines;  // [begin, length)
  for (size_t b = 0; b < text.size();) {
    size_t e = text.find('\n', b);
    if (e == std::string::npos) e = text.size();
    if (e > b) lines.emplace_back(b, e - b);
    b = e + 1;
  }
  if (lines.empty()) throw Error(in_path.string() + ": tokenizer text is empty");
  std::vector<int64_t> order(lines.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  std::mt19937_64 rng(seed ^ 0x70C3A11E5ULL);
  shuffle_indices(order, rng);
  std::string sample;
  for (int64_t i : order) {
    if (static_cast<int64_t>(sample.size()) >= bytes) break;
    sample.append(text, lines[static_cast<size_t>(i)].first, lines[static_cast<size_t>(i)].second);
    sample.push_back('\n');
  }
  write_atomic(out, sample);
}

// Packs examples into rows of seq+1 tokens: whole conversations back to back, the tail padded
// with <|endoftext|> (never a target). A conversation longer than a row is cut.
class RowPacker {
 public:
  RowPacker(const std::vector<Example>& ex, int seq, int pad_id) : ex_(ex), width_(seq + 1), pad_(pad_id) {}

  // Fills one row from examples order[pos...]; advances pos. Returns false when none are left.
  bool fill(const std::vector<int64_t>& order, size_t& pos, int64_t* ids, float* target) const {
    if (pos >= order.size()) return false;
    int64_t n = 0;
    while (pos < order.size()) {
      const Example& e = ex_[static_cast<size_t>(order[pos])];
      const int64_t len = static_cast<int64_t>(e.ids.size());
      if (n > 0 && n + len > width_) break;  // starts the next row
      const int64_t take = std::min<int64_t>(len, width_ - n);
      for (int64_t i = 0; i < take; ++i) {
        ids[n + i] = e.ids[static_cast<size_t>(i)];
        target[n + i] = e.target[static_cast<size_t>(i)] ? 1.0f : 0.0f;
      }
      target[n] = 0.0f;  // the first token of a conversation is never predicted across the seam
      n += take;
      ++pos;
    }
    for (; n < width_; ++n) {
      ids[n] = pad_;
      target[n] = 0.0f;
    }
    return true;
  }
  int64_t width() const { return width_; }

 private:
  const std::vector<Example>& ex_;
  int64_t width_;
  int pad_;
};

// The training stream: epoch e visits the examples in a seeded shuffle; (epoch, pos) is the
// whole data state, so a checkpoint resumes on the same rows.
struct DataStream {
  const std::vector<Example>* ex = nullptr;
  uint64_t seed = 0;
  int64_t epoch = 0;
  size_t pos = 0;
  std::vector<int64_t> order;

  void set_epoch(int64_t e) {
    epoch = e;
    order.resize(ex->size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(e) + 1);
    shuffle_indices(order, rng);
  }
  // ids [B, seq+1] int64, target [B, seq+1] f32.
  void next_batch(const RowPacker& packer, int batch, torch::Tensor& ids, torch::Tensor& target) {
    ids = torch::empty({batch, packer.width()}, torch::kInt64);
    target = torch::empty({batch, packer.width()}, torch::kFloat32);
    for (int b = 0; b < batch; ++b) {
      int64_t* ip = ids[b].data_ptr<int64_t>();
      float* tp = target[b].data_ptr<float>();
      if (!packer.fill(order, pos, ip, tp)) {
        set_epoch(epoch + 1);
        pos = 0;
        packer.fill(order, pos, ip, tp);
      }
    }
  }
};

double lr_at(const TrainOptions& o, int64_t step, double elapsed_s) {
  if (o.warmup > 0 && step <= o.warmup) return o.lr * static_cast<double>(step) / o.warmup;
  double p = 0.0;
  if (o.steps > 0) {
    const double span = static_cast<double>(std::max<int64_t>(1, o.steps - o.warmup));
    p = static_cast<double>(step - o.warmup) / span;
  } else {
    p = elapsed_s / (o.minutes * 60.0);
  }
  p = std::clamp(p, 0.0, 1.0);
  const double lo = o.lr * o.min_lr_ratio;
  return lo + (o.lr - lo) * 0.5 * (1.0 + std::cos(M_PI * p));
}


// Mean target loss over all rows (no grad), in chunks of `batch` rows.
struct EvalResult {
  double loss = 0.0;
  int64_t tokens = 0;
};
EvalResult evaluate(Phi3Weights& w, const torch::Tensor& ids, const torch::Tensor& target, int64_t rows, int batch) {
  torch::NoGradGuard no_grad;
  rows = std::min<int64_t>(rows, ids.size(0));
  double sum = 0.0, count = 0.0;
  for (int64_t r = 0; r < rows; r += batch) {
    const int64_t n = std::min<int64_t>(batch, rows - r);
    const MaskedNll nll = masked_nll(w, ids.narrow(0, r, n), target.narrow(0, r, n));
    sum += nll.sum.item<double>();
    count += nll.count.item<double>();
  }
  return {count > 0 ? sum / count : std::numeric_limits<double>::quiet_NaN(), static_cast<int64_t>(count)};
}

// Validation rows: file order, packed once.
void pack_all(const std::vector<Example>& ex, const RowPacker& packer, torch::Tensor& ids, torch::Tensor& target) {
  std::vector<int64_t> order(ex.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  std::vector<int64_t> flat_ids;
  std::vector<float> flat_t;
  std::vector<int64_t> row_i(static_cast<size_t>(packer.width()));
  std::vector<float> row_t(static_cast<size_t>(packer.width()));
  size_t pos = 0;
  int64_t rows = 0;
  while (packer.fill(order, pos, row_i.data(), row_t.data())) {
    flat_ids.insert(flat_ids.end(), row_i.begin(), row_i.end());
    flat_t.insert(flat_t.end(), row_t.begin(), row_t.end());
    ++rows;
  }
  ids = torch::from_blob(flat_ids.data(), {rows, packer.width()}, torch::kInt64).clone();
  target = torch::from_blob(flat_t.data(), {rows, packer.width()}, torch::kFloat32).clone();
}


torch::Tensor int_tensor(std::vector<int64_t> v) {
  return torch::from_blob(v.data(), {static_cast<int64_t>(v.size())}, torch::kInt64).clone();
}

struct CheckpointState {
  int64_t step = 0, epoch = 0, pos = 0, tokens = 0;
  double seconds = 0.0;
};

void save_checkpoint(const fs::path& path, Phi3Weights& w, torch::optim::AdamW& opt, const CheckpointState& s) {
  torch::serialize::OutputArchive ar;
  auto params = named_parameters(w);
  for (auto& [name, t] : params) ar.write("param." + name, t.detach());
  torch::serialize::OutputArchive opt_ar;
  opt.save(opt_ar);
  ar.write("optimizer", opt_ar);
  ar.write("state", int_tensor({s.step, s.epoch, s.pos, s.tokens}));
  ar.write("seconds", torch::tensor({s.seconds}, torch::kFloat64));
  // Config text, so a resume into a different shape fails clearly.
  const std::string cfg = phi3_config_to_json(w.config);
  ar.write("config", torch::from_blob(const_cast<char*>(cfg.data()), {static_cast<int64_t>(cfg.size())}, torch::kUInt8).clone());
  std::ostringstream bytes;
  ar.save_to(bytes);
  write_file_atomic(path.string(), bytes.str());
}

CheckpointState load_checkpoint(const fs::path& path, Phi3Weights& w, torch::optim::AdamW& opt) {
  if (!fs::is_regular_file(path)) throw Error(path.string() + ": checkpoint not found");
  torch::serialize::InputArchive ar;
  try {
    ar.load_from(path.string());
  } catch (const std::exception& e) {
    throw Error(path.string() + ": not a readable checkpoint (" + std::string(e.what()).substr(0, 200) + ")");
  }
  torch::Tensor cfg_t;
  if (!ar.try_read("config", cfg_t)) throw Error(path.string() + ": checkpoint has no config");
  const std::string cfg(reinterpret_cast<const char*>(cfg_t.data_ptr<uint8_t>()), static_cast<size_t>(cfg_t.numel()));
  if (cfg != phi3_config_to_json(w.config))
    throw Error(path.string() + ": checkpoint was made for a different model shape or tokenizer; its config is:\n" + cfg);
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : named_parameters(w)) {
    torch::Tensor v;
    if (!ar.try_read("param." + name, v)) throw Error(path.string() + ": checkpoint lacks " + name);
    if (v.sizes() != t.sizes()) throw Error(path.string() + ": " + name + " has the wrong shape");
    t.copy_(v);
  }
  torch::serialize::InputArchive opt_ar;
  if (!ar.try_read("optimizer", opt_ar)) throw Error(path.string() + ": checkpoint lacks optimizer state");
  opt.load(opt_ar);
  torch::Tensor st_t, sec_t;
  if (!ar.try_read("state", st_t) || st_t.numel() != 4 || !ar.try_read("seconds", sec_t))
    throw Error(path.string() + ": checkpoint lacks the step state");
  CheckpointState s;
  auto a = st_t.accessor<int64_t, 1>();
  s.step = a[0];
  s.epoch = a[1];
  s.pos = a[2];
  s.tokens = a[3];
  s.seconds = sec_t.item<double>();
  return s;
}

void set_lr(torch::optim::AdamW& opt, double lr) {
  for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
}

}  // namespace

// ---------------------------------------------------------------------------------------------




torch::Tensor masked_loss(Phi3Weights& w, const torch::Tensor& ids, const torch::Tensor& target) {
  const MaskedNll nll = masked_nll(w, ids, target);
  return nll.sum / nll.count.clamp_min(1.0);
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "--:--";
  const auto t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", (long long)(t / 3600), (long long)(t / 60 % 60), (long long)(t % 60));
  else std::snprintf(buf, sizeof buf, "%02lld:%02lld", (long long)(t / 60), (long long)(t % 60));
  return buf;
}

namespace {

using LogFn = std::function<void(const std::string&)>;

void check_options(const TrainOptions& o) {
  const fs::path corpus(o.corpus_dir);
  for (const char* f : {"train.jsonl", "valid.jsonl"})
    if (!fs::is_regular_file(corpus / f)) throw Error((corpus / f).string() + ": missing (build the corpus with scripts/build_corpus.py)");
  if (o.steps <= 0 && o.minutes <= 0) throw Error("give --steps or --minutes (the length the schedule is laid out for)");
  if (o.seq < 8 || o.batch < 1) throw Error("--seq must be >= 8 and --batch >= 1");
}

// 1. The tokenizer: trained on a sample of the corpus text, or the one beside the checkpoint
// being resumed, or (train_tokenizer false) the one already in out.
tok::Tokenizer prepare_tokenizer(const TrainOptions& o, const LogFn& say) {
  const fs::path corpus(o.corpus_dir), out(o.out_dir);
  if (!o.resume.empty()) {
    fs::path src = fs::path(o.resume).parent_path();
    if (src.empty()) src = ".";
    for (const char* f : {"tokenizer.model", "tokenizer_config.json"}) {
      if (!fs::is_regular_file(src / f)) throw Error((src / f).string() + ": missing beside the checkpoint");
      if (fs::weakly_canonical(src) != fs::weakly_canonical(out)) write_atomic(out / f, read_file((src / f).string()));
    }
  } else if (o.train_tokenizer) {
    const fs::path text = corpus / "tokenizer_text.txt";
    if (!fs::is_regular_file(text)) throw Error(text.string() + ": missing");
    const fs::path sample = out / "tokenizer_sample.txt";
    sample_lines(text, sample, o.tokenizer_sample_bytes, o.seed);
    say("training tokenizer (" + std::to_string(o.vocab) + " pieces) on a " +
        std::to_string(fs::file_size(sample) / 1000) + " kB sample of " + text.string());
    tok::train_phi3_style_tokenizer(sample.string(), o.vocab, out.string());
    fs::remove(sample);
  }
  if (fs::is_regular_file(corpus / "WORDNET_LICENSE.txt"))
    write_atomic(out / "WORDNET_LICENSE.txt", read_file((corpus / "WORDNET_LICENSE.txt").string()));
  return tok::Tokenizer::from_files((out / "tokenizer.model").string(), (out / "tokenizer_config.json").string());
}

// 2. The corpus: training conversations, and the validation split packed once into rows.
struct TrainData {
  std::vector<Example> train, valid;
  torch::Tensor val_ids, val_target;  // [R, seq+1]
};

TrainData load_train_data(const TrainOptions& o, const tok::Tokenizer& tok) {
  const fs::path corpus(o.corpus_dir);
  TrainData d;
  d.train = load_examples((corpus / "train.jsonl").string(), tok);
  d.valid = load_examples((corpus / "valid.jsonl").string(), tok);
  RowPacker vpacker(d.valid, o.seq, tok.token_id("<|endoftext|>"));
  pack_all(d.valid, vpacker, d.val_ids, d.val_target);
  return d;
}

std::string corpus_summary(const TrainData& d, double t_tok, double t_data) {
  int64_t ntok = 0, ntgt = 0;
  for (const auto& e : d.train) {
    ntok += static_cast<int64_t>(e.ids.size());
    for (auto f : e.target) ntgt += f;
  }
  return "corpus: " + std::to_string(d.train.size()) + " train conversations (" + std::to_string(ntok) + " tokens, " +
         std::to_string(ntgt) + " assistant targets), " + std::to_string(d.valid.size()) + " valid (" +
         std::to_string(d.val_ids.size(0)) + " rows); tokenizer " + std::to_string(static_cast<int>(t_tok)) +
         " s, tokenizing " + std::to_string(static_cast<int>(t_data)) + " s";
}

// 3. AdamW with weight decay on projections only; norms and embeddings are left alone.
std::unique_ptr<torch::optim::AdamW> make_optimizer(Phi3Weights& w, const TrainOptions& o,
                                                    std::vector<torch::Tensor>& all_params) {
  std::vector<torch::Tensor> decay, no_decay;
  const auto params = named_parameters(w);
  const std::vector<TensorSpec> specs = phi3_tensors(w.config);
  for (size_t i = 0; i < params.size(); ++i) {
    const torch::Tensor& t = params[i].second;
    const bool is_proj = specs[i].kind == TensorKind::Projection || specs[i].kind == TensorKind::LmHead;
    (is_proj ? decay : no_decay).push_back(t);
    all_params.push_back(t);
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(o.lr).betas({0.9, 0.95}).eps(1e-8).weight_decay(o.weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(o.lr).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.0)));
  return std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(o.lr));
}

std::string model_summary(const Phi3Config& cfg, int64_t n_params, const TrainOptions& o) {
  char line[512];
  std::snprintf(line, sizeof line, "model: %lld parameters (hidden %d, %d layers, %d heads / %d kv, mlp %d, vocab %d); %d x %d tokens per step",
                (long long)n_params, cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads,
                cfg.num_key_value_heads, cfg.intermediate_size, cfg.vocab_size, o.batch, o.seq);
  return line;
}

// 4. train_log.csv: new, or (resuming) with the rows written after the checkpoint dropped: the
// resumed run writes them again.
std::ofstream open_train_log(const fs::path& log_path, bool resume, int64_t step) {
  std::ofstream log;
  if (!resume || !fs::exists(log_path)) {
    log.open(log_path, std::ios::trunc);
    log << "step,lr,train_loss,val_loss,tokens,seconds\n";
  } else {
    std::istringstream rows(read_file(log_path.string()));
    std::string kept, row;
    while (std::getline(rows, row)) {
      const bool header = kept.empty();
      if (header || std::strtoll(row.c_str(), nullptr, 10) <= step) kept += row + "\n";
    }
    write_atomic(log_path, kept);
    log.open(log_path, std::ios::app);
  }
  if (!log) throw Error(log_path.string() + ": cannot open for writing");
  return log;
}

// Everything the step loop carries.
struct TrainRun {
  TrainRun(const TrainOptions& o_, const tok::Tokenizer& tok_, TrainData& data_, TrainResult& res_,
           torch::optim::AdamW& opt_, std::vector<torch::Tensor> params)
      : o(o_), tok(tok_), data(data_), res(res_), opt(opt_), all_params(std::move(params)) {}

  const TrainOptions& o;
  const tok::Tokenizer& tok;
  TrainData& data;
  TrainResult& res;
  torch::optim::AdamW& opt;
  std::vector<torch::Tensor> all_params;
  CheckpointState state;
  DataStream stream;
  std::ofstream log;
  Clock::time_point t_loop = Clock::now();
  double seconds_before = 0.0;
  int64_t step_before = 0;
  double interval_sum = 0.0;
  int64_t interval_n = 0;
  double ema = std::numeric_limits<double>::quiet_NaN();

  double elapsed() const { return seconds_before + seconds_since(t_loop); }
  double budget_s() const { return o.minutes > 0 ? o.minutes * 60.0 : std::numeric_limits<double>::infinity(); }
  void checkpoint() {
    state.epoch = stream.epoch;
    state.pos = static_cast<int64_t>(stream.pos);
    state.seconds = elapsed();
    save_checkpoint(fs::path(o.out_dir) / "checkpoint.pt", res.weights, opt, state);
    save_hf_model(res.weights, tok, o.out_dir, o.bf16);
  }
};

// One optimizer step on the next batch; returns its loss.
double train_step(TrainRun& run, const RowPacker& packer, double lr) {
  set_lr(run.opt, lr);
  torch::Tensor ids, target;  // [B, seq+1]
  run.stream.next_batch(packer, run.o.batch, ids, target);
  run.opt.zero_grad();
  auto loss = masked_loss(run.res.weights, ids, target);
  loss.backward();
  torch::nn::utils::clip_grad_norm_(run.all_params, run.o.clip);  // one global norm over every tensor
  run.opt.step();
  return loss.item<double>();
}

TrainProgress progress_at(const TrainRun& run, int64_t step, double lr, double val, bool logged) {
  const TrainOptions& o = run.o;
  TrainProgress p;
  p.step = step;
  p.steps = o.steps;
  p.loss_ema = run.ema;
  p.lr = lr;
  p.val_loss = val;
  p.logged = logged;
  const double run_s = run.elapsed() - run.seconds_before;
  p.tokens_per_s = static_cast<double>((step - run.step_before) * o.batch * o.seq) / std::max(1e-9, run_s);
  p.eta_s = std::numeric_limits<double>::quiet_NaN();
  if (o.steps > 0) {
    p.eta_s = run_s / static_cast<double>(step - run.step_before) * static_cast<double>(o.steps - step);
    p.fraction = static_cast<double>(step) / o.steps;
  }
  if (o.minutes > 0) {
    const double left = run.budget_s() - run.elapsed();
    p.eta_s = std::isnan(p.eta_s) ? left : std::min(p.eta_s, left);
    p.fraction = std::max(p.fraction, run.elapsed() / run.budget_s());
  }
  return p;
}

// The step loop: until the planned steps, --stop-after or the time budget.
void train_loop(TrainRun& run, const TrainCallbacks& cb) {
  const TrainOptions& o = run.o;
  const RowPacker packer(run.data.train, o.seq, run.tok.token_id("<|endoftext|>"));
  while (true) {
    if (o.steps > 0 && run.state.step >= o.steps) break;
    if (o.stop_after > 0 && run.state.step >= o.stop_after) break;
    if (run.elapsed() >= run.budget_s()) break;
    const int64_t step = run.state.step + 1;
    const double lr = lr_at(o, step, run.elapsed());
    const double l = train_step(run, packer, lr);
    if (!std::isfinite(l)) throw Error("training diverged at step " + std::to_string(step) + " (loss " + std::to_string(l) + "); lower --lr");
    run.state.step = step;
    run.state.tokens += static_cast<int64_t>(o.batch) * o.seq;
    run.res.history.push_back({step, lr, l, run.state.tokens});
    run.interval_sum += l;
    ++run.interval_n;
    run.ema = std::isnan(run.ema) ? l : 0.95 * run.ema + 0.05 * l;

    const bool do_eval = o.eval_every > 0 && step % o.eval_every == 0;
    double val = std::numeric_limits<double>::quiet_NaN();
    if (do_eval) {
      val = evaluate(run.res.weights, run.data.val_ids, run.data.val_target, o.eval_rows, o.batch).loss;
      if (std::isnan(run.res.first_val_loss)) run.res.first_val_loss = val;
    }
    const bool logged = step % o.log_every == 0 || do_eval;
    if (logged) {
      char line[256];
      std::snprintf(line, sizeof line, "%lld,%.6g,%.5f,%s,%lld,%.1f\n", (long long)step, lr,
                    run.interval_sum / run.interval_n, do_eval ? std::to_string(val).c_str() : "",
                    (long long)run.state.tokens, run.elapsed());
      run.log << line << std::flush;
      run.res.final_train_loss = run.interval_sum / run.interval_n;
      run.interval_sum = 0.0;
      run.interval_n = 0;
    }
    if (cb.progress) cb.progress(progress_at(run, step, lr, val, logged));
    if (o.checkpoint_every > 0 && step % o.checkpoint_every == 0) run.checkpoint();
  }
}

// 5. Final: checkpoint, the whole validation split, the Hugging Face folder, the last log row.
void finish_training(TrainRun& run, const LogFn& say) {
  const TrainOptions& o = run.o;
  TrainResult& res = run.res;
  run.checkpoint();
  const torch::Tensor& val_ids = run.data.val_ids;
  const int64_t fin_rows = o.final_eval_rows > 0 ? std::min<int64_t>(o.final_eval_rows, val_ids.size(0)) : val_ids.size(0);
  const auto fin = evaluate(res.weights, val_ids, run.data.val_target, fin_rows, o.batch);
  res.final_val_loss = fin.loss;
  res.val_target_tokens = fin.tokens;
  res.val_rows = fin_rows;
  res.steps_done = run.state.step;
  res.tokens_seen = run.state.tokens;
  res.seconds = run.elapsed();
  if (run.interval_n > 0) res.final_train_loss = run.interval_sum / run.interval_n;
  char line[512];
  std::snprintf(line, sizeof line, "%lld,%.6g,%s,%.5f,%lld,%.1f\n", (long long)run.state.step,
                lr_at(o, std::max<int64_t>(1, run.state.step), run.elapsed()),
                run.interval_n > 0 ? std::to_string(run.interval_sum / run.interval_n).c_str() : "", fin.loss,
                (long long)run.state.tokens, res.seconds);
  run.log << line << std::flush;
  std::snprintf(line, sizeof line,
                "done: %lld steps, %lld tokens in %s; validation loss %.4f (perplexity %.2f) over %lld assistant tokens in %lld of %lld rows",
                (long long)run.state.step, (long long)run.state.tokens, format_duration(res.seconds).c_str(), fin.loss,
                std::exp(fin.loss), (long long)fin.tokens, (long long)fin_rows, (long long)val_ids.size(0));
  say(line);
}

}  // namespace

TrainResult run_training(const TrainOptions& o, const TrainCallbacks& cb) {
  at::set_num_threads(std::max(1, o.threads));
  core::set_blas_threads(at::get_num_threads());  // dense training: BLAS does the GEMMs on every thread
  const auto t_start = Clock::now();
  check_options(o);
  fs::create_directories(o.out_dir);
  const LogFn say = [&](const std::string& s) {
    if (cb.log) cb.log(s);
  };

  const tok::Tokenizer tok = prepare_tokenizer(o, say);
  const double t_tok = seconds_since(t_start);
  TrainData data = load_train_data(o, tok);
  say(corpus_summary(data, t_tok, seconds_since(t_start) - t_tok));

  const Phi3Config cfg = make_config(o, tok);
  TrainResult res;
  res.weights = init_weights(cfg, o.seed);
  res.n_params = res.weights.n_params();
  res.first_val_loss = std::numeric_limits<double>::quiet_NaN();
  res.final_train_loss = std::numeric_limits<double>::quiet_NaN();  // stays NaN when no step runs
  std::vector<torch::Tensor> all_params;
  auto opt = make_optimizer(res.weights, o, all_params);
  TrainRun run(o, tok, data, res, *opt, std::move(all_params));
  run.stream.ex = &data.train;
  run.stream.seed = o.seed;
  if (!o.resume.empty()) {
    run.state = load_checkpoint(o.resume, res.weights, *opt);
    say("resumed from " + o.resume + " at step " + std::to_string(run.state.step));
  }
  run.stream.set_epoch(run.state.epoch);
  run.stream.pos = static_cast<size_t>(run.state.pos);
  say(model_summary(cfg, res.n_params, o));

  run.log = open_train_log(fs::path(o.out_dir) / "train_log.csv", !o.resume.empty(), run.state.step);
  run.seconds_before = run.state.seconds;
  run.step_before = run.state.step;
  run.t_loop = Clock::now();
  train_loop(run, cb);
  finish_training(run, say);
  return res;
}

}  // namespace qins::train
