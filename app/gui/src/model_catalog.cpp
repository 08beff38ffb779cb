#include "model_catalog.h"

namespace {
// Phi-3-mini models have 3.82 B parameters: 7.6 GB as bf16 safetensors (the stated size; the Hub's
// listing gives the exact download size).
constexpr qint64 kPhi3MiniDownload = 7'640'000'000LL;

// Sizes after conversion, from the Phi-3-mini shapes (config.json of the three catalog repos: vocab
// 32064, hidden 3072, 32 layers, intermediate 8192) and qinsTensorBytes (the sections that
// docs/file-format.md lists for each tensor; a test holds it to the writer's files). Container
// headers, metadata and the tokenizer (under 1 MB) are left out; so is entropy coding, which the
// writer keeps only where it saves 10 % or more of a chunk, so a real file is this size or a little
// smaller.
constexpr qint64 kVocab = 32064, kHidden = 3072, kLayers = 32, kInter = 8192;
constexpr qint64 phi3MiniBytes(bool qins4) {
  const qint64 projections[4][2] = {{3 * kHidden, kHidden},  // qkv_proj 9216x3072
                                    {kHidden, kHidden},      // o_proj 3072x3072
                                    {2 * kInter, kHidden},   // gate_up_proj 16384x3072
                                    {kHidden, kInter}};      // down_proj 3072x8192
  qint64 layer = 0;
  for (const auto& p : projections) layer += qinsTensorBytes(p[0], p[1], qins4);
  // The token embedding and lm_head stay 8-bit in both (the converter's mixed-precision policy).
  const qint64 embeddingAndHead = 2 * qinsTensorBytes(kVocab, kHidden, false);
  const qint64 norms = (2 * kLayers + 1) * kHidden * 4;  // two per layer and the final one, fp32
  return kLayers * layer + embeddingAndHead + norms;
}
// 3,826,064,896 bytes; the 8-bit file of these shapes (`qins synth --like phi-3.5-mini`) is
// 3,825,704,288 bytes (docs/qins.md).
constexpr qint64 kPhi3MiniConverted = phi3MiniBytes(false);
// 2,236,491,776 bytes: 4.5 bits per weight for the 3.62 G projection weights, 8 bits for the 197 M
// of the embedding and lm_head. The synthetic file of these shapes (`qins synth --like phi-3.5-mini
// --codebook qins4 --absmax-scales`, group 16) holds exactly these raw bytes (`qins inspect --json`)
// in 2,135,203,776 bytes of file: its random weights' scale codes entropy-code well (docs/app.md).
constexpr qint64 kPhi3MiniConverted4 = phi3MiniBytes(true);
static_assert(kPhi3MiniConverted == 3'826'064'896LL && kPhi3MiniConverted4 == 2'236'491'776LL,
              "the sizes quoted in the comments above");

QStringList generalExamples() {
  return {QStringLiteral("Explain the difference between a process and a thread, with an example."),
          QStringLiteral("Write a C++ function that reverses the words in a string."),
          QStringLiteral("Give me three ideas for a weekend trip near the mountains."),
          QStringLiteral("Summarize the rules of chess in five bullet points.")};
}
}  // namespace

const std::vector<CatalogModel>& modelCatalog() {
  static const std::vector<CatalogModel> catalog{
      {QStringLiteral("microsoft/Phi-3.5-mini-instruct"), QStringLiteral("Phi-3.5-mini-instruct"),
       QStringLiteral("Microsoft's 3.8 B-parameter chat model, 128 k context, multilingual (August 2024)"),
       QStringLiteral("MIT"), kPhi3MiniDownload, kPhi3MiniConverted, generalExamples(), kPhi3MiniConverted4},
      {QStringLiteral("microsoft/Phi-3-mini-4k-instruct"), QStringLiteral("Phi-3-mini-4k-instruct"),
       QStringLiteral("Microsoft's 3.8 B-parameter chat model, 4 k context (2024)"), QStringLiteral("MIT"),
       kPhi3MiniDownload, kPhi3MiniConverted, generalExamples(), kPhi3MiniConverted4},
      {QStringLiteral("microsoft/Phi-3-mini-128k-instruct"), QStringLiteral("Phi-3-mini-128k-instruct"),
       QStringLiteral("Microsoft's 3.8 B-parameter chat model, 128 k context (2024)"), QStringLiteral("MIT"),
       kPhi3MiniDownload, kPhi3MiniConverted, generalExamples(), kPhi3MiniConverted4},
  };
  return catalog;
}

const CatalogModel* findCatalogModel(const QString& repo) {
  for (const auto& m : modelCatalog())
    if (m.repo.compare(repo, Qt::CaseInsensitive) == 0) return &m;
  return nullptr;
}

QString repoName(const QString& repo) { return repo.mid(repo.indexOf(QLatin1Char('/')) + 1); }

qint64 phi3MiniQinsBytes(bool qins4) { return qins4 ? kPhi3MiniConverted4 : kPhi3MiniConverted; }
