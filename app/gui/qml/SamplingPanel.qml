// Sampling settings, live: a change applies to the next reply (a reply in flight keeps its own).
pragma ComponentBehavior: Bound
import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import QinsChat

ScrollView {
    id: root

    required property SamplingSettings settings
    property bool generating: false

    contentWidth: availableWidth

    ColumnLayout {
        width: root.availableWidth
        spacing: 10

        Label {
            Layout.topMargin: 14
            Layout.leftMargin: 14
            text: qsTr("Sampling")
            font.bold: true
            font.pixelSize: 16
            color: Theme.text
        }
        Label {
            Layout.fillWidth: true
            Layout.leftMargin: 14
            Layout.rightMargin: 14
            wrapMode: Text.Wrap
            color: Theme.mutedText
            text: root.generating ? qsTr("Changes apply to the next reply; this one keeps its settings.")
                                  : qsTr("Changes apply to the next reply.")
        }

        ColumnLayout {
            Layout.fillWidth: true
            Layout.leftMargin: 14
            Layout.rightMargin: 14
            spacing: 8

            LabeledSlider {
                Layout.fillWidth: true
                label: qsTr("Temperature")
                hint: qsTr("greedy")
                from: 0
                to: root.settings.maxTemperature
                stepSize: 0.05
                value: root.settings.temperature
                onMoved: (value) => root.settings.temperature = value
            }
            LabeledSlider {
                Layout.fillWidth: true
                label: qsTr("Top-p")
                from: 0.1
                to: 1
                stepSize: 0.01
                value: root.settings.topP
                onMoved: (value) => root.settings.topP = value
            }
            LabeledSlider {
                Layout.fillWidth: true
                label: qsTr("Max new tokens")
                from: root.settings.minMaxNewTokens
                to: root.settings.maxMaxNewTokens
                stepSize: 1
                decimals: 0
                value: root.settings.maxNewTokens
                onMoved: (value) => root.settings.maxNewTokens = Math.round(value)
            }
            LabeledSlider {
                Layout.fillWidth: true
                label: qsTr("Top-k")
                hint: qsTr("off")
                from: 0
                to: 200
                stepSize: 1
                decimals: 0
                value: root.settings.topK
                onMoved: (value) => root.settings.topK = Math.round(value)
            }
            LabeledSlider {
                Layout.fillWidth: true
                label: qsTr("Min-p")
                hint: qsTr("off")
                from: 0
                to: 0.5
                stepSize: 0.01
                value: root.settings.minP
                onMoved: (value) => root.settings.minP = value
            }
            LabeledSlider {
                Layout.fillWidth: true
                label: qsTr("Repetition penalty")
                hint: qsTr("off")
                from: 1
                to: 2
                stepSize: 0.01
                value: root.settings.repetitionPenalty
                onMoved: (value) => root.settings.repetitionPenalty = value
            }

            RowLayout {
                Layout.fillWidth: true
                CheckBox {
                    id: randomSeed
                    text: qsTr("Random seed")
                    checked: root.settings.randomSeed
                    Accessible.name: qsTr("Use a random seed")
                    onToggled: root.settings.randomSeed = randomSeed.checked
                }
                SpinBox {
                    id: seed
                    Layout.fillWidth: true
                    enabled: !root.settings.randomSeed
                    from: 0
                    to: 2147483647
                    editable: true
                    value: root.settings.seed
                    Accessible.name: qsTr("Seed")
                    onValueModified: root.settings.seed = seed.value
                }
            }

            Label {
                text: qsTr("System prompt")
                color: Theme.text
            }
            TextArea {
                id: systemPrompt
                Layout.fillWidth: true
                Layout.preferredHeight: Math.max(90, systemPrompt.implicitHeight)
                wrapMode: TextEdit.Wrap
                text: root.settings.systemPrompt
                placeholderText: qsTr("None")
                Accessible.name: qsTr("System prompt")
                background: Rectangle {
                    radius: 6
                    color: Theme.surface
                    border.color: systemPrompt.activeFocus ? Theme.accent : Theme.border
                }
                onTextChanged: if (systemPrompt.text !== root.settings.systemPrompt) root.settings.systemPrompt = systemPrompt.text
            }

            Button {
                Layout.alignment: Qt.AlignRight
                Layout.bottomMargin: 14
                text: qsTr("Reset to defaults")
                enabled: !root.settings.isDefault
                Accessible.name: qsTr("Reset sampling settings to defaults")
                onClicked: root.settings.resetToDefaults()
            }
        }
    }
}
