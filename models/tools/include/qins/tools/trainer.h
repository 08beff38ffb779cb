// `qins train`: trains a small Phi-3 chat model from a chat corpus (train.jsonl / valid.jsonl /
// tokenizer_text.txt, scripts/build_corpus.py) with libtorch autograd over the SAME qins::forward
// the engine runs, and writes the Hugging Face layout (config.json, model.safetensors, tokenizer
// files, generation_config.json). AdamW, cosine schedule with warm-up, gradient clipping, loss on
// assistant tokens only, resumable checkpoints. Deterministic given the seed when the schedule is
// laid out in steps (see docs/demo-model.md for what libtorch does and does not guarantee).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "qins/graph/phi3_config.h"
#include "qins/graph/phi3_model.h"
#include "qins/tokenizer/tokenizer.h"

namespace qins::train {

struct TrainOptions {
  std::string corpus_dir;          // train.jsonl, valid.jsonl, tokenizer_text.txt (WORDNET_LICENSE.txt copied if present)
  std::string out_dir;             // the Hugging Face folder written (+ checkpoint.pt, train_log.csv)
  // Model shape.
  int hidden = 256;                // multiple of 64
  int layers = 4;
  int heads = 4;
  int kv_heads = 4;                // < heads: grouped-query attention
  int intermediate = 688;
  int vocab = 4000;                // SentencePiece base vocabulary; the 11 Phi-3 added tokens follow
  // Optimisation.
  int seq = 256;                   // tokens per packed training row
  int batch = 16;                  // rows per step
  double lr = 3e-3;                // peak learning rate
  double min_lr_ratio = 0.1;       // cosine floor, as a fraction of lr
  int warmup = 200;                // linear warm-up steps
  double weight_decay = 0.1;       // AdamW, projections only (not norms / embeddings)
  double clip = 1.0;               // global gradient-norm clip
  int64_t steps = 0;               // planned steps (schedule length); 0: schedule over --minutes
  double minutes = 0;              // wall-clock budget (0 = none); stops when reached
  int64_t stop_after = 0;          // stop at this step without changing the schedule (tests)
  uint64_t seed = 1;
  std::string resume;              // checkpoint.pt to continue from
  int64_t checkpoint_every = 0;    // steps between checkpoints (0: only at the end)
  int64_t eval_every = 0;          // steps between validation passes (0: only at the end)
  int eval_rows = 64;              // rows of the validation split used by periodic passes
  int final_eval_rows = 0;         // rows used by the final pass (0: the whole validation split)
  int64_t log_every = 10;          // steps between train_log.csv rows / progress lines
  bool bf16 = true;                // model.safetensors dtype (bf16 or f32)
  int64_t tokenizer_sample_bytes = 4'000'000;  // SentencePiece input: a seeded sample of lines
  int threads = 2;                 // at::set_num_threads
  bool train_tokenizer = true;     // false: out_dir already holds tokenizer.model / tokenizer_config.json
};

// One conversation as token ids and a per-token flag: true for tokens the loss is taken on
// (assistant content and its closing <|end|>).
struct Example {
  std::vector<int32_t> ids;
  std::vector<uint8_t> target;
};

// Conversation JSONL ({"messages": [{"role", "content"}...]}) -> examples. Bad lines throw qins::Error
// naming the file and line.
std::vector<Example> load_examples(const std::string& jsonl_path, const tok::Tokenizer& tok);
// One conversation -> example (encode_chat, assistant spans marked).
Example make_example(const std::vector<tok::ChatTurn>& turns, const tok::Tokenizer& tok);

// The config the trainer writes for the given options and tokenizer (vocab padded to 64 like Phi-3.5).
Phi3Config make_config(const TrainOptions& o, const tok::Tokenizer& tok);
// Fresh trainable dense weights: N(0, 0.02), residual projections (o, down) / sqrt(2 layers), norms 1.
Phi3Weights init_weights(const Phi3Config& c, uint64_t seed);
// Trainable tensors in a fixed order (checkpoint order), with their Hugging Face names.
std::vector<std::pair<std::string, torch::Tensor>> named_parameters(Phi3Weights& w);
// Writes model.safetensors (bf16 or f32), config.json and generation_config.json into dir.
void save_hf_model(Phi3Weights& w, const tok::Tokenizer& tok, const std::string& dir, bool bf16);

// Mean cross-entropy over target tokens of rows ids [B, T+1] / target [B, T+1] (flags of ids[:,1:]).
torch::Tensor masked_loss(Phi3Weights& w, const torch::Tensor& ids, const torch::Tensor& target);

struct StepRecord {
  int64_t step = 0;        // 1-based step just finished
  double lr = 0.0;
  double loss = 0.0;       // this step's training loss
  int64_t tokens = 0;      // tokens seen so far (rows * seq)
};

struct TrainResult {
  int64_t steps_done = 0;          // total steps (including those before a resume)
  int64_t tokens_seen = 0;
  double seconds = 0.0;            // wall time of training (including before a resume)
  std::vector<StepRecord> history; // steps run by this call
  double first_val_loss = 0.0;     // NaN if none measured in this call
  double final_val_loss = 0.0;     // on the whole validation split
  double final_train_loss = 0.0;   // mean of the last log interval (NaN if no step ran)
  int64_t n_params = 0;
  int64_t val_target_tokens = 0;  // assistant tokens the final validation loss averages over
  int64_t val_rows = 0;            // validation rows of the final pass
  Phi3Weights weights;             // the trained weights (f32, still trainable)
};

// Where a run stands after a step (for a progress display; the trainer draws nothing itself).
struct TrainProgress {
  int64_t step = 0;                // 1-based step just finished
  int64_t steps = 0;               // planned steps (0: the run follows --minutes)
  double fraction = 0.0;           // of the planned steps or minutes, whichever is further
  double loss_ema = 0.0;           // smoothed training loss
  double lr = 0.0;
  double tokens_per_s = 0.0;       // over this call's steps
  double eta_s = 0.0;              // NaN when unknown
  double val_loss = 0.0;           // NaN unless this step ran a validation pass
  bool logged = false;             // this step wrote a train_log.csv row (or ran a validation pass)
};

struct TrainCallbacks {
  std::function<void(const std::string& line)> log;          // news: tokenizer, corpus, model, resume, done
  std::function<void(const TrainProgress& p)> progress;     // after every step
};

// The whole run. Throws qins::Error with a clear message on bad input.
TrainResult run_training(const TrainOptions& options, const TrainCallbacks& callbacks = {});

// "mm:ss" or "h:mm:ss"; "--:--" for NaN or negative.
std::string format_duration(double seconds);

}  // namespace qins::train
