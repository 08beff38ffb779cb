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
  qint64 converted4Bytes = 0;  // the .qins file with 4-bit QINS-4 layer projections (about); 0 = unknown
};

// The bytes of a weight matrix [out, in] in a .qins file, as the writer stores its sections before
// any entropy coding (docs/file-format.md, "Model encodings"). qins4 = false: qins8, one code byte
// per weight, an fp32 scale per row, a 128-entry fp32 table. qins4 = true: QINS-4 at group 16 (the
// default of `qins convert --codebook qins4` and the app's): `in` padded to a multiple of 32, a
// nibble per weight and a one-byte log-scale code per 16 weights (4.5 bits per weight together),
// a 16-entry int8 table and the fp32 `top`.
constexpr qint64 qinsTensorBytes(qint64 out, qint64 in, bool qins4) {
  if (!qins4) return out * in + out * 4 + 128 * 4;
  const qint64 inPad = (in + 31) / 32 * 32;
  return out * inPad / 2 + out * inPad / 16 + 16 + 4;
}

// The .qins file of a Phi-3-mini-shaped model (vocab 32064, hidden 3072, 32 layers, intermediate
// 8192), from the sections the writer stores, before any chunk is entropy-coded: 8-bit QINS codes
// everywhere (qins4 = false), or QINS-4 group-16 layer projections with the token embedding and
// lm_head at 8 bits (qins4 = true). model_catalog.cpp says how.
qint64 phi3MiniQinsBytes(bool qins4);

// The built-in catalog, in the order the Models page shows it.
const std::vector<CatalogModel>& modelCatalog();
// The catalog entry for `repo` (case-insensitive), or nullptr.
const CatalogModel* findCatalogModel(const QString& repo);
// "Phi-3.5-mini-instruct" -> the repo's name part, used for the converted file's name.
QString repoName(const QString& repo);
