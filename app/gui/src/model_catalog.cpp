#include "model_catalog.h"

namespace {
// Phi-3-mini models have 3.82 B parameters: 7.6 GB as bf16 safetensors, about 3.8 GB as one byte
// per weight in a .qins file (the stated sizes; the Hub's listing gives the exact download size).
constexpr qint64 kPhi3MiniDownload = 7'640'000'000LL;
constexpr qint64 kPhi3MiniConverted = 3'820'000'000LL;

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
       QStringLiteral("MIT"), kPhi3MiniDownload, kPhi3MiniConverted, generalExamples()},
      {QStringLiteral("microsoft/Phi-3-mini-4k-instruct"), QStringLiteral("Phi-3-mini-4k-instruct"),
       QStringLiteral("Microsoft's 3.8 B-parameter chat model, 4 k context (2024)"), QStringLiteral("MIT"),
       kPhi3MiniDownload, kPhi3MiniConverted, generalExamples()},
      {QStringLiteral("microsoft/Phi-3-mini-128k-instruct"), QStringLiteral("Phi-3-mini-128k-instruct"),
       QStringLiteral("Microsoft's 3.8 B-parameter chat model, 128 k context (2024)"), QStringLiteral("MIT"),
       kPhi3MiniDownload, kPhi3MiniConverted, generalExamples()},
  };
  return catalog;
}

const CatalogModel* findCatalogModel(const QString& repo) {
  for (const auto& m : modelCatalog())
    if (m.repo.compare(repo, Qt::CaseInsensitive) == 0) return &m;
  return nullptr;
}

QString repoName(const QString& repo) { return repo.mid(repo.indexOf(QLatin1Char('/')) + 1); }
