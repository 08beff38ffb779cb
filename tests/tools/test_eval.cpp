// qins eval on fixture models: the reference perplexity equals exp(mean NLL) computed here from
// plain forward passes; a model against itself has KL 0 and 100 % top-1 agreement; quantized rows
// have KL > 0; a .qins file with --reference reproduces the in-memory row; chat text scores
// assistant tokens only; JSON carries the documented keys; synthetic SQNR ordering.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "fixture_dir.h"
#include "qins/io/converter.h"
#include "qins/runtime/engine.h"
#include "qins/tools/eval.h"
#include "qins/tools/sim_quant.h"
#include "qins/io/hf_folder.h"
#include "qins/io/qins_file.h"
#include "qins/tokenizer/tokenizer.h"

namespace qins {
namespace {

namespace fs = std::filesystem;

// Gaussian weights (std 0.08), 2 layers, untied: the fixture every test here shares.
std::string model_dir() { return test::fixture("eval", FixtureOptions{}); }

std::string write_file(const std::string& name, const std::string& bytes) {
  const auto p = (test::temp_root() / name).string();
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
  return p;
}

std::string text_file() {
  static const std::string p = write_file("eval.txt", std::string(fixture_corpus()) + fixture_corpus());
  return p;
}

tok::Tokenizer tokenizer(const std::string& dir) {
  const HfPaths p = find_hf_files(dir);
  return tok::Tokenizer::from_files(p.tokenizer_model, p.tokenizer_config);
}

Phi3Weights load_f32(const std::string& dir) {
  auto ckpt = st::Checkpoint::open_dir(dir);
  return load_hf_weights(*ckpt, read_phi3_config(find_hf_files(dir).config), WeightLoadOptions{});
}

EvalOptions small_options() {
  EvalOptions o;
  o.window = 48;
  o.max_tokens = 300;
  o.batch_tokens = 256;
  return o;
}

// One evaluation of every codebook (plus pruning) shared by the tests that read it.
const EvalReport& all_report() {
  static const EvalReport r = [] {
    EvalOptions o = small_options();
    o.codebooks = "all";
    o.prune_index = 3;
    return evaluate(model_dir(), text_file(), o);
  }();
  return r;
}

const EvalRow& row(const EvalReport& r, const std::string& label) {
  for (const auto& x : r.rows)
    if (x.label == label) return x;
  throw std::runtime_error("no row " + label);
}

TEST(Eval, ReferencePerplexityIsExpMeanNll) {
  const EvalReport& r = all_report();
  ASSERT_FALSE(r.rows.empty());
  EXPECT_FALSE(r.rows.front().quantized);
  // Independently: the same token stream cut into 48-token windows, one forward per window.
  const tok::Tokenizer tok = tokenizer(model_dir());
  std::vector<int> ids = tok.encode(std::string(fixture_corpus()) + fixture_corpus(), false);
  if (tok.add_bos()) ids.insert(ids.begin(), tok.bos_id());
  ids.resize(std::min<size_t>(ids.size(), 300));
  Phi3Weights w = load_f32(model_dir());
  torch::NoGradGuard ng;
  double nll = 0;
  int64_t n = 0;
  for (size_t s = 0; s + 1 < ids.size(); s += 48) {
    const size_t e = std::min(ids.size(), s + 48);
    std::vector<int64_t> win(ids.begin() + static_cast<long>(s), ids.begin() + static_cast<long>(e));
    const auto x = torch::tensor(win, torch::kInt64).unsqueeze(0);            // [1, T]
    const auto lp = torch::log_softmax(forward(w, x, nullptr)[0], -1);         // [T, V]
    for (size_t t = 0; t + 1 < win.size(); ++t) nll -= lp[static_cast<long>(t)][win[t + 1]].item<double>(), ++n;
  }
  EXPECT_EQ(r.text.targets, n);
  EXPECT_EQ(r.rows.front().scores.targets, n);
  EXPECT_NEAR(r.rows.front().scores.perplexity, std::exp(nll / static_cast<double>(n)),
              1e-5 * std::exp(nll / static_cast<double>(n)));
  // A random-weight model over a 331-token vocabulary: perplexity near the vocabulary size, not 1.
  EXPECT_GT(r.rows.front().scores.perplexity, 50.0);
}

TEST(Eval, ModelAgainstItselfHasZeroKlAndFullAgreement) {
  const tok::Tokenizer tok = tokenizer(model_dir());
  const EvalText text = load_eval_text(text_file(), tok, 48, 300);
  Phi3Weights a = load_f32(model_dir());
  Phi3Weights b = load_f32(model_dir());  // a second copy: the comparison path, not a shortcut
  const EvalScores s = score_model(a, &b, text, 100);
  EXPECT_NEAR(s.kl, 0.0, 1e-9);
  EXPECT_EQ(s.top1, 1.0);
  const EvalScores self = score_model(a, &a, text, 100);
  EXPECT_EQ(self.kl, 0.0);
  EXPECT_EQ(self.top1, 1.0);
  EXPECT_EQ(self.nll_delta_se, 0.0);
  // Batching (padding) does not change the scores.
  const EvalScores one = score_model(a, nullptr, text, 1);
  EXPECT_NEAR(one.nll, s.nll, 1e-5);
  EXPECT_TRUE(std::isnan(one.kl));
}

TEST(Eval, QuantizedRowsCostSomething) {
  const EvalReport& r = all_report();
  // fp32, inverse, projective C=300, projective fitted C, uniform, then one pruned row per codebook.
  ASSERT_EQ(r.rows.size(), 8u);
  const int n_tensors = 1 + 4 * 2 + 1;  // embed, 2 layers x (qkv, o, gate_up, down), lm_head
  for (size_t i = 1; i < r.rows.size(); ++i) {
    const EvalRow& x = r.rows[i];
    EXPECT_TRUE(x.quantized);
    EXPECT_GT(x.scores.kl, 0.0) << x.label;
    EXPECT_GT(x.scores.nll_delta_se, 0.0) << x.label;
    EXPECT_LE(x.scores.top1, 1.0) << x.label;
    EXPECT_TRUE(std::isfinite(x.scores.perplexity)) << x.label;
    EXPECT_EQ(static_cast<int>(x.tensors.size()), n_tensors) << x.label;
    for (const auto& t : x.tensors) {
      EXPECT_GT(t.rel_error, 0.0) << t.name;
      EXPECT_NEAR(t.sqnr_db, -20.0 * std::log10(t.rel_error), 1e-6) << t.name;
    }
  }
  // The original inverse rule is by far the worst: its levels crowd near zero.
  EXPECT_GT(row(r, "inverse").scores.kl, 10 * row(r, "uniform").scores.kl);
  EXPECT_GT(row(r, "inverse").scores.kl, 10 * row(r, "projective C=300").scores.kl);
  // Pruning only removes codes: more zeros, lower SQNR than the same codebook unpruned.
  const EvalRow& pruned = row(r, "uniform, prune j<=3");
  EXPECT_GT(pruned.pruned_codes, 0);
  EXPECT_GT(pruned.zero_codes, row(r, "uniform").zero_codes);
  EXPECT_LT(pruned.weight_sqnr_db, row(r, "uniform").weight_sqnr_db);
}

TEST(Eval, SqnrOrderingOnGaussianWeights) {
  const EvalReport& r = all_report();
  const double inv = row(r, "inverse").weight_sqnr_db, uni = row(r, "uniform").weight_sqnr_db;
  const double proj = row(r, "projective C=300").weight_sqnr_db, fit = row(r, "projective fitted C").weight_sqnr_db;
  EXPECT_GT(proj, uni);
  EXPECT_GT(uni, inv + 10.0);
  // The fitted pole minimises weight MSE over a grid that contains 300.
  EXPECT_GE(fit, proj - 0.05);
  for (const auto& t : row(r, "projective fitted C").tensors) EXPECT_GT(t.pole, 127.0) << t.name;
}

TEST(Eval, JsonHasTheDocumentedKeys) {
  const auto j = nlohmann::json::parse(eval_report_json(all_report()));
  for (const char* k : {"model", "model_format", "n_params", "reference", "text", "rows"}) EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["text"]["mode"], "text");
  ASSERT_EQ(j["rows"].size(), 8u);
  EXPECT_EQ(j["rows"][0]["quantized"], false);
  EXPECT_EQ(j["rows"][0]["kl"], 0.0);
  for (size_t i = 1; i < j["rows"].size(); ++i) {
    const auto& x = j["rows"][i];
    for (const char* k : {"name", "codebook", "pole", "prune_index", "perplexity", "perplexity_delta_pct", "perplexity_delta_se_pct", "kl",
                          "top1_agreement", "weight_sqnr_db", "tensors"})
      EXPECT_TRUE(x.contains(k)) << k;
    EXPECT_GT(x["kl"].get<double>(), 0.0);
    for (const char* k : {"name", "shape", "sqnr_db", "rel_error"}) EXPECT_TRUE(x["tensors"][0].contains(k)) << k;
  }
  EXPECT_EQ(j["rows"][3]["pole"], "fitted");
  const std::string md = eval_report_markdown(all_report());
  EXPECT_NE(md.find("| fp32 (reference) |"), std::string::npos);
  EXPECT_NE(md.find("| model.layers.1.mlp.down_proj.weight | 64x128 |"), std::string::npos);
}

TEST(Eval, QinsFileWithReferenceMatchesQuantizingInMemory) {
  const auto file = (test::temp_root() / "eval_uniform.qins").string();
  ConvertOptions co;
  co.quant.codebook = core::Codebook::Uniform;
  convert_to_qins(model_dir(), file, co);
  EvalOptions o = small_options();
  o.reference = model_dir();
  const EvalReport r = evaluate(file, text_file(), o);
  ASSERT_EQ(r.rows.size(), 2u);
  EXPECT_EQ(r.model_format, "qins");
  const EvalRow& mem = row(all_report(), "uniform");
  const EvalRow& f = r.rows[1];
  EXPECT_NEAR(f.scores.perplexity, mem.scores.perplexity, 1e-6 * mem.scores.perplexity);
  EXPECT_NEAR(f.scores.kl, mem.scores.kl, 1e-6);
  ASSERT_EQ(f.tensors.size(), mem.tensors.size());
  for (size_t i = 0; i < f.tensors.size(); ++i) {
    EXPECT_EQ(f.tensors[i].name, mem.tensors[i].name);
    EXPECT_NEAR(f.tensors[i].sqnr_db, mem.tensors[i].sqnr_db, 1e-9);
  }
  // Without a reference: perplexity alone, and the report says so.
  const EvalReport alone = evaluate(file, text_file(), small_options());
  ASSERT_EQ(alone.rows.size(), 1u);
  EXPECT_FALSE(alone.has_reference);
  EXPECT_NE(alone.note.find("no --reference"), std::string::npos);
  EXPECT_NEAR(alone.rows[0].scores.perplexity, mem.scores.perplexity, 1e-6 * mem.scores.perplexity);
  EXPECT_TRUE(std::isnan(alone.rows[0].scores.kl));
}

// A 4-bit .qins file (`qins convert --codebook qins4`) evaluated against its fp32 folder is the
// `--scheme qins4` row computed in memory: same KL, perplexity, bits per weight and tensor errors.
TEST(Eval, Qins4FileWithReferenceMatchesTheQins4Scheme) {
  const auto file = (test::temp_root() / "eval_qins4.qins").string();
  ConvertOptions co;
  co.qins4 = true;
  co.quant.pole = 0.0;
  convert_to_qins(model_dir(), file, co);
  EvalOptions o = small_options();
  o.reference = model_dir();
  const EvalReport r = evaluate(file, text_file(), o);
  ASSERT_EQ(r.rows.size(), 2u);
  EvalOptions m = small_options();
  m.codebooks = "none";
  m.schemes = "qins4";
  const EvalReport mem_r = evaluate(model_dir(), text_file(), m);
  ASSERT_EQ(mem_r.rows.size(), 2u);
  const EvalRow& mem = mem_r.rows[1];
  const EvalRow& f = r.rows[1];
  EXPECT_EQ(f.variant.scheme, "qins4");
  EXPECT_GT(f.scores.kl, 0.0);
  EXPECT_NEAR(f.scores.kl, mem.scores.kl, 1e-6);
  EXPECT_NEAR(f.scores.perplexity, mem.scores.perplexity, 1e-6 * mem.scores.perplexity);
  EXPECT_NEAR(f.bits_per_weight, mem.bits_per_weight, 1e-9);
  ASSERT_EQ(f.tensors.size(), mem.tensors.size());
  std::map<std::string, double> want;
  for (const auto& t : mem.tensors) want[t.name] = t.sqnr_db;
  for (const auto& t : f.tensors) {
    ASSERT_TRUE(want.count(t.name)) << t.name;
    EXPECT_NEAR(t.sqnr_db, want[t.name], 1e-9) << t.name;
  }
}

TEST(Eval, ChatTextScoresAssistantTokensOnly) {
  const std::string path = write_file(
      "chat.jsonl",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"What does harbour mean?\"}, "
      "{\"role\": \"assistant\", \"content\": \"A sheltered place for boats.\"}]}\n\n"
      "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Define gentle.\"}, "
      "{\"role\": \"assistant\", \"content\": \"Kind and calm.\"}, {\"role\": \"user\", \"content\": \"Use it in a sentence.\"}, "
      "{\"role\": \"assistant\", \"content\": \"The nurse was gentle.\"}]}\n");
  const tok::Tokenizer tok = tokenizer(model_dir());
  const EvalText t = load_eval_text(path, tok, 256, 4096);
  EXPECT_EQ(t.mode, "chat");
  ASSERT_EQ(t.seqs.size(), 2u);
  std::string scored;
  for (size_t i = 0; i < t.seqs.size(); ++i) {
    std::vector<int> ids;
    for (size_t k = 0; k < t.seqs[i].size(); ++k)
      if (t.is_target[i][k]) ids.push_back(static_cast<int>(t.seqs[i][k]));
    scored += tok.decode(ids) + "|";
  }
  EXPECT_NE(scored.find("A sheltered place for boats."), std::string::npos) << scored;
  EXPECT_NE(scored.find("The nurse was gentle."), std::string::npos) << scored;
  EXPECT_EQ(scored.find("harbour"), std::string::npos) << scored;
  EXPECT_EQ(scored.find("brief"), std::string::npos) << scored;
  EXPECT_EQ(scored.find("sentence"), std::string::npos) << scored;
  // Each reply's <|end|> is a target (the model must learn to stop).
  int ends = 0;
  for (size_t i = 0; i < t.seqs.size(); ++i)
    for (size_t k = 0; k < t.seqs[i].size(); ++k)
      ends += t.is_target[i][k] && t.seqs[i][k] == tok.token_id("<|end|>");
  EXPECT_EQ(ends, 3);
  // Bad lines name the file and line.
  const std::string bad = write_file("bad.jsonl", "{\"messages\": []}\n{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}\n");
  try {
    load_eval_text(bad, tok, 256, 4096);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("robot"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_eval_text(write_file("broken.jsonl", "{not json\n"), tok, 256, 4096), Error);
  EXPECT_THROW(load_eval_text((test::temp_root() / "missing.txt").string(), tok, 256, 4096), Error);
}

TEST(Eval, SyntheticWeights) {
  // Deterministic, and heavier tails where asked for.
  EXPECT_TRUE(torch::equal(synthetic_weights("t5", 4, 100, 7), synthetic_weights("t5", 4, 100, 7)));
  auto kurtosis = [](const torch::Tensor& w) {
    const auto x = w.to(torch::kFloat64);
    const auto c = x - x.mean();
    return (c.pow(4).mean() / c.pow(2).mean().pow(2)).item<double>();
  };
  const double kg = kurtosis(synthetic_weights("gaussian", 64, 1024, 1));
  const double kl = kurtosis(synthetic_weights("laplace", 64, 1024, 1));
  EXPECT_NEAR(kg, 3.0, 0.2);
  EXPECT_NEAR(kl, 6.0, 1.0);
  EXPECT_GT(kurtosis(synthetic_weights("t5", 64, 1024, 1)), kg + 1.0);
  const auto r = evaluate_synthetic("gaussian", 64, 1024, 1, 300.0);
  ASSERT_EQ(r.size(), 1u);
  ASSERT_EQ(r[0].errors.size(), 4u);  // inverse, projective C=300, projective fitted, uniform
  EXPECT_GT(r[0].errors[1].sqnr_db, r[0].errors[3].sqnr_db);
  EXPECT_GT(r[0].errors[3].sqnr_db, r[0].errors[0].sqnr_db + 15.0);
  EXPECT_THROW(synthetic_weights("cauchy", 2, 2, 1), Error);
}

TEST(Eval, VariantsAndBadOptions) {
  EXPECT_EQ(eval_variants("projective", 300, 0).size(), 2u);
  EXPECT_EQ(eval_variants("projective", 0, 0).size(), 1u);
  EXPECT_EQ(eval_variants("all", 300, 2).size(), 7u);
  EXPECT_THROW(eval_variants("fp4", 300, 0), Error);
  EXPECT_THROW(eval_variants("projective", 100, 0), Error);
  EvalOptions o = small_options();
  o.reference = model_dir();
  EXPECT_THROW(evaluate(model_dir(), text_file(), o), Error);  // --reference is for .qins files
}

#ifdef QINS_CLI_PATH
std::string run(const std::string& args, int* status) {
  const std::string cmd = std::string(QINS_CLI_PATH) + " " + args + " 2>/dev/null </dev/null";
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = pclose(p);
  *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

// QINS-4 and the simulated llama.cpp formats as rows of one report: each costs something, says
// its bits per weight, and the embedding / lm_head stay 8-bit QINS (the mixed-precision policy).
TEST(Eval, FourBitSchemesSideBySide) {
  EvalOptions o = small_options();
  o.codebooks = "none";
  o.schemes = "4bit";
  const EvalReport r = evaluate(model_dir(), text_file(), o);
  ASSERT_EQ(r.rows.size(), 8u);  // fp32, qins4, qins4-g16, qins4-g64, q4_0, q4_1, q4_k, q8_0
  for (size_t i = 1; i < r.rows.size(); ++i) {
    const EvalRow& x = r.rows[i];
    EXPECT_GT(x.scores.kl, 0.0) << x.label;
    EXPECT_GT(x.scores.kl_se, 0.0) << x.label;
    EXPECT_LT(x.scores.kl_se, x.scores.kl) << x.label;
    ASSERT_EQ(x.tensors.size(), 10u) << x.label;
    EXPECT_EQ(x.tensors.front().bits, 8.0 * x.tensors.front().numel + 32.0 * (x.tensors.front().shape[0] + 128))
        << "embedding at 8 bits: " << x.label;
  }
  const EvalRow &q4 = row(r, "QINS-4 (lloyd table, group 32)"), &q4g64 = row(r, "QINS-4 (lloyd table, group 64)");
  const EvalRow& q4g16 = row(r, "QINS-4 (lloyd table, group 16, 8-bit log scales)");
  const EvalRow &s40 = row(r, "sim llama.cpp Q4_0"), &s41 = row(r, "sim llama.cpp Q4_1");
  const EvalRow &s4k = row(r, "sim llama.cpp Q4_K"), &s80 = row(r, "sim llama.cpp Q8_0");
  EXPECT_NEAR(q4.bits_per_weight, 4.5, 0.02);  // + 16 table bytes per tensor
  EXPECT_NEAR(q4g64.bits_per_weight, 4.25, 0.02);
  EXPECT_NEAR(q4g16.bits_per_weight, 4.5, 0.02);  // + 16 table bytes and the 4-byte top per tensor
  EXPECT_GT(q4g16.bits_per_weight, q4.bits_per_weight);
  EXPECT_EQ(s40.bits_per_weight, 4.5);
  EXPECT_EQ(s41.bits_per_weight, 5.0);
  EXPECT_EQ(s4k.bits_per_weight, 4.5);
  EXPECT_EQ(s80.bits_per_weight, 8.5);
  // Weight error on these Gaussian weights: 8 bits far ahead; the fitted 16-level table ahead of
  // Q4_0's uniform one at the same bits; group 32 ahead of group 64.
  // (Per layer tensor: the row totals also hold the 8-bit embedding and lm_head.)
  EXPECT_GT(s80.tensors[1].sqnr_db, q4.tensors[1].sqnr_db + 15.0) << s80.tensors[1].name;
  EXPECT_GT(q4.weight_sqnr_db, s40.weight_sqnr_db);
  EXPECT_GT(q4.weight_sqnr_db, q4g64.weight_sqnr_db);
  EXPECT_GT(q4g16.weight_sqnr_db, q4.weight_sqnr_db);  // twice the scales at the same bits
  EXPECT_LT(s80.scores.kl, q4.scores.kl);
  const std::string md = eval_report_markdown(r);
  EXPECT_NE(md.find("| sim llama.cpp Q8_0 | 8.500 |"), std::string::npos) << md;
  const auto j = nlohmann::json::parse(eval_report_json(r));
  EXPECT_EQ(j["rows"][1]["scheme"], "qins4");
  EXPECT_TRUE(j["rows"][1].contains("kl_se"));
  EXPECT_THROW(scheme_variants("qins4,q5_k"), Error);
  o.schemes = "";
  EXPECT_THROW(evaluate(model_dir(), text_file(), o), Error);  // nothing to evaluate
}

// QINS-8 grouped next to the row-scale 8-bit code and simulated Q8_0: bits per weight as stored,
// every row costs something, finer groups and wider scales lower the weight error.
TEST(Eval, EightBitSchemesSideBySide) {
  EvalOptions o = small_options();
  o.codebooks = "projective";
  o.pole = 300.0;
  o.schemes = "8bit";
  const EvalReport r = evaluate(model_dir(), text_file(), o);
  ASSERT_EQ(r.rows.size(), 8u);  // fp32, C=300, fitted C, qins8-g32, -g64, -g32-fp16, -g64-fp16, q8_0
  for (size_t i = 1; i < r.rows.size(); ++i) {
    const EvalRow& x = r.rows[i];
    EXPECT_GT(x.scores.kl, 0.0) << x.label;
    EXPECT_GT(x.scores.kl_se, 0.0) << x.label;
    ASSERT_EQ(x.tensors.size(), 10u) << x.label;
    EXPECT_EQ(x.tensors.front().bits, 8.0 * x.tensors.front().numel + 32.0 * (x.tensors.front().shape[0] + 128))
        << "embedding at 8 bits with row scales: " << x.label;
  }
  const EvalRow& g32 = row(r, "QINS-8 (projective table, group 32, 8-bit log scales)");
  const EvalRow& g64 = row(r, "QINS-8 (projective table, group 64, 8-bit log scales)");
  const EvalRow& h32 = row(r, "QINS-8 (projective table, group 32, fp16 scales)");
  const EvalRow& h64 = row(r, "QINS-8 (projective table, group 64, fp16 scales)");
  const EvalRow& rowc = row(r, "projective C=300");
  // Layer tensor 1: codes, one byte per group (log) or two (fp16), the 512-byte table, the top.
  const TensorError& t = g32.tensors[1];
  const int64_t groups = t.shape[0] * ((t.shape[1] + 31) / 32);
  EXPECT_EQ(t.bits, 8.0 * (t.shape[0] * ((t.shape[1] + 31) / 32 * 32) + groups + 512 + 4)) << t.name;
  EXPECT_EQ(h32.tensors[1].bits, 8.0 * (t.shape[0] * ((t.shape[1] + 31) / 32 * 32) + 2 * groups + 512));
  EXPECT_GT(g32.bits_per_weight, g64.bits_per_weight);
  EXPECT_GT(h32.bits_per_weight, g32.bits_per_weight);
  EXPECT_GT(h64.bits_per_weight, g64.bits_per_weight);
  EXPECT_GT(g32.weight_sqnr_db, g64.weight_sqnr_db);
  EXPECT_GT(h32.weight_sqnr_db, h64.weight_sqnr_db);
  EXPECT_GT(h32.weight_sqnr_db, g32.weight_sqnr_db);  // fp16 scales: no 4.4 % grid
  EXPECT_GT(rowc.weight_sqnr_db, 30.0);
  const auto j = nlohmann::json::parse(eval_report_json(r));
  EXPECT_EQ(j["rows"][3]["scheme"], "qins8-g32");
  EXPECT_THROW(scheme_variants("qins8-g16"), Error);
}

TEST(SimQuant, FormatsStoreWhatTheyClaim) {
  torch::manual_seed(4);
  const torch::Tensor w = torch::randn({16, 300});  // 300: a partial block of 32 and of 256
  for (const std::string& f : gguf_formats()) {
    const torch::Tensor q = simulate_gguf(f, w);
    ASSERT_EQ(q.sizes(), w.sizes()) << f;
    // At most 16 (4-bit) or 255 (8-bit) distinct values per block of 32 (Q4_K: per sub-block).
    for (int64_t b = 0; b + 32 <= 300; b += 32) {
      const int64_t distinct = std::get<0>(at::_unique(q[3].narrow(0, b, 32))).numel();
      EXPECT_LE(distinct, f == "q8_0" ? 32 : 16) << f;
    }
  }
  auto sq = [&](const std::string& f) {
    return 10 * std::log10(w.pow(2).sum().item<double>() / (w - simulate_gguf(f, w)).pow(2).sum().item<double>());
  };
  EXPECT_GT(sq("q8_0"), sq("q4_k") + 15);
  EXPECT_GT(sq("q4_k"), sq("q4_0"));
  EXPECT_GT(sq("q4_1"), sq("q4_0"));
  // Q8_0 rounds to the nearest multiple of its fp16 block scale: error at most half a step.
  const torch::Tensor x = torch::randn({1, 32});
  const float d = static_cast<float>(c10::Half(x.abs().max().item<float>() / 127.f));
  EXPECT_LE((simulate_gguf("q8_0", x) - x).abs().max().item<float>(), 0.5f * d * 1.0001f);
  EXPECT_THROW(simulate_gguf("q5_k", w), Error);
}

TEST(EvalCli, JsonAndMarkdown) {
  int st = -1;
  const std::string js = run("eval " + model_dir() + " --text " + text_file() +
                                 " --codebook projective --window 48 --max-tokens 200 --json -q",
                             &st);
  ASSERT_EQ(st, 0);
  const auto j = nlohmann::json::parse(js);
  ASSERT_EQ(j["rows"].size(), 3u);  // fp32, C=300, fitted C
  EXPECT_EQ(j["rows"][1]["name"], "projective C=300");
  const std::string md = run("eval --synthetic laplace --rows 8 --cols 256", &st);
  ASSERT_EQ(st, 0);
  EXPECT_NE(md.find("| Laplace |"), std::string::npos) << md;
  run("eval " + model_dir(), &st);
  EXPECT_EQ(st, 1);  // no --text: one clear error
}
#endif

}  // namespace
}  // namespace qins
