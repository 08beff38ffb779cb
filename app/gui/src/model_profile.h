// ModelProfile: what the loaded model is, in words, and the example prompts that come with it —
// for the window's title line and the welcome screen. A model folder may carry `qins-chat.json`
// ({"title", "description", "examples"}; the built-in demo model does); a model pulled from the Hub
// is described by the catalog entry of the repo its file records; anything else gets a plain
// description from its ModelInfo and general prompts. Also says whether to offer Phi-3.5-mini.
#pragma once

#include <QObject>
#include <QPointer>
#include <QStringList>
#include <QtQml/qqmlregistration.h>

#include "model_manager.h"

class ModelProfile : public QObject {
  Q_OBJECT
  QML_ELEMENT
  Q_PROPERTY(ModelManager* modelManager READ modelManager WRITE setModelManager NOTIFY modelManagerChanged)
  Q_PROPERTY(QString title READ title NOTIFY changed)
  Q_PROPERTY(QString description READ description NOTIFY changed)
  Q_PROPERTY(QStringList examples READ examples NOTIFY changed)
  // True unless a catalog model (Phi-3 family) is loaded: the welcome screen offers Phi-3.5-mini.
  Q_PROPERTY(bool offerDownload READ offerDownload NOTIFY changed)
  Q_PROPERTY(QString offerRepo READ offerRepo CONSTANT)
  Q_PROPERTY(QString offerText READ offerText CONSTANT)
 public:
  explicit ModelProfile(QObject* parent = nullptr);

  ModelManager* modelManager() const { return m_models; }
  void setModelManager(ModelManager* m);
  QString title() const { return m_title; }
  QString description() const { return m_description; }
  QStringList examples() const { return m_examples; }
  bool offerDownload() const { return m_offer; }
  QString offerRepo() const;
  QString offerText() const;

 Q_SIGNALS:
  void modelManagerChanged();
  void changed();

 private:
  void update();
  QPointer<ModelManager> m_models;
  QString m_title, m_description;
  QStringList m_examples;
  bool m_offer = true;
};
