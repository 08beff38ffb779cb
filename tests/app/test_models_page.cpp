// The Models page's C++ side against the fake Hub of tests/io (loopback, cpp-httplib): the download
// worker and its progress model, pause (partial files kept) and resume after a "restart", cancel
// (partial files removed), a gated repo's message, network down, a full disk, and download ->
// convert -> the model in the local list -> it loads and the window describes it. Offline.
#include <gtest/gtest.h>

#include <QDir>
#include <QDirIterator>
#include <QFile>
#include <QSignalSpy>
#include <QTest>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "model_catalog.h"
#include "model_downloads.h"
#include "model_library.h"
#include "model_manager.h"
#include "model_profile.h"
#include "test_support.h"

#include "qins/runtime/engine.h"
#include "qins/tools/inspect.h"

#ifdef QINS_HAVE_FAKE_HUB
#include <nlohmann/json.hpp>

#include "fake_hub.h"
#endif

namespace {

QString find_file(const QString& dir, const QString& pattern) {
  QDirIterator it(dir, {pattern}, QDir::Files, QDirIterator::Subdirectories);
  return it.hasNext() ? it.next() : QString();
}

// The stalled model.safetensors' partial file, once the fake Hub has sent the half it sends before
// going silent. (Waiting for any "*.incomplete" raced: a small file's partial file could be seen
// and renamed before the big one started, and the pause then found nothing to keep.)
QString stalled_part(const QString& cache, const qins_test::FakeHub& hub) {
  const auto half = static_cast<qint64>(hub.file("model.safetensors").content.size() / 2);
  QDirIterator it(cache, {QStringLiteral("*.incomplete")}, QDir::Files, QDirIterator::Subdirectories);
  while (it.hasNext()) {
    const QString p = it.next();
    if (QFileInfo(p).size() == half) return p;
  }
  return {};
}

}  // namespace

TEST(ModelsPage, CatalogListsThePhi3FamilyWithSizesLicenceAndState) {
  ModelDownloads d;
  d.setCacheDir(makeTempDir(QStringLiteral("cache")));
  d.setModelsDir(makeTempDir(QStringLiteral("models")));
  ASSERT_GE(d.rowCount(), 3);
  const QStringList repos{QStringLiteral("microsoft/Phi-3.5-mini-instruct"), QStringLiteral("microsoft/Phi-3-mini-4k-instruct"),
                          QStringLiteral("microsoft/Phi-3-mini-128k-instruct")};
  for (int i = 0; i < 3; ++i) {
    const QModelIndex ix = d.index(i);
    EXPECT_EQ(d.data(ix, ModelDownloads::RepoRole).toString(), repos[i]);
    EXPECT_EQ(d.data(ix, ModelDownloads::LicenceRole).toString(), QStringLiteral("MIT"));
    EXPECT_EQ(d.data(ix, ModelDownloads::StateRole).toInt(), ModelDownloads::NotDownloaded);
  }
  const QString sizes = d.data(d.index(0), ModelDownloads::SizesTextRole).toString();
  EXPECT_TRUE(sizes.contains(QStringLiteral("7.64 GB download"))) << sizes.toStdString();
  EXPECT_TRUE(sizes.contains(QStringLiteral("3.83 GB after conversion to 8-bit QINS"))) << sizes.toStdString();

  // Any repo id can be added; a malformed one is refused with a reason.
  EXPECT_EQ(d.addRepo(QStringLiteral("not a repo")), -1);
  EXPECT_FALSE(d.addError().isEmpty());
  const int row = d.addRepo(QStringLiteral("someone/some-model@v2"));
  ASSERT_GE(row, 3);
  EXPECT_TRUE(d.addError().isEmpty());
  EXPECT_EQ(d.highlightedRow(), row);
  EXPECT_EQ(d.addRepo(QStringLiteral("someone/some-model")), row);  // no duplicate
}

TEST(ModelsPage, EachModelOffersEightAndFourBitWithTheirSizesAndRemembersTheChoice) {
  const QString cache = makeTempDir(QStringLiteral("cache-precision"));
  const QString modelsDir = makeTempDir(QStringLiteral("models-precision"));
  const QString repo = QStringLiteral("microsoft/Phi-3-mini-4k-instruct");
  {
    ModelDownloads d;
    d.setCacheDir(cache);
    d.setModelsDir(modelsDir);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(d.setPrecision(d.data(d.index(i), ModelDownloads::RepoRole).toString(), ModelDownloads::Bits8));
    const int row = d.rowOf(repo);
    ASSERT_GE(row, 0);
    const QModelIndex ix = d.index(row);
    // 8-bit is the default; both options carry their size after conversion (Phi-3-mini shapes).
    EXPECT_EQ(d.data(ix, ModelDownloads::PrecisionRole).toInt(), ModelDownloads::Bits8);
    const QStringList options = d.data(ix, ModelDownloads::PrecisionOptionsRole).toStringList();
    ASSERT_EQ(options.size(), 2);
    EXPECT_TRUE(options[0].startsWith(QStringLiteral("8-bit QINS · about 3.83 GB"))) << options[0].toStdString();
    EXPECT_TRUE(options[1].startsWith(QStringLiteral("4-bit QINS-4 · about 2.24 GB"))) << options[1].toStdString();
    EXPECT_FALSE(options[0].contains(QStringLiteral("converted")));
    QString sizes = d.data(ix, ModelDownloads::SizesTextRole).toString();
    EXPECT_EQ(sizes, QStringLiteral("7.64 GB download · about 3.83 GB after conversion to 8-bit QINS"));

    QSignalSpy changed(&d, &QAbstractItemModel::dataChanged);
    EXPECT_TRUE(d.setPrecision(repo, ModelDownloads::Bits4));
    EXPECT_GE(changed.count(), 1);
    EXPECT_EQ(d.precisionOf(repo), ModelDownloads::Bits4);
    sizes = d.data(ix, ModelDownloads::SizesTextRole).toString();
    EXPECT_EQ(sizes, QStringLiteral("7.64 GB download · about 2.24 GB after conversion to 4-bit QINS-4"));
    EXPECT_EQ(d.data(ix, ModelDownloads::StateRole).toInt(), ModelDownloads::NotDownloaded);
    EXPECT_FALSE(d.setPrecision(repo, 2));
    EXPECT_FALSE(d.setPrecision(QStringLiteral("nobody/nothing"), ModelDownloads::Bits4));
  }
  // Remembered per model: a new list (the app restarted) has 4 bits for that model only.
  ModelDownloads again;
  EXPECT_EQ(again.precisionOf(repo), ModelDownloads::Bits4);
  EXPECT_EQ(again.precisionOf(QStringLiteral("microsoft/Phi-3.5-mini-instruct")), ModelDownloads::Bits8);
  EXPECT_TRUE(again.setPrecision(repo, ModelDownloads::Bits8));  // as the other tests expect it
}

TEST(ModelsPage, ProfileDescribesAFolderByItsOwnFileAndOffersPhi35) {
  const QString dir = makeTempDir(QStringLiteral("described"));
  for (const QFileInfo& f : QDir(fixtureModelDir()).entryInfoList(QDir::Files))
    QFile::copy(f.absoluteFilePath(), QDir(dir).filePath(f.fileName()));
  QFile json(QDir(dir).filePath(QStringLiteral("qins-chat.json")));
  ASSERT_TRUE(json.open(QIODevice::WriteOnly));
  json.write(R"({"title": "Tiny", "description": "a tiny test model", "examples": ["What does lantern mean?"]})");
  json.close();

  ModelManager models;
  ModelProfile profile;
  profile.setModelManager(&models);
  EXPECT_TRUE(profile.offerDownload());
  EXPECT_EQ(profile.offerText(), QStringLiteral("Get Phi-3.5-mini — 7.6 GB download, 3.8 GB after conversion"));
  models.load(dir);
  ASSERT_TRUE(QTest::qWaitFor([&] { return !models.loading(); }, 120000));
  ASSERT_TRUE(models.ready()) << models.message().toStdString();
  EXPECT_EQ(profile.title(), QStringLiteral("Tiny"));
  EXPECT_EQ(profile.description(), QStringLiteral("a tiny test model"));
  EXPECT_EQ(profile.examples(), QStringList{QStringLiteral("What does lantern mean?")});
  EXPECT_TRUE(profile.offerDownload());
}

#ifdef QINS_HAVE_FAKE_HUB

namespace {

std::string readAll(const QString& path) {
  std::ifstream in(path.toStdString(), std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The fixture model's folder as a Hub repo (safetensors served as LFS files, from the CDN port).
std::vector<qins_test::FakeFile> fixtureRepo() {
  std::vector<qins_test::FakeFile> files;
  for (const QFileInfo& f : QDir(fixtureModelDir()).entryInfoList(QDir::Files))
    files.push_back({f.fileName().toStdString(), readAll(f.absoluteFilePath()), f.suffix() == QLatin1String("safetensors")});
  return files;
}

qins::hub::HubOptions fastOptions(const qins_test::FakeHub& hub) {
  qins::hub::HubOptions o;
  o.endpoint = hub.endpoint();
  o.token = "";
  o.stall_timeout_s = 600;  // stalls in these tests end by pause/cancel, not by the timeout
  o.max_retries = 1;
  o.backoff_initial_s = 0.01;
  o.backoff_max_s = 0.05;
  return o;
}

struct PageRig {
  QString cache = makeTempDir(QStringLiteral("hf-cache"));
  QString models = makeTempDir(QStringLiteral("qins-models"));
  std::unique_ptr<ModelLibrary> library = std::make_unique<ModelLibrary>();
  std::unique_ptr<ModelDownloads> downloads;
  explicit PageRig(const qins_test::FakeHub& hub) {
    library->setCacheDir(cache);
    library->setModelsDir(models);
    restart(hub);
  }
  // A new ModelDownloads on the same folders: what the app sees after a restart.
  void restart(const qins_test::FakeHub& hub) {
    downloads.reset();
    downloads = std::make_unique<ModelDownloads>();
    downloads->setCacheDir(cache);
    downloads->setModelsDir(models);
    downloads->setHubOptions(fastOptions(hub));
    downloads->setLibrary(library.get());
  }
  bool waitIdle() { return QTest::qWaitFor([&] { return !downloads->busy(); }, 120000); }
};

const QString kRepo = QStringLiteral("microsoft/Phi-3.5-mini-instruct");

}  // namespace

TEST(ModelsPage, DownloadConvertsListsAndLoadsTheModel) {
  qins_test::FakeHub hub(kRepo.toStdString(), fixtureRepo());
  PageRig s(hub);
  ModelDownloads& d = *s.downloads;
  const int row = d.rowOf(kRepo);
  ASSERT_EQ(row, 0);
  // The progress model: every change of the row is recorded with its state and numbers.
  QList<int> states;
  bool sawBytes = false;
  QObject::connect(&d, &QAbstractItemModel::dataChanged, [&](const QModelIndex& a, const QModelIndex& b) {
    if (a.row() > row || b.row() < row) return;
    states << d.data(d.index(row), ModelDownloads::StateRole).toInt();
    const QString text = d.data(d.index(row), ModelDownloads::ProgressTextRole).toString();
    if (states.last() == ModelDownloads::Downloading && text.contains(QStringLiteral(" of "))) sawBytes = true;
  });
  QSignalSpy converted(&d, &ModelDownloads::converted);
  ASSERT_TRUE(d.download(kRepo));
  EXPECT_TRUE(d.busy());
  EXPECT_FALSE(d.download(kRepo));  // one job at a time
  ASSERT_TRUE(s.waitIdle());
  ASSERT_EQ(d.stateOf(kRepo), ModelDownloads::Converted) << d.errorOf(kRepo).toStdString();
  EXPECT_TRUE(states.contains(ModelDownloads::Downloading));
  EXPECT_TRUE(states.contains(ModelDownloads::Converting));
  EXPECT_TRUE(sawBytes);
  ASSERT_EQ(converted.count(), 1);
  const QString qins = converted.at(0).at(1).toString();
  EXPECT_EQ(qins, QDir(s.models).filePath(QStringLiteral("Phi-3.5-mini-instruct-projective.qins")));
  EXPECT_TRUE(QFileInfo(qins).isFile());

  // The local list: the .qins (origin: the repo at the commit) and the downloaded folder.
  ModelLibrary& lib = *s.library;
  const int q = lib.rowOfPath(qins);
  ASSERT_GE(q, 0);
  EXPECT_EQ(lib.data(lib.index(q), ModelLibrary::CodebookRole).toString(), QStringLiteral("projective"));
  EXPECT_TRUE(lib.data(lib.index(q), ModelLibrary::OriginRole).toString().startsWith(kRepo + QStringLiteral(" at cccccc")));
  EXPECT_GT(lib.data(lib.index(q), ModelLibrary::SizeRole).toLongLong(), 0);
  bool folder = false;
  for (int i = 0; i < lib.rowCount(); ++i)
    folder |= lib.data(lib.index(i), ModelLibrary::KindRole).toString() == QLatin1String("folder") &&
              lib.data(lib.index(i), ModelLibrary::NameRole).toString() == kRepo;
  EXPECT_TRUE(folder);

  // It loads, and the window then describes it as the catalog model (no more Phi-3.5 offer).
  ModelManager models;
  ModelProfile profile;
  profile.setModelManager(&models);
  models.load(qins);
  ASSERT_TRUE(QTest::qWaitFor([&] { return !models.loading(); }, 120000));
  ASSERT_TRUE(models.ready()) << models.message().toStdString();
  EXPECT_EQ(profile.title(), QStringLiteral("Phi-3.5-mini-instruct"));
  EXPECT_FALSE(profile.offerDownload());

  // A fresh list (after a restart) reads the same state from the disk; Delete removes the file.
  s.restart(hub);
  EXPECT_EQ(s.downloads->stateOf(kRepo), ModelDownloads::Converted);
  EXPECT_TRUE(lib.remove(qins));
  EXPECT_FALSE(QFileInfo::exists(qins));
  EXPECT_LT(lib.rowOfPath(qins), 0);
}

TEST(ModelsPage, PauseKeepsTheBytesAndResumeAfterARestartFinishes) {
  qins_test::FakeHub hub(kRepo.toStdString(), fixtureRepo());
  hub.fault_file = "model.safetensors";
  hub.stall = 1;  // half the file, then silence until paused
  PageRig s(hub);
  ASSERT_TRUE(s.downloads->download(kRepo));
  // The GUI thread keeps running while the worker waits on the stalled transfer.
  ASSERT_TRUE(QTest::qWaitFor([&] { return !stalled_part(s.cache, hub).isEmpty(); }, 60000));
  EXPECT_EQ(s.downloads->stateOf(kRepo), ModelDownloads::Downloading);
  s.downloads->pause();
  ASSERT_TRUE(s.waitIdle());
  EXPECT_EQ(s.downloads->stateOf(kRepo), ModelDownloads::Paused);
  EXPECT_TRUE(s.downloads->errorOf(kRepo).isEmpty());
  const QString part = find_file(s.cache, QStringLiteral("*.incomplete"));
  ASSERT_FALSE(part.isEmpty());
  const qint64 kept = QFileInfo(part).size();
  EXPECT_GT(kept, 0);

  // "Restart": a new list finds the paused download on the disk; Resume asks for the rest only.
  s.restart(hub);
  EXPECT_EQ(s.downloads->stateOf(kRepo), ModelDownloads::Paused);
  EXPECT_TRUE(s.downloads->data(s.downloads->index(0), ModelDownloads::StateTextRole).toString().startsWith(QStringLiteral("Paused")));
  ASSERT_TRUE(s.downloads->download(kRepo));
  ASSERT_TRUE(s.waitIdle());
  ASSERT_EQ(s.downloads->stateOf(kRepo), ModelDownloads::Converted) << s.downloads->errorOf(kRepo).toStdString();
  const auto gets = hub.data_gets("model.safetensors");
  ASSERT_GE(gets.size(), 2u);
  EXPECT_EQ(gets.back().range, "bytes=" + std::to_string(kept) + "-");
  EXPECT_TRUE(find_file(s.cache, QStringLiteral("*.incomplete")).isEmpty());
}

TEST(ModelsPage, CancelRemovesThePartialFiles) {
  qins_test::FakeHub hub(kRepo.toStdString(), fixtureRepo());
  hub.fault_file = "model.safetensors";
  hub.stall = 1;
  PageRig s(hub);
  ASSERT_TRUE(s.downloads->download(kRepo));
  ASSERT_TRUE(QTest::qWaitFor([&] { return !stalled_part(s.cache, hub).isEmpty(); }, 60000));
  s.downloads->cancel();
  ASSERT_TRUE(s.waitIdle());
  EXPECT_TRUE(find_file(s.cache, QStringLiteral("*.incomplete")).isEmpty());
  EXPECT_NE(s.downloads->stateOf(kRepo), ModelDownloads::Downloading);
  EXPECT_TRUE(s.downloads->errorOf(kRepo).isEmpty());
  EXPECT_TRUE(QDir(s.models).isEmpty());
}

TEST(ModelsPage, GatedRepoSaysHowToSetAToken) {
  qins_test::FakeHub hub(kRepo.toStdString(), fixtureRepo());
  hub.gated = true;
  PageRig s(hub);
  ASSERT_TRUE(s.downloads->download(kRepo));
  ASSERT_TRUE(s.waitIdle());
  const QString e = s.downloads->errorOf(kRepo);
  EXPECT_TRUE(e.contains(QStringLiteral("gated"))) << e.toStdString();
  EXPECT_TRUE(e.contains(QStringLiteral("HF_TOKEN"))) << e.toStdString();
  EXPECT_TRUE(e.contains(QStringLiteral("~/.cache/huggingface/token"))) << e.toStdString();
  EXPECT_NE(s.downloads->stateOf(kRepo), ModelDownloads::Converted);  // what was fetched before the 401 is kept
  EXPECT_EQ(s.downloads->data(s.downloads->index(0), ModelDownloads::ErrorRole).toString(), e);
}

TEST(ModelsPage, NetworkDownAndFullDiskGiveClearMessagesAndKeepWhatWasThere) {
  qins_test::FakeHub hub(kRepo.toStdString(), fixtureRepo());
  PageRig s(hub);
  auto o = fastOptions(hub);
  o.endpoint = "http://127.0.0.1:1";  // nothing listens there
  o.max_retries = 0;
  s.downloads->setHubOptions(o);
  ASSERT_TRUE(s.downloads->download(kRepo));
  ASSERT_TRUE(s.waitIdle());
  QString e = s.downloads->errorOf(kRepo);
  EXPECT_TRUE(e.contains(QStringLiteral("could not be reached"))) << e.toStdString();
  EXPECT_TRUE(e.contains(QStringLiteral("Resume"))) << e.toStdString();

  o = fastOptions(hub);
  o.free_space_override = 1000;
  s.downloads->setHubOptions(o);
  ASSERT_TRUE(s.downloads->download(kRepo));
  ASSERT_TRUE(s.waitIdle());
  e = s.downloads->errorOf(kRepo);
  EXPECT_TRUE(e.contains(QStringLiteral("Not enough disk space"))) << e.toStdString();
  EXPECT_NE(s.downloads->stateOf(kRepo), ModelDownloads::Converted);
}

TEST(ModelsPage, SizeFormulaMatchesWhatTheWriterStoresForEachTensor) {
  // The Phi-3-mini figures the page shows (model_catalog.cpp)...
  EXPECT_EQ(phi3MiniQinsBytes(false), 3'826'064'896LL);
  EXPECT_EQ(phi3MiniQinsBytes(true), 2'236'491'776LL);
  // ...come from qinsTensorBytes, held here to the sections of real files the converter wrote from
  // the fixture model: every qins8 and qins4 tensor, at both precisions.
  for (const char* codebook : {"projective", "qins4"}) {
    const QString file = QDir(makeTempDir(QStringLiteral("sizes"))).filePath(QStringLiteral("m-%1.qins").arg(QLatin1String(codebook)));
    qins::convert_model(fixtureModelDir().toStdString(), file.toStdString(), codebook);
    const qins::ModelReport report = qins::inspect_model(file.toStdString(), false);
    const auto j = nlohmann::json::parse(report.json);
    int matrices = 0, four = 0;
    for (const auto& t : j["tensors"]) {
      const std::string enc = t["encoding"];
      if (enc != "qins8" && enc != "qins4") continue;
      ASSERT_EQ(t["shape"].size(), 2u) << t.dump();
      EXPECT_EQ(t["raw_bytes"].get<qint64>(), qinsTensorBytes(t["shape"][0], t["shape"][1], enc == "qins4")) << t.dump();
      ++matrices;
      four += enc == "qins4";
    }
    EXPECT_GT(matrices, 4) << codebook;
    if (std::string(codebook) == "qins4") EXPECT_GT(four, 0);
    else EXPECT_EQ(four, 0);
  }
}

// The projections' encodings in a converted file, read back through `qins inspect`'s report:
// {tensor name: code} ("qins4-g16", "projective", ...).
std::map<std::string, std::string> tensorCodes(const QString& file) {
  const qins::ModelReport report = qins::inspect_model(file.toStdString(), true);
  EXPECT_TRUE(report.ok) << report.text;
  std::map<std::string, std::string> codes;
  const auto j = nlohmann::json::parse(report.json);
  for (const auto& t : j["tensors"]) codes[t["name"].get<std::string>()] = t["code"].get<std::string>();
  return codes;
}

TEST(ModelsPage, ConvertsAtFourBitsKeepsBothPrecisionsAndLoadsTheChosenOne) {
  qins_test::FakeHub hub(kRepo.toStdString(), fixtureRepo());
  PageRig s(hub);
  ModelDownloads& d = *s.downloads;
  const int row = d.rowOf(kRepo);
  ASSERT_TRUE(d.setPrecision(kRepo, ModelDownloads::Bits4));
  QSignalSpy converted(&d, &ModelDownloads::converted);
  ASSERT_TRUE(d.download(kRepo));
  EXPECT_FALSE(d.setPrecision(kRepo, ModelDownloads::Bits8));  // not while its job runs
  ASSERT_TRUE(s.waitIdle());
  ASSERT_EQ(d.stateOf(kRepo), ModelDownloads::Converted) << d.errorOf(kRepo).toStdString();
  ASSERT_EQ(converted.count(), 1);
  const QString q4 = converted.at(0).at(1).toString();
  EXPECT_EQ(q4, QDir(s.models).filePath(QStringLiteral("Phi-3.5-mini-instruct-qins4.qins")));
  EXPECT_EQ(d.qinsPathOf(kRepo, ModelDownloads::Bits4), q4);
  EXPECT_TRUE(d.qinsPathOf(kRepo, ModelDownloads::Bits8).isEmpty());
  EXPECT_EQ(d.data(d.index(row), ModelDownloads::QinsPathRole).toString(), q4);
  // The file: the layer projections are QINS-4 (group 16), the embedding and lm_head 8-bit.
  int projections = 0;
  for (const auto& [name, code] : tensorCodes(q4)) {
    if (name.find("_proj.") != std::string::npos) {
      EXPECT_EQ(code, "qins4-g16") << name;
      ++projections;
    } else if (name.find("embed_tokens") != std::string::npos || name.find("lm_head") != std::string::npos) {
      EXPECT_EQ(code, "projective") << name;
    }
  }
  EXPECT_GT(projections, 0);
  EXPECT_EQ(s.library->data(s.library->index(s.library->rowOfPath(q4)), ModelLibrary::CodebookRole).toString(),
            QStringLiteral("qins4"));
  QStringList options = d.data(d.index(row), ModelDownloads::PrecisionOptionsRole).toStringList();
  EXPECT_FALSE(options[0].contains(QStringLiteral("converted")));
  EXPECT_TRUE(options[1].endsWith(QStringLiteral(" · converted"))) << options[1].toStdString();

  // Switching to 8 bits: the download is there, not this conversion; Convert makes the second file
  // without downloading the weights again.
  const size_t weightGets = hub.data_gets("model.safetensors").size();
  ASSERT_TRUE(d.setPrecision(kRepo, ModelDownloads::Bits8));
  EXPECT_EQ(d.stateOf(kRepo), ModelDownloads::Downloaded);
  EXPECT_TRUE(d.data(d.index(row), ModelDownloads::QinsPathRole).toString().isEmpty());
  ASSERT_TRUE(d.download(kRepo));
  ASSERT_TRUE(s.waitIdle());
  ASSERT_EQ(d.stateOf(kRepo), ModelDownloads::Converted) << d.errorOf(kRepo).toStdString();
  EXPECT_EQ(hub.data_gets("model.safetensors").size(), weightGets);
  const QString q8 = d.qinsPathOf(kRepo, ModelDownloads::Bits8);
  EXPECT_EQ(q8, QDir(s.models).filePath(QStringLiteral("Phi-3.5-mini-instruct-projective.qins")));
  EXPECT_EQ(tensorCodes(q8).at("model.layers.0.mlp.down_proj.weight"), "projective");
  EXPECT_TRUE(QFileInfo(q4).isFile());

  // After a restart both files show as converted, the choice (8 bits) is remembered, and choosing
  // 4 bits again makes Load use the QINS-4 file, which loads.
  s.restart(hub);
  ModelDownloads& d2 = *s.downloads;
  EXPECT_EQ(d2.precisionOf(kRepo), ModelDownloads::Bits8);
  EXPECT_EQ(d2.data(d2.index(row), ModelDownloads::QinsPathRole).toString(), q8);
  options = d2.data(d2.index(row), ModelDownloads::PrecisionOptionsRole).toStringList();
  EXPECT_TRUE(options[0].endsWith(QStringLiteral(" · converted"))) << options[0].toStdString();
  EXPECT_TRUE(options[1].endsWith(QStringLiteral(" · converted"))) << options[1].toStdString();
  ASSERT_TRUE(d2.setPrecision(kRepo, ModelDownloads::Bits4));
  EXPECT_EQ(d2.stateOf(kRepo), ModelDownloads::Converted);
  EXPECT_EQ(d2.data(d2.index(row), ModelDownloads::QinsPathRole).toString(), q4);
  EXPECT_TRUE(d2.data(d2.index(row), ModelDownloads::StateTextRole).toString().contains(QStringLiteral("4-bit QINS-4")));
  ModelManager models;
  models.load(d2.data(d2.index(row), ModelDownloads::QinsPathRole).toString());
  ASSERT_TRUE(QTest::qWaitFor([&] { return !models.loading(); }, 120000));
  ASSERT_TRUE(models.ready()) << models.message().toStdString();
  EXPECT_EQ(models.modelPath(), q4);
  EXPECT_TRUE(d2.setPrecision(kRepo, ModelDownloads::Bits8));  // as the other tests expect it
}

#endif  // QINS_HAVE_FAKE_HUB
