#include "qins/tools/fixture.h"

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "qins/runtime/engine.h"
#include "qins/graph/phi3_config.h"
#include "qins/graph/phi3_layout.h"
#include "qins/io/safetensors.h"
#include "qins/tokenizer/tokenizer.h"

namespace fs = std::filesystem;

namespace qins {

const char* fixture_corpus() {
  // Written for this project: a little of everything a chat sees (prose, questions, numbers,
  // code, punctuation), so the tiny tokenizer learns some merges.
  return R"(The lighthouse keeper counted the ships that passed each evening and wrote their names in a book.
What does the word harbour mean? A harbour is a sheltered place where boats can stay safely.
Define the word gentle. Gentle means kind, calm and careful, not rough or loud.
Use the word bright in a sentence. The morning was bright and the streets were full of people.
Give me a synonym for quick. A synonym for quick is fast; another is rapid.
The river runs past the old mill, under the stone bridge, and out to the open sea.
She asked whether the train would be late, and he answered that it was already on time.
There are 24 hours in a day, 7 days in a week, and 365 days in most years.
In the garden we planted tomatoes, beans, carrots and a row of sunflowers near the fence.
int main() { int total = 0; for (int i = 0; i < 10; ++i) total += i; return total; }
def greet(name): return "Hello, " + name + "!"
The teacher explained that water boils at one hundred degrees at sea level.
Hello world. Hello there. How are you today? I am well, thank you for asking.
Mountains rise slowly over millions of years, and rain wears them down again.
A good answer is short, clear and true. A long answer is not always a better one.
The cat slept on the warm windowsill while the rain tapped against the glass.
What is the opposite of cold? The opposite of cold is hot.
Reading every day makes the words you know grow, one page at a time.
)";
}

namespace {

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(p.string() + ": cannot open for writing");
  out << text;
  if (!out.flush()) throw Error(p.string() + ": write failed");
}

st::TensorData make_tensor(const std::string& name, std::vector<int64_t> shape, bool bf16, std::mt19937_64& rng,
                           float mean, float std_dev) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  std::normal_distribution<float> dist(mean, std_dev);
  st::TensorData t;
  t.name = name;
  t.shape = std::move(shape);
  t.dtype = bf16 ? st::DType::BF16 : st::DType::F32;
  t.bytes.resize(static_cast<size_t>(n) * (bf16 ? 2 : 4));
  for (int64_t i = 0; i < n; ++i) {
    const float v = dist(rng);
    if (bf16) {
      const uint16_t h = st::float_to_bf16(v);
      std::memcpy(t.bytes.data() + i * 2, &h, 2);
    } else {
      std::memcpy(t.bytes.data() + i * 4, &v, 4);
    }
  }
  return t;
}

}  // namespace

namespace {

// Longrope factors come from rng (before the weights do).
Phi3Config fixture_config(const FixtureOptions& o, int vocab, std::mt19937_64& rng) {
  Phi3Config c;
  c.hidden_size = o.hidden_size;
  c.intermediate_size = o.intermediate_size;
  c.num_hidden_layers = o.num_layers;
  c.num_attention_heads = o.num_heads;
  c.num_key_value_heads = o.num_kv_heads;
  c.vocab_size = vocab;
  c.max_position_embeddings = o.longrope ? o.max_position : o.original_max_position;
  c.original_max_position_embeddings = o.original_max_position;
  c.tie_word_embeddings = o.tie_embeddings;
  c.eos_token_ids = {o.base_vocab};
  c.pad_token_id = o.base_vocab;
  c.torch_dtype = o.bf16 ? "bfloat16" : "float32";
  c.sliding_window = o.sliding_window;
  if (o.longrope) {
    std::uniform_real_distribution<float> f(1.0f, 3.0f);
    const size_t half = static_cast<size_t>(o.hidden_size / o.num_heads / 2);
    c.rope_scaling_type = "longrope";
    c.short_factor.resize(half);
    c.long_factor.resize(half);
    for (auto& v : c.short_factor) v = f(rng);
    for (auto& v : c.long_factor) v = 2.0f * f(rng);
  }
  return complete_phi3_config(c, "fixture config");
}

}  // namespace

void write_fixture_model(const std::string& dir_str, const FixtureOptions& o) {
  const fs::path dir(dir_str);
  fs::create_directories(dir);
  std::mt19937_64 rng(o.seed);

  // Tokenizer: trained on the built-in corpus; added tokens at base .. base + 10.
  const fs::path corpus = dir / "fixture_corpus.txt";
  write_text(corpus, fixture_corpus());
  tok::train_phi3_style_tokenizer(corpus.string(), o.base_vocab, dir.string());
  fs::remove(corpus);
  const int vocab = o.base_vocab + 16;  // 11 added tokens + padding rows, as Phi-3.5 pads 32011 to 32064

  const Phi3Config c = fixture_config(o, vocab, rng);
  write_text(dir / "config.json", phi3_config_to_json(c));
  const int end_id = o.base_vocab + 7, assistant_id = o.base_vocab + 1, eot_id = o.base_vocab;
  write_text(dir / "generation_config.json",
             nlohmann::json({{"bos_token_id", 1}, {"eos_token_id", {eot_id, assistant_id, end_id}}}).dump(2));

  // Weights: N(0, std) matrices (the embedding and lm_head 4x wider), norms near 1.
  std::vector<st::TensorData> tensors;
  for (const TensorSpec& s : phi3_tensors(c)) {
    if (s.kind == TensorKind::Norm)
      tensors.push_back(make_tensor(s.name, s.shape, o.bf16, rng, 1.0f, 0.05f));
    else if (s.kind == TensorKind::Projection)
      tensors.push_back(make_tensor(s.name, s.shape, o.bf16, rng, 0.0f, o.weight_std));
    else
      tensors.push_back(make_tensor(s.name, s.shape, o.bf16, rng, 0.0f, o.weight_std * 4));
  }

  if (!o.sharded) {
    st::write_file((dir / "model.safetensors").string(), tensors, {{"format", "pt"}});
    return;
  }
  // Two shards split at the middle tensor, plus the index.
  const size_t half = tensors.size() / 2;
  std::vector<st::TensorData> a(tensors.begin(), tensors.begin() + static_cast<long>(half));
  std::vector<st::TensorData> b(tensors.begin() + static_cast<long>(half), tensors.end());
  nlohmann::json index;
  index["metadata"] = {{"total_size", 0}};
  for (const auto& t : a) index["weight_map"][t.name] = "model-00001-of-00002.safetensors";
  for (const auto& t : b) index["weight_map"][t.name] = "model-00002-of-00002.safetensors";
  st::write_file((dir / "model-00001-of-00002.safetensors").string(), a, {{"format", "pt"}});
  st::write_file((dir / "model-00002-of-00002.safetensors").string(), b, {{"format", "pt"}});
  write_text(dir / "model.safetensors.index.json", index.dump(2));
}

}  // namespace qins
