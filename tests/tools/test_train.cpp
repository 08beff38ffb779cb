// The trainer on a tiny corpus written here: loss falls, the saved folder loads in the engine and
// generates exactly what the in-memory weights generate, a resumed run matches an uninterrupted one.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "qins/runtime/engine.h"
#include "qins/tools/trainer.h"
#include "qins/tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Word {
  const char* word;
  const char* meaning;
  const char* synonym;
};
// Written for this test: 24 words, the last 4 held out for validation.
const Word kWords[] = {
    {"harbour", "a sheltered place where boats stay safely", "port"},
    {"gentle", "kind and calm, never rough", "mild"},
    {"bright", "full of light", "shiny"},
    {"quick", "moving fast", "rapid"},
    {"river", "a large stream of water", "stream"},
    {"bridge", "a road built over water", "span"},
    {"garden", "a place where plants are grown", "yard"},
    {"teacher", "a person who helps others learn", "tutor"},
    {"mountain", "a very high hill", "peak"},
    {"window", "an opening in a wall that lets light in", "pane"},
    {"answer", "what is said in reply to a question", "reply"},
    {"morning", "the early part of the day", "dawn"},
    {"sleep", "to rest with the eyes closed", "doze"},
    {"rain", "water falling from clouds", "shower"},
    {"glass", "a hard clear material", "crystal"},
    {"street", "a road in a town", "road"},
    {"ship", "a large boat", "vessel"},
    {"book", "pages bound together to read", "volume"},
    {"stone", "a small piece of rock", "pebble"},
    {"fence", "a barrier around a field", "railing"},
    {"lamp", "a device that gives light", "light"},
    {"cloud", "a mass of water drops in the sky", "mist"},
    {"forest", "a large area covered by trees", "woods"},
    {"island", "land with water all around it", "isle"},
};

json conversation(const Word& w, std::mt19937& rng) {
  json msgs = json::array();
  if (rng() % 5 == 0) msgs.push_back({{"role", "system"}, {"content", "You are a helpful dictionary assistant."}});
  const std::string word = w.word;
  switch (rng() % 3) {
    case 0:
      msgs.push_back({{"role", "user"}, {"content", "What does " + word + " mean?"}});
      msgs.push_back({{"role", "assistant"}, {"content", word + " means " + w.meaning + "."}});
      break;
    case 1:
      msgs.push_back({{"role", "user"}, {"content", "Define " + word + "."}});
      msgs.push_back({{"role", "assistant"}, {"content", word + " means " + w.meaning + "."}});
      break;
    default:
      msgs.push_back({{"role", "user"}, {"content", "Give me a synonym for " + word + "."}});
      msgs.push_back({{"role", "assistant"}, {"content", "A synonym for " + word + " is " + w.synonym + "."}});
  }
  if (rng() % 4 == 0) {
    msgs.push_back({{"role", "user"}, {"content", "And another word for it?"}});
    msgs.push_back({{"role", "assistant"}, {"content", "Another word for " + word + " is " + w.synonym + "."}});
  }
  return {{"messages", msgs}};
}

void write_corpus(const fs::path& dir) {
  fs::create_directories(dir);
  std::mt19937 rng(7);
  std::ofstream train(dir / "train.jsonl"), valid(dir / "valid.jsonl"), text(dir / "tokenizer_text.txt");
  constexpr int kTrainWords = 20;
  for (int i = 0; i < 400; ++i) {
    const json c = conversation(kWords[i % kTrainWords], rng);
    train << c.dump() << "\n";
    for (const auto& m : c["messages"]) text << m["content"].get<std::string>() << "\n";
  }
  for (int i = 0; i < 24; ++i) valid << conversation(kWords[kTrainWords + i % 4], rng).dump() << "\n";
  std::ofstream(dir / "WORDNET_LICENSE.txt") << "test licence text\n";
}

class TrainTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("qins_test_train_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    write_corpus(root_ / "corpus");
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }

  static qins::train::TrainOptions tiny(const std::string& out) {
    qins::train::TrainOptions o;
    o.corpus_dir = (root_ / "corpus").string();
    o.out_dir = (root_ / out).string();
    o.hidden = 64;
    o.layers = 2;
    o.heads = 4;
    o.kv_heads = 2;  // exercise grouped-query attention in the backward pass too
    o.intermediate = 128;
    o.vocab = 320;
    o.seq = 64;
    o.batch = 8;
    o.lr = 1e-2;
    o.warmup = 5;
    o.steps = 40;
    o.eval_every = 20;
    o.log_every = 10;

    o.bf16 = false;
    o.seed = 3;
    o.threads = 1;  // tiny tensors: a second thread costs more than it saves on a busy machine
    return o;
  }
  static fs::path root_;
};
fs::path TrainTest::root_;

// Greedy decoding with the in-memory weights and no KV cache (the whole sequence each step).
std::vector<int> greedy(qins::Phi3Weights& w, std::vector<int> ids, const std::vector<int>& stops, int max_new) {
  torch::NoGradGuard no_grad;
  std::vector<int> out;
  for (int n = 0; n < max_new; ++n) {
    std::vector<int64_t> v(ids.begin(), ids.end());
    auto x = torch::from_blob(v.data(), {1, static_cast<int64_t>(v.size())}, torch::kInt64).clone();
    auto logits = qins::forward(w, x, nullptr);  // [1, T, V]
    const int id = static_cast<int>(logits[0][-1].argmax().item<int64_t>());
    if (std::find(stops.begin(), stops.end(), id) != stops.end()) break;
    out.push_back(id);
    ids.push_back(id);
  }
  return out;
}

TEST_F(TrainTest, AssistantMaskCoversRepliesAndTheirEnd) {
  qins::train::TrainOptions o = tiny("mask");
  fs::create_directories(o.out_dir);
  qins::tok::train_phi3_style_tokenizer(o.corpus_dir + "/tokenizer_text.txt", 320, o.out_dir);
  const auto tok = qins::tok::Tokenizer::from_files(o.out_dir + "/tokenizer.model", o.out_dir + "/tokenizer_config.json");
  using qins::tok::ChatRole;
  const std::vector<qins::tok::ChatTurn> turns = {{ChatRole::System, "Be brief."},
                                                  {ChatRole::User, "Define river."},
                                                  {ChatRole::Assistant, "river means a large stream of water."},
                                                  {ChatRole::User, "And another word for it?"},
                                                  {ChatRole::Assistant, "Another word for river is stream."}};
  const auto ex = qins::train::make_example(turns, tok);
  ASSERT_EQ(ex.ids.size(), ex.target.size());
  const int end = tok.token_id("<|end|>");
  // Cut the targets into spans at each <|end|>: each must be one reply's text, then <|end|>.
  std::vector<std::string> spans;
  std::vector<int> cur;
  for (size_t i = 0; i < ex.ids.size(); ++i) {
    if (!ex.target[i]) {
      EXPECT_TRUE(cur.empty()) << "a target span was interrupted at token " << i;
      continue;
    }
    if (ex.ids[i] == end) {
      spans.push_back(tok.decode(cur));
      cur.clear();
    } else {
      cur.push_back(ex.ids[i]);
    }
  }
  ASSERT_EQ(spans.size(), 2u);
  EXPECT_EQ(spans[0], "river means a large stream of water.");
  EXPECT_EQ(spans[1], "Another word for river is stream.");
}

TEST_F(TrainTest, LossFallsAndSavedModelGeneratesLikeTheTrainedWeights) {
  const auto o = tiny("run");
  auto r = qins::train::run_training(o);
  ASSERT_EQ(r.steps_done, 40);
  ASSERT_EQ(r.history.size(), 40u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) first += r.history[static_cast<size_t>(i)].loss / 5;
  for (int i = 35; i < 40; ++i) last += r.history[static_cast<size_t>(i)].loss / 5;
  EXPECT_LT(last, 0.5 * first) << "training loss should fall clearly: first steps " << first << ", last " << last;
  EXPECT_LT(r.final_val_loss, std::log(320.0)) << "validation loss should beat a uniform guess";
  EXPECT_TRUE(std::isfinite(r.first_val_loss));
  EXPECT_GT(r.val_target_tokens, 0);
  EXPECT_EQ(r.tokens_seen, 40 * 8 * 64);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json",
                        "generation_config.json", "WORDNET_LICENSE.txt", "train_log.csv", "checkpoint.pt"})
    EXPECT_TRUE(fs::is_regular_file(fs::path(o.out_dir) / f)) << f;
  {
    std::ifstream log(fs::path(o.out_dir) / "train_log.csv");
    std::string header;
    std::getline(log, header);
    EXPECT_EQ(header, "step,lr,train_loss,val_loss,tokens,seconds");
  }
  const auto tok = qins::tok::Tokenizer::from_files(o.out_dir + "/tokenizer.model", o.out_dir + "/tokenizer_config.json");
  const auto gen = json::parse(std::ifstream(fs::path(o.out_dir) / "generation_config.json"));
  const std::vector<int> stops = gen["eos_token_id"].get<std::vector<int>>();
  EXPECT_EQ(stops, (std::vector<int>{tok.token_id("<|endoftext|>"), tok.token_id("<|assistant|>"), tok.token_id("<|end|>")}));

  qins::LoadOptions lo;
  lo.threads = 2;
  lo.context_length = 256;
  lo.kv_dtype = qins::KvDtype::F32;
  lo.weight_format = "f32";
  auto engine = qins::Engine::load(o.out_dir, lo);
  EXPECT_EQ(engine->info().n_params, r.n_params);
  for (const char* prompt : {"What does river mean?", "Give me a synonym for ship."}) {
    const auto prompt_ids = tok.encode_chat({{qins::tok::ChatRole::User, prompt}}, true);
    const auto expected = greedy(r.weights, prompt_ids, stops, 24);
    ASSERT_FALSE(expected.empty());
    qins::SamplingParams sp;
    sp.temperature = 0.0f;
    sp.max_new_tokens = 24;
    std::vector<int> got;
    auto session = engine->new_session();
    session->generate({{qins::Role::User, prompt}}, sp, {}, nullptr, &got);
    EXPECT_EQ(got, expected) << prompt << ": engine said \"" << tok.decode(got) << "\", trained weights \""
                             << tok.decode(expected) << "\"";
  }
}

TEST_F(TrainTest, ResumeContinuesExactlyLikeAnUninterruptedRun) {
  auto a_opt = tiny("full");
  a_opt.steps = 8;
  a_opt.eval_every = 0;
  a_opt.log_every = 1;
  const auto a = qins::train::run_training(a_opt);

  auto b_opt = a_opt;
  b_opt.out_dir = (root_ / "part").string();
  b_opt.stop_after = 5;  // same schedule, stopped early: writes checkpoint.pt at step 5
  const auto b = qins::train::run_training(b_opt);
  ASSERT_EQ(b.steps_done, 5);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(b.history[i].loss, a.history[i].loss) << "same seed, step " << i + 1;

  auto c_opt = b_opt;
  c_opt.stop_after = 0;
  c_opt.resume = b_opt.out_dir + "/checkpoint.pt";
  const auto c = qins::train::run_training(c_opt);
  ASSERT_EQ(c.history.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(c.history[i].step, a.history[5 + i].step);
    EXPECT_EQ(c.history[i].lr, a.history[5 + i].lr);
    EXPECT_EQ(c.history[i].loss, a.history[5 + i].loss) << "step " << c.history[i].step;
  }
  EXPECT_EQ(c.tokens_seen, a.tokens_seen);
  EXPECT_EQ(c.final_val_loss, a.final_val_loss);
  // The resumed log reads like the uninterrupted one: same steps, same losses (seconds differ).
  auto log_rows = [](const std::string& dir) {
    std::ifstream in(fs::path(dir) / "train_log.csv");
    std::vector<std::string> rows;
    std::string line;
    while (std::getline(in, line)) rows.push_back(line.substr(0, line.rfind(',')));
    return rows;
  };
  const auto a_log = log_rows(a_opt.out_dir), c_log = log_rows(c_opt.out_dir);
  ASSERT_EQ(a_log.size(), 1u + 8u + 1u);  // header, steps 1..8, final validation row
  // The interrupted run's final row (step 5, validation only) stays; otherwise identical.
  std::vector<std::string> c_without_stop_row;
  for (size_t i = 0; i < c_log.size(); ++i)
    if (!(i == 6 && c_log[i].rfind("5,", 0) == 0)) c_without_stop_row.push_back(c_log[i]);
  EXPECT_EQ(c_without_stop_row, a_log);

  // A checkpoint for another shape is refused with a clear message.
  auto d_opt = c_opt;
  d_opt.hidden = 128;
  try {
    qins::train::run_training(d_opt);
    FAIL() << "resuming into a different shape must fail";
  } catch (const qins::Error& e) {
    EXPECT_NE(std::string(e.what()).find("different model shape"), std::string::npos) << e.what();
  }
}

TEST_F(TrainTest, BadCorpusLineIsNamed) {
  const fs::path dir = root_ / "bad_corpus";
  fs::create_directories(dir);
  fs::copy_file(root_ / "corpus" / "tokenizer_text.txt", dir / "tokenizer_text.txt", fs::copy_options::overwrite_existing);
  fs::copy_file(root_ / "corpus" / "valid.jsonl", dir / "valid.jsonl", fs::copy_options::overwrite_existing);
  std::ofstream(dir / "train.jsonl") << R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})"
                                     << "\n{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}\n";
  auto o = tiny("bad_out");
  o.corpus_dir = dir.string();
  try {
    qins::train::run_training(o);
    FAIL() << "a bad role must be reported";
  } catch (const qins::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("train.jsonl:2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("robot"), std::string::npos) << msg;
  }
}

}  // namespace
