// The trainer behind `qins train`. Where time goes: almost all of it in forward()/backward()
// (the lm_head matmul and the MLP for small models); tokenizing the corpus takes a few seconds
// up front, SentencePiece training on the sampled tokenizer text well under a minute.
#include "qins/util/files.h"
#include "qins/tools/trainer.h"

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <random>
#include <sstream>

#include "qins/runtime/engine.h"
#include "qins/io/safetensors.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace qins::train {
namespace {

using Clock = std::chrono::steady_clock;

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

tok::ChatRole parse_role(const std::string& r, const std::string& where) {
  if (r == "system") return tok::ChatRole::System;
  if (r == "user") return tok::ChatRole::User;
  if (r == "assistant") return tok::ChatRole::Assistant;
  throw Error(where + ": unknown role \"" + r + "\" (expected system, user or assistant)");
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

std::string fmt_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "--:--";
  const auto t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", (long long)(t / 3600), (long long)(t / 60 % 60), (long long)(t % 60));
  else std::snprintf(buf, sizeof buf, "%02lld:%02lld", (long long)(t / 60), (long long)(t % 60));
  return buf;
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
    auto x = ids.narrow(0, r, n);
    auto t = target.narrow(0, r, n);
    auto logits = forward(w, x.narrow(1, 0, x.size(1) - 1), nullptr);  // [n, T, V]
    const int64_t V = logits.size(-1);
    auto ce = torch::nn::functional::cross_entropy(
        logits.reshape({-1, V}), x.narrow(1, 1, x.size(1) - 1).reshape({-1}),
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));  // [n*T]
    auto m = t.narrow(1, 1, t.size(1) - 1).reshape({-1});
    sum += (ce * m).sum().item<double>();
    count += m.sum().item<double>();
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

std::vector<uint8_t> tensor_bytes(const torch::Tensor& t, bool bf16) {
  auto f = t.detach().to(torch::kFloat32).contiguous();
  const float* p = f.data_ptr<float>();
  const int64_t n = f.numel();
  std::vector<uint8_t> out(static_cast<size_t>(n) * (bf16 ? 2 : 4));
  if (!bf16) {
    std::memcpy(out.data(), p, out.size());
    return out;
  }
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = st::float_to_bf16(p[i]);
    std::memcpy(out.data() + i * 2, &h, 2);
  }
  return out;
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

Example make_example(const std::vector<tok::ChatTurn>& turns, const tok::Tokenizer& tok) {
  const std::vector<int> ids = tok.encode_chat(turns, false);
  const int assistant = tok.token_id("<|assistant|>"), end = tok.token_id("<|end|>");
  if (assistant < 0 || end < 0) throw Error("tokenizer has no <|assistant|> / <|end|> added tokens");
  Example e;
  e.ids.assign(ids.begin(), ids.end());
  e.target.assign(ids.size(), 0);
  // Message contents are encoded as plain text (no added tokens), so every <|assistant|> and
  // <|end|> here was written by the template: mark from after <|assistant|> through its <|end|>.
  bool inside = false;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (inside) {
      e.target[i] = 1;
      if (ids[i] == end) inside = false;
    } else if (ids[i] == assistant) {
      inside = true;
    }
  }
  return e;
}

std::vector<Example> load_examples(const std::string& path, const tok::Tokenizer& tok) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open for reading");
  std::vector<Example> out;
  std::string line;
  int64_t line_no = 0;
  std::vector<tok::ChatTurn> turns;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      throw Error(where + ": not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object() || !j.contains("messages") || !j["messages"].is_array() || j["messages"].empty())
      throw Error(where + ": expected {\"messages\": [...]} with at least one message");
    turns.clear();
    bool has_assistant = false;
    for (const auto& m : j["messages"]) {
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
          !m["content"].is_string())
        throw Error(where + ": every message needs string \"role\" and \"content\"");
      tok::ChatTurn t;
      t.role = parse_role(m["role"].get<std::string>(), where);
      t.content = m["content"].get<std::string>();
      has_assistant |= t.role == tok::ChatRole::Assistant;
      turns.push_back(std::move(t));
    }
    if (!has_assistant) throw Error(where + ": conversation has no assistant message to learn from");
    out.push_back(make_example(turns, tok));
  }
  if (in.bad()) throw Error(path + ": read failed");
  if (out.empty()) throw Error(path + ": no conversations");
  return out;
}

Phi3Config make_config(const TrainOptions& o, const tok::Tokenizer& tok) {
  if (o.hidden <= 0 || o.hidden % 64 != 0) throw Error("--hidden must be a positive multiple of 64");
  if (o.heads <= 0 || o.hidden % o.heads != 0) throw Error("--heads must divide --hidden");
  if (o.kv_heads <= 0 || o.heads % o.kv_heads != 0) throw Error("--kv-heads must divide --heads");
  if ((o.hidden / o.heads) % 2 != 0) throw Error("head size (hidden / heads) must be even for RoPE");
  if (o.layers <= 0 || o.intermediate <= 0) throw Error("--layers and --intermediate must be positive");
  const int eot = tok.token_id("<|endoftext|>");
  // Phi-3.5 pads its 32011 ids to 32064 rows; pad to a multiple of 64 the same way.
  const int vocab = (tok.vocab_size() + 63) / 64 * 64;
  json j = {
      {"architectures", {"Phi3ForCausalLM"}},
      {"model_type", "phi3"},
      {"hidden_size", o.hidden},
      {"intermediate_size", o.intermediate},
      {"num_hidden_layers", o.layers},
      {"num_attention_heads", o.heads},
      {"num_key_value_heads", o.kv_heads},
      {"vocab_size", vocab},
      {"rms_norm_eps", 1e-5},
      {"rope_theta", 10000.0},
      {"max_position_embeddings", 4096},
      {"original_max_position_embeddings", 4096},
      {"rope_scaling", nullptr},
      {"sliding_window", nullptr},
      {"tie_word_embeddings", false},
      {"bos_token_id", 1},
      {"eos_token_id", eot},
      {"pad_token_id", eot},
      {"torch_dtype", o.bf16 ? "bfloat16" : "float32"},
  };
  return parse_phi3_config(j.dump(2), "trainer config");
}

Phi3Weights init_weights(const Phi3Config& c, uint64_t seed) {
  torch::manual_seed(seed);
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const double std_dev = 0.02, resid = 0.02 / std::sqrt(2.0 * c.num_hidden_layers);
  auto normal = [](std::vector<int64_t> shape, double s) {
    return (torch::randn(shape, torch::kFloat32) * s).requires_grad_(true);
  };
  auto ones = [](int64_t n) { return torch::ones({n}, torch::kFloat32).requires_grad_(true); };
  Phi3Weights w;
  w.config = c;
  w.embed = std::make_unique<DenseEmbedding>(normal({V, H}, std_dev));
  for (int il = 0; il < c.num_hidden_layers; ++il) {
    Phi3Layer L;
    L.input_norm = ones(H);
    L.qkv = std::make_unique<DenseLinear>(normal({c.qkv_out(), H}, std_dev));
    L.o = std::make_unique<DenseLinear>(normal({H, int64_t(c.num_attention_heads) * c.head_dim}, resid));
    L.post_norm = ones(H);
    L.gate_up = std::make_unique<DenseLinear>(normal({2 * I, H}, std_dev));
    L.down = std::make_unique<DenseLinear>(normal({H, I}, resid));
    w.layers.push_back(std::move(L));
  }
  w.final_norm = ones(H);
  w.lm_head = std::make_unique<DenseLinear>(normal({V, H}, std_dev));
  return w;
}

std::vector<std::pair<std::string, torch::Tensor>> named_parameters(Phi3Weights& w) {
  auto dense = [](LinearOp* op) -> torch::Tensor& {
    auto* d = dynamic_cast<DenseLinear*>(op);
    if (!d) throw Error("training needs dense weights (load with WeightMode::F32)");
    return d->weight();
  };
  auto* emb = dynamic_cast<DenseEmbedding*>(w.embed.get());
  if (!emb) throw Error("training needs a dense embedding");
  std::vector<std::pair<std::string, torch::Tensor>> out;
  out.emplace_back("model.embed_tokens.weight", emb->table());
  for (size_t il = 0; il < w.layers.size(); ++il) {
    auto& L = w.layers[il];
    const std::string p = "model.layers." + std::to_string(il) + ".";
    out.emplace_back(p + "input_layernorm.weight", L.input_norm);
    out.emplace_back(p + "self_attn.qkv_proj.weight", dense(L.qkv.get()));
    out.emplace_back(p + "self_attn.o_proj.weight", dense(L.o.get()));
    out.emplace_back(p + "post_attention_layernorm.weight", L.post_norm);
    out.emplace_back(p + "mlp.gate_up_proj.weight", dense(L.gate_up.get()));
    out.emplace_back(p + "mlp.down_proj.weight", dense(L.down.get()));
  }
  out.emplace_back("model.norm.weight", w.final_norm);
  if (!w.config.tie_word_embeddings) out.emplace_back("lm_head.weight", dense(w.lm_head.get()));
  return out;
}

void save_hf_model(Phi3Weights& w, const tok::Tokenizer& tok, const std::string& dir_str, bool bf16) {
  const fs::path dir(dir_str);
  fs::create_directories(dir);
  Phi3Config c = w.config;
  c.torch_dtype = bf16 ? "bfloat16" : "float32";
  write_atomic(dir / "config.json", phi3_config_to_json(c));
  const int eot = tok.token_id("<|endoftext|>"), assistant = tok.token_id("<|assistant|>"), end = tok.token_id("<|end|>");
  const json gen = {{"_from_model_config", true}, {"bos_token_id", 1}, {"eos_token_id", {eot, assistant, end}},
                    {"pad_token_id", eot}};
  write_atomic(dir / "generation_config.json", gen.dump(2) + "\n");
  std::vector<st::TensorData> tensors;
  for (auto& [name, t] : named_parameters(w)) {
    st::TensorData d;
    d.name = name;
    d.dtype = bf16 ? st::DType::BF16 : st::DType::F32;
    d.shape = t.sizes().vec();
    d.bytes = tensor_bytes(t, bf16);
    tensors.push_back(std::move(d));
  }
  st::write_file((dir / "model.safetensors").string(), tensors, {{"format", "pt"}});
}

torch::Tensor masked_loss(Phi3Weights& w, const torch::Tensor& ids, const torch::Tensor& target) {
  const int64_t T = ids.size(1) - 1;
  auto logits = forward(w, ids.narrow(1, 0, T), nullptr);  // [B, T, V] f32
  const int64_t V = logits.size(-1);
  auto ce = torch::nn::functional::cross_entropy(
      logits.reshape({-1, V}), ids.narrow(1, 1, T).reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));  // [B*T]
  auto m = target.narrow(1, 1, T).reshape({-1});                                   // [B*T] f32
  return (ce * m).sum() / m.sum().clamp_min(1.0);
}

TrainResult run_training(const TrainOptions& o) {
  at::set_num_threads(std::max(1, o.threads));
  const auto t_start = Clock::now();
  const fs::path corpus(o.corpus_dir), out(o.out_dir);
  for (const char* f : {"train.jsonl", "valid.jsonl"})
    if (!fs::is_regular_file(corpus / f)) throw Error((corpus / f).string() + ": missing (build the corpus with scripts/build_corpus.py)");
  if (o.steps <= 0 && o.minutes <= 0) throw Error("give --steps or --minutes (the length the schedule is laid out for)");
  if (o.seq < 8 || o.batch < 1) throw Error("--seq must be >= 8 and --batch >= 1");
  fs::create_directories(out);
  auto say = [&](const std::string& s) {
    if (o.progress) std::cerr << s << std::endl;
  };

  // 1. Tokenizer (or the one already beside the checkpoint being resumed).
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
  const tok::Tokenizer tok = tok::Tokenizer::from_files((out / "tokenizer.model").string(), (out / "tokenizer_config.json").string());
  if (fs::is_regular_file(corpus / "WORDNET_LICENSE.txt"))
    write_atomic(out / "WORDNET_LICENSE.txt", read_file((corpus / "WORDNET_LICENSE.txt").string()));
  const double t_tok = std::chrono::duration<double>(Clock::now() - t_start).count();

  // 2. Data.
  const auto train_ex = load_examples((corpus / "train.jsonl").string(), tok);
  const auto valid_ex = load_examples((corpus / "valid.jsonl").string(), tok);
  const int pad = tok.token_id("<|endoftext|>");
  RowPacker packer(train_ex, o.seq, pad), vpacker(valid_ex, o.seq, pad);
  torch::Tensor val_ids, val_t;  // [R, seq+1]
  pack_all(valid_ex, vpacker, val_ids, val_t);
  {
    int64_t ntok = 0, ntgt = 0;
    for (const auto& e : train_ex) {
      ntok += static_cast<int64_t>(e.ids.size());
      for (auto f : e.target) ntgt += f;
    }
    say("corpus: " + std::to_string(train_ex.size()) + " train conversations (" + std::to_string(ntok) + " tokens, " +
        std::to_string(ntgt) + " assistant targets), " + std::to_string(valid_ex.size()) + " valid (" +
        std::to_string(val_ids.size(0)) + " rows); tokenizer " + std::to_string(static_cast<int>(t_tok)) +
        " s, tokenizing " + std::to_string(static_cast<int>(std::chrono::duration<double>(Clock::now() - t_start).count() - t_tok)) + " s");
  }

  // 3. Model + optimizer. Weight decay on projections only; norms and embeddings are left alone.
  const Phi3Config cfg = make_config(o, tok);
  TrainResult res;
  res.weights = init_weights(cfg, o.seed);
  Phi3Weights& w = res.weights;
  res.n_params = w.n_params();
  std::vector<torch::Tensor> decay, no_decay, all_params;
  for (auto& [name, t] : named_parameters(w)) {
    const bool is_proj = t.dim() == 2 && name != "model.embed_tokens.weight";
    (is_proj ? decay : no_decay).push_back(t);
    all_params.push_back(t);
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(o.lr).betas({0.9, 0.95}).eps(1e-8).weight_decay(o.weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(o.lr).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.0)));
  torch::optim::AdamW opt(groups, torch::optim::AdamWOptions(o.lr));

  DataStream data;
  data.ex = &train_ex;
  data.seed = o.seed;
  CheckpointState state;
  if (!o.resume.empty()) {
    state = load_checkpoint(o.resume, w, opt);
    say("resumed from " + o.resume + " at step " + std::to_string(state.step));
  }
  data.set_epoch(state.epoch);
  data.pos = static_cast<size_t>(state.pos);
  char line[512];
  std::snprintf(line, sizeof line, "model: %lld parameters (hidden %d, %d layers, %d heads / %d kv, mlp %d, vocab %d); %d x %d tokens per step",
                (long long)res.n_params, cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads,
                cfg.num_key_value_heads, cfg.intermediate_size, cfg.vocab_size, o.batch, o.seq);
  say(line);

  // 4. Log.
  const fs::path log_path = out / "train_log.csv";
  std::ofstream log;
  if (o.resume.empty() || !fs::exists(log_path)) {
    log.open(log_path, std::ios::trunc);
    log << "step,lr,train_loss,val_loss,tokens,seconds\n";
  } else {
    // Rows written after the checkpoint by the interrupted run are dropped: the resumed run
    // writes them again.
    std::istringstream rows(read_file(log_path.string()));
    std::string kept, row;
    while (std::getline(rows, row)) {
      const bool header = kept.empty();
      if (header || std::strtoll(row.c_str(), nullptr, 10) <= state.step) kept += row + "\n";
    }
    write_atomic(log_path, kept);
    log.open(log_path, std::ios::app);
  }
  if (!log) throw Error(log_path.string() + ": cannot open for writing");

  const bool tty = ::isatty(2) != 0;
  const double budget_s = o.minutes > 0 ? o.minutes * 60.0 : std::numeric_limits<double>::infinity();
  const auto t_loop = Clock::now();
  const double seconds_before = state.seconds;
  const int64_t step_before = state.step;
  auto elapsed = [&] { return seconds_before + std::chrono::duration<double>(Clock::now() - t_loop).count(); };
  double interval_sum = 0.0;
  int64_t interval_n = 0;
  double ema = std::numeric_limits<double>::quiet_NaN();
  res.first_val_loss = std::numeric_limits<double>::quiet_NaN();
  res.final_train_loss = std::numeric_limits<double>::quiet_NaN();  // stays NaN when no step runs

  auto checkpoint = [&] {
    state.epoch = data.epoch;
    state.pos = static_cast<int64_t>(data.pos);
    state.seconds = elapsed();
    save_checkpoint(out / "checkpoint.pt", w, opt, state);
    save_hf_model(w, tok, out.string(), o.bf16);
  };

  while (true) {
    if (o.steps > 0 && state.step >= o.steps) break;
    if (o.stop_after > 0 && state.step >= o.stop_after) break;
    if (elapsed() >= budget_s) break;
    const int64_t step = state.step + 1;
    const double lr = lr_at(o, step, elapsed());
    set_lr(opt, lr);
    torch::Tensor ids, target;  // [B, seq+1]
    data.next_batch(packer, o.batch, ids, target);
    opt.zero_grad();
    auto loss = masked_loss(w, ids, target);
    loss.backward();
    torch::nn::utils::clip_grad_norm_(all_params, o.clip);  // one global norm over every tensor
    opt.step();
    const double l = loss.item<double>();
    if (!std::isfinite(l)) throw Error("training diverged at step " + std::to_string(step) + " (loss " + std::to_string(l) + "); lower --lr");
    state.step = step;
    state.tokens += static_cast<int64_t>(o.batch) * o.seq;
    res.history.push_back({step, lr, l, state.tokens});
    interval_sum += l;
    ++interval_n;
    ema = std::isnan(ema) ? l : 0.95 * ema + 0.05 * l;

    const bool do_eval = o.eval_every > 0 && step % o.eval_every == 0;
    double val = std::numeric_limits<double>::quiet_NaN();
    if (do_eval) {
      val = evaluate(w, val_ids, val_t, o.eval_rows, o.batch).loss;
      if (std::isnan(res.first_val_loss)) res.first_val_loss = val;
    }
    if (step % o.log_every == 0 || do_eval) {
      std::snprintf(line, sizeof line, "%lld,%.6g,%.5f,%s,%lld,%.1f\n", (long long)step, lr, interval_sum / interval_n,
                    do_eval ? std::to_string(val).c_str() : "", (long long)state.tokens, elapsed());
      log << line << std::flush;
      res.final_train_loss = interval_sum / interval_n;
      interval_sum = 0.0;
      interval_n = 0;
    }
    if (o.progress && (tty || step % o.log_every == 0 || do_eval)) {
      const double run_s = elapsed() - seconds_before;
      const double tps = static_cast<double>((step - step_before) * o.batch * o.seq) / std::max(1e-9, run_s);
      double eta = std::numeric_limits<double>::quiet_NaN();
      double frac = 0.0;
      if (o.steps > 0) {
        const double per_step = run_s / static_cast<double>(step - step_before);
        eta = per_step * static_cast<double>(o.steps - step);
        frac = static_cast<double>(step) / o.steps;
      }
      if (o.minutes > 0) {
        eta = std::isnan(eta) ? budget_s - elapsed() : std::min(eta, budget_s - elapsed());
        frac = std::max(frac, elapsed() / budget_s);
      }
      const int filled = static_cast<int>(std::clamp(frac, 0.0, 1.0) * 24);
      std::string bar(static_cast<size_t>(filled), '#');
      bar.resize(24, '.');
      std::snprintf(line, sizeof line, "[%s] step %lld%s loss %.3f lr %.2e %.0f tok/s ETA %s%s%s", bar.c_str(),
                    (long long)step, o.steps > 0 ? ("/" + std::to_string(o.steps)).c_str() : "", ema, lr, tps,
                    fmt_duration(eta).c_str(), do_eval ? (" val " + std::to_string(val)).c_str() : "",
                    tty ? "   " : "");
      std::cerr << (tty ? "\r" : "") << line << (tty && !do_eval ? "" : "\n") << std::flush;
    }
    if (o.checkpoint_every > 0 && step % o.checkpoint_every == 0) checkpoint();
  }
  if (o.progress && tty) std::cerr << "\n";

  // 5. Final: checkpoint, the whole validation split, the Hugging Face folder.
  checkpoint();
  const int64_t fin_rows = o.final_eval_rows > 0 ? std::min<int64_t>(o.final_eval_rows, val_ids.size(0)) : val_ids.size(0);
  const auto fin = evaluate(w, val_ids, val_t, fin_rows, o.batch);
  res.final_val_loss = fin.loss;
  res.val_target_tokens = fin.tokens;
  res.val_rows = fin_rows;
  res.steps_done = state.step;
  res.tokens_seen = state.tokens;
  res.seconds = elapsed();
  if (interval_n > 0) res.final_train_loss = interval_sum / interval_n;
  std::snprintf(line, sizeof line, "%lld,%.6g,%s,%.5f,%lld,%.1f\n", (long long)state.step,
                lr_at(o, std::max<int64_t>(1, state.step), elapsed()),
                interval_n > 0 ? std::to_string(interval_sum / interval_n).c_str() : "", fin.loss,
                (long long)state.tokens, res.seconds);
  log << line << std::flush;
  std::snprintf(line, sizeof line,
                "done: %lld steps, %lld tokens in %s; validation loss %.4f (perplexity %.2f) over %lld assistant tokens in %lld of %lld rows",
                (long long)state.step, (long long)state.tokens, fmt_duration(res.seconds).c_str(), fin.loss,
                std::exp(fin.loss), (long long)fin.tokens, (long long)fin_rows, (long long)val_ids.size(0));
  say(line);
  return res;
}

}  // namespace qins::train
