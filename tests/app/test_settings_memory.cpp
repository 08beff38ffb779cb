// SamplingSettings (ranges, persistence, reset, snapshots), MemoryMonitor, ModelManager's
// default-model lookup and load failures.
#include <gtest/gtest.h>

#include <QDir>
#include <QFile>
#include <QSettings>
#include <QSignalSpy>
#include <QTest>

#include "memory_monitor.h"
#include "model_manager.h"
#include "sampling_settings.h"
#include "test_support.h"

TEST(SamplingSettings, ClampsPersistsAndResets) {
  QSettings().remove(QStringLiteral("sampling"));
  {
    SamplingSettings s;
    EXPECT_TRUE(s.isDefault());
    QSignalSpy changed(&s, &SamplingSettings::changed);
    s.setTemperature(5.0);
    EXPECT_DOUBLE_EQ(s.temperature(), 2.0);
    s.setTopP(0.0);
    EXPECT_FLOAT_EQ(static_cast<float>(s.topP()), 0.1f);
    s.setMaxNewTokens(10);
    EXPECT_EQ(s.maxNewTokens(), 50);
    s.setMaxNewTokens(100000);
    EXPECT_EQ(s.maxNewTokens(), 2048);
    s.setTopK(40);
    s.setMinP(0.05);
    s.setRepetitionPenalty(1.1);
    s.setRandomSeed(false);
    s.setSeed(42);
    s.setSystemPrompt(QStringLiteral("Be brief."));
    EXPECT_EQ(changed.count(), 10);
    s.setTopK(40);  // unchanged: no signal, no write
    EXPECT_EQ(changed.count(), 10);
    EXPECT_FALSE(s.isDefault());
  }
  SamplingSettings again;  // a new run reads what the last one wrote
  EXPECT_DOUBLE_EQ(again.temperature(), 2.0);
  EXPECT_EQ(again.maxNewTokens(), 2048);
  EXPECT_EQ(again.topK(), 40);
  EXPECT_FLOAT_EQ(static_cast<float>(again.minP()), 0.05f);
  EXPECT_FLOAT_EQ(static_cast<float>(again.repetitionPenalty()), 1.1f);
  EXPECT_FALSE(again.randomSeed());
  EXPECT_EQ(again.seed(), 42);
  EXPECT_EQ(again.systemPrompt(), QStringLiteral("Be brief."));

  // A snapshot is a copy: later changes do not reach a request already started.
  const qins::SamplingParams before = again.snapshot();
  again.setTemperature(0.0);
  EXPECT_FLOAT_EQ(before.temperature, 2.0f);
  EXPECT_FLOAT_EQ(again.snapshot().temperature, 0.0f);
  EXPECT_EQ(before.seed, 42u);
  EXPECT_FALSE(before.random_seed);

  again.resetToDefaults();
  EXPECT_TRUE(again.isDefault());
  const qins::SamplingParams d = SamplingSettings::defaults();
  EXPECT_FLOAT_EQ(again.snapshot().temperature, d.temperature);
  EXPECT_EQ(again.snapshot().max_new_tokens, d.max_new_tokens);
  SamplingSettings afterReset;
  EXPECT_TRUE(afterReset.isDefault());
}

TEST(MemoryMonitor, ReadsTheOsAndSplitsResidentMemory) {
  MemoryMonitor monitor;
  EXPECT_LE(monitor.interval(), MemoryMonitor::kMaxIntervalMs);
  monitor.setInterval(5000);
  EXPECT_EQ(monitor.interval(), MemoryMonitor::kMaxIntervalMs);
  EXPECT_TRUE(monitor.running());
  monitor.refresh();
  EXPECT_GT(monitor.residentBytes(), 0);
  EXPECT_GT(monitor.totalBytes(), monitor.residentBytes());
  EXPECT_GT(monitor.availableBytes(), 0);
  EXPECT_EQ(monitor.weightBytes() + monitor.kvCacheBytes() + monitor.otherBytes(), monitor.residentBytes());
  // The timer keeps reading on its own.
  monitor.setInterval(50);
  const int before = monitor.readings();
  EXPECT_TRUE(QTest::qWaitFor([&] { return monitor.readings() >= before + 2; }, 10000));
}

TEST(ModelManager, FindsModelsInFoldersAndHonoursQinsModel) {
  const QString dir = makeTempDir(QStringLiteral("lookup"));
  EXPECT_TRUE(ModelManager::loadableIn(dir).isEmpty());
  EXPECT_TRUE(ModelManager::loadableIn(QDir(dir).filePath(QStringLiteral("missing"))).isEmpty());
  QFile qins(QDir(dir).filePath(QStringLiteral("demo.qins")));
  ASSERT_TRUE(qins.open(QIODevice::WriteOnly));
  qins.close();
  EXPECT_EQ(ModelManager::loadableIn(dir), QFileInfo(qins).absoluteFilePath());
  QFile config(QDir(dir).filePath(QStringLiteral("config.json")));
  ASSERT_TRUE(config.open(QIODevice::WriteOnly));
  config.close();
  EXPECT_EQ(ModelManager::loadableIn(dir), QDir(dir).absolutePath());  // a Hugging Face folder wins

  qputenv("QINS_MODEL", QDir(dir).filePath(QStringLiteral("nope")).toUtf8());
  QStringList searched;
  EXPECT_EQ(ModelManager::resolveDefaultModel(&searched), QDir(dir).filePath(QStringLiteral("nope")));
  qputenv("QINS_MODEL", dir.toUtf8());
  EXPECT_EQ(ModelManager::resolveDefaultModel(), QDir(dir).absolutePath());
  // A model on the command line comes first.
  const QString other = makeTempDir(QStringLiteral("cmdline"));
  QFile(QDir(other).filePath(QStringLiteral("m.qins"))).open(QIODevice::WriteOnly);
  ModelManager::setStartupModel(other);
  EXPECT_EQ(ModelManager::resolveDefaultModel(), QDir(other).filePath(QStringLiteral("m.qins")));
  ModelManager::setStartupModel(QString());
  qunsetenv("QINS_MODEL");
}

TEST(ModelManager, LoadFailureNamesThePathAndCancelStopsALoad) {
  ModelManager models;
  const QString bad = QDir(makeTempDir(QStringLiteral("bad"))).filePath(QStringLiteral("absent.qins"));
  models.load(bad);
  EXPECT_TRUE(models.loading());
  ASSERT_TRUE(QTest::qWaitFor([&] { return !models.loading(); }, 30000));
  EXPECT_EQ(models.status(), ModelManager::Failed);
  EXPECT_TRUE(models.message().contains(QStringLiteral("absent.qins"))) << models.message().toStdString();

  // Cancel before the worker starts: the load ends as cancelled, not failed, and loads nothing.
  models.load(fixtureModelDir());
  models.cancelLoad();
  ASSERT_TRUE(QTest::qWaitFor([&] { return !models.loading(); }, 30000));
  EXPECT_EQ(models.status(), ModelManager::NoModel);
  EXPECT_TRUE(models.message().contains(QStringLiteral("cancelled"))) << models.message().toStdString();
  EXPECT_EQ(models.parameterCount(), 0);
}
