// The sampling panel's values, persisted with QSettings. Each request takes an immutable
// qins::SamplingParams snapshot, so moving a slider changes the next reply, not the one in flight.
#pragma once

#include <QObject>
#include <QString>
#include <QtQml/qqmlregistration.h>

#include "qins/runtime/engine.h"

class SamplingSettings : public QObject {
  Q_OBJECT
  QML_ELEMENT
  Q_PROPERTY(double temperature READ temperature WRITE setTemperature NOTIFY changed)
  Q_PROPERTY(double topP READ topP WRITE setTopP NOTIFY changed)
  Q_PROPERTY(int topK READ topK WRITE setTopK NOTIFY changed)
  Q_PROPERTY(double minP READ minP WRITE setMinP NOTIFY changed)
  Q_PROPERTY(double repetitionPenalty READ repetitionPenalty WRITE setRepetitionPenalty NOTIFY changed)
  Q_PROPERTY(int maxNewTokens READ maxNewTokens WRITE setMaxNewTokens NOTIFY changed)
  Q_PROPERTY(bool randomSeed READ randomSeed WRITE setRandomSeed NOTIFY changed)
  Q_PROPERTY(int seed READ seed WRITE setSeed NOTIFY changed)
  Q_PROPERTY(QString systemPrompt READ systemPrompt WRITE setSystemPrompt NOTIFY changed)
  Q_PROPERTY(bool isDefault READ isDefault NOTIFY changed)
  // Ranges for the views (one source of truth with the clamping below).
  Q_PROPERTY(double maxTemperature READ maxTemperature CONSTANT)
  Q_PROPERTY(int minMaxNewTokens READ minMaxNewTokens CONSTANT)
  Q_PROPERTY(int maxMaxNewTokens READ maxMaxNewTokens CONSTANT)
 public:
  explicit SamplingSettings(QObject* parent = nullptr);

  double temperature() const { return m_p.temperature; }
  double topP() const { return m_p.top_p; }
  int topK() const { return m_p.top_k; }
  double minP() const { return m_p.min_p; }
  double repetitionPenalty() const { return m_p.repetition_penalty; }
  int maxNewTokens() const { return m_p.max_new_tokens; }
  bool randomSeed() const { return m_p.random_seed; }
  int seed() const { return static_cast<int>(m_p.seed); }
  QString systemPrompt() const { return m_systemPrompt; }
  bool isDefault() const;

  void setTemperature(double v);         // [0, 2]; 0 = greedy
  void setTopP(double v);                // [0.1, 1]
  void setTopK(int v);                   // [0, 200]; 0 = off
  void setMinP(double v);                // [0, 0.5]; 0 = off
  void setRepetitionPenalty(double v);   // [1, 2]; 1 = off
  void setMaxNewTokens(int v);           // [50, 2048]
  void setRandomSeed(bool v);
  void setSeed(int v);                   // [0, 2^31)
  void setSystemPrompt(const QString& v);

  double maxTemperature() const { return 2.0; }
  int minMaxNewTokens() const { return 50; }
  int maxMaxNewTokens() const { return 2048; }

  Q_INVOKABLE void resetToDefaults();

  // The immutable copy a request is started with.
  qins::SamplingParams snapshot() const { return m_p; }
  static qins::SamplingParams defaults();
  static QString defaultSystemPrompt();

 Q_SIGNALS:
  void changed();

 private:
  void load();
  void save() const;
  void commit();  // save + changed()

  qins::SamplingParams m_p;
  QString m_systemPrompt;
};
