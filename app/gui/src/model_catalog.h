// The models the app offers to download (the Phi-3 family chat models it is built for), with what a
// user needs to decide: download size, size after conversion, licence, and example prompts.
// Plain data, no Qt objects: ModelDownloads lists it, ModelProfile describes the loaded model by it.
#pragma once

#include <QString>
#include <QStringList>

#include <vector>

struct CatalogModel {
  QString repo;           // "microsoft/Phi-3.5-mini-instruct"
  QString title;          // "Phi-3.5-mini-instruct"
  QString description;    // one line: what it is
  QString licence;        // "MIT"
  qint64 downloadBytes;   // the safetensors + tokenizer files (bf16 weights); 0 = unknown
  qint64 convertedBytes;  // the .qins file at 8 bits per weight (about); 0 = unknown
  QStringList examples;   // example prompts for the welcome screen
};

// The built-in catalog, in the order the Models page shows it.
const std::vector<CatalogModel>& modelCatalog();
// The catalog entry for `repo` (case-insensitive), or nullptr.
const CatalogModel* findCatalogModel(const QString& repo);
// "Phi-3.5-mini-instruct" -> the repo's name part, used for the converted file's name.
QString repoName(const QString& repo);
