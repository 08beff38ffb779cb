#include "model_profile.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>

#include "model_catalog.h"
#include "qins/io/hub.h"
#include "theme.h"

ModelProfile::ModelProfile(QObject* parent) : QObject(parent) { update(); }

void ModelProfile::setModelManager(ModelManager* m) {
  if (m == m_models) return;
  if (m_models) disconnect(m_models, nullptr, this, nullptr);
  m_models = m;
  if (m_models) {
    connect(m_models, &ModelManager::infoChanged, this, &ModelProfile::update);
    connect(m_models, &ModelManager::statusChanged, this, &ModelProfile::update);
  }
  Q_EMIT modelManagerChanged();
  update();
}

QString ModelProfile::offerRepo() const { return modelCatalog().front().repo; }

QString ModelProfile::offerText() const {
  const CatalogModel& m = modelCatalog().front();
  const auto gb = [](qint64 n) { return QString::number(static_cast<double>(n) / 1e9, 'f', 1) + QStringLiteral(" GB"); };
  return tr("Get Phi-3.5-mini — %1 download, %2 after conversion").arg(gb(m.downloadBytes), gb(m.convertedBytes));
}

void ModelProfile::update() {
  QString title, description;
  QStringList examples;
  const CatalogModel* catalog = nullptr;
  if (m_models && m_models->ready()) {
    const qins::ModelInfo& info = m_models->info();
    const QString loaded = m_models->loadingPath();
    const QFileInfo fi(loaded);
    // 1. A folder's own description.
    QFile own(QDir(fi.isDir() ? loaded : fi.absolutePath()).filePath(QStringLiteral("qins-chat.json")));
    if (own.open(QIODevice::ReadOnly)) {
      const QJsonObject o = QJsonDocument::fromJson(own.readAll()).object();
      title = o.value(QStringLiteral("title")).toString();
      description = o.value(QStringLiteral("description")).toString();
      for (const auto& v : o.value(QStringLiteral("examples")).toArray()) examples << v.toString();
    }
    // 2. A file pulled from the Hub: the catalog entry of its repo.
    if (title.isEmpty() && fi.isFile()) {
      try {
        const auto file = qins::read_model_file_info(loaded.toStdString());
        catalog = findCatalogModel(QString::fromStdString(file.origin_repo));
      } catch (const std::exception&) {
      }
      if (!catalog) catalog = findCatalogModel(QStringLiteral("microsoft/") + QString::fromStdString(info.name));
      if (catalog) {
        title = catalog->title;
        description = catalog->description;
        examples = catalog->examples;
      }
    }
    // 3. What the engine says.
    if (title.isEmpty()) title = QString::fromStdString(info.name);
    if (description.isEmpty())
      description = tr("a %1-parameter Phi-3-architecture model (%2)")
                        .arg(Format::count(info.n_params),
                             info.codebook == "none" ? QString::fromStdString(info.format)
                                                     : tr("%1 codes").arg(QString::fromStdString(info.codebook)));
  }
  if (examples.isEmpty()) examples = modelCatalog().front().examples;
  const bool offer = catalog == nullptr;
  if (title == m_title && description == m_description && examples == m_examples && offer == m_offer) return;
  m_title = title;
  m_description = description;
  m_examples = examples;
  m_offer = offer;
  Q_EMIT changed();
}
