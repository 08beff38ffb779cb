// Memory gauge, the latest reply's speed, and what the loaded model is.
pragma ComponentBehavior: Bound
import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import QinsChat

ScrollView {
    id: root

    required property ModelManager models
    required property ChatController controller
    required property MemoryMonitor memory

    contentWidth: availableWidth

    component Heading: Label {
        Layout.topMargin: 10
        font.bold: true
        font.pixelSize: 16
        color: Theme.text
    }
    component Row2: RowLayout {
        id: row
        required property string name
        required property string value
        Layout.fillWidth: true
        Label {
            text: row.name
            color: Theme.mutedText
        }
        Label {
            Layout.fillWidth: true
            horizontalAlignment: Text.AlignRight
            text: row.value
            color: Theme.text
            elide: Text.ElideMiddle
            font.family: Theme.monoFamily
        }
    }

    ColumnLayout {
        x: 14
        width: root.availableWidth - 28
        spacing: 6

        Heading {
            text: qsTr("Memory")
        }
        MemoryGauge {
            Layout.fillWidth: true
            memory: root.memory
        }

        Heading {
            text: qsTr("Last reply")
        }
        Label {
            visible: !root.controller.hasStats
            text: qsTr("No reply yet.")
            color: Theme.mutedText
        }
        ColumnLayout {
            Layout.fillWidth: true
            visible: root.controller.hasStats
            spacing: 4
            Row2 {
                name: qsTr("Speed")
                value: qsTr("%1 tokens/s").arg(root.controller.tokensPerSecond.toFixed(1))
            }
            Row2 {
                name: qsTr("Time to first token")
                value: Format.seconds(root.controller.timeToFirstToken)
            }
            Row2 {
                name: qsTr("Prompt tokens")
                value: root.controller.generating && root.controller.promptTokens === 0
                       ? "…" : qsTr("%1 (%2 new)").arg(root.controller.promptTokens).arg(root.controller.prefilledTokens)
            }
            Row2 {
                name: qsTr("Prompt speed")
                value: root.controller.prefillTokensPerSecond > 0
                       ? qsTr("%1 tokens/s").arg(root.controller.prefillTokensPerSecond.toFixed(0)) : "…"
            }
            Row2 {
                name: qsTr("Generated tokens")
                value: String(root.controller.generatedTokens)
            }
        }

        Heading {
            text: qsTr("Model")
        }
        Label {
            visible: !root.models.ready
            Layout.fillWidth: true
            wrapMode: Text.Wrap
            text: root.models.loading ? qsTr("Loading…") : qsTr("No model loaded.")
            color: Theme.mutedText
        }
        ColumnLayout {
            Layout.fillWidth: true
            visible: root.models.ready
            spacing: 4
            Row2 {
                name: qsTr("Name")
                value: root.models.modelName
            }
            Row2 {
                name: qsTr("Parameters")
                value: Format.count(root.models.parameterCount)
            }
            Row2 {
                name: qsTr("Format")
                value: root.models.format
            }
            Row2 {
                name: qsTr("Codebook")
                value: root.models.codebook
            }
            Row2 {
                name: qsTr("File size")
                value: Format.bytes(root.models.fileBytes)
            }
            Row2 {
                name: qsTr("File vs. bf16")
                value: root.models.compressionRatio <= 0 ? "—"
                       : Math.abs(root.models.compressionRatio - 1) < 0.005 ? qsTr("same size")
                       : root.models.compressionRatio >= 1 ? qsTr("%1× smaller").arg(root.models.compressionRatio.toFixed(2))
                                                           : qsTr("%1× larger").arg((1 / root.models.compressionRatio).toFixed(2))
            }
            Row2 {
                name: qsTr("Weights in memory")
                value: Format.bytes(root.models.weightBytes)
            }
            Row2 {
                name: qsTr("Context")
                value: qsTr("%1 tokens (KV %2)").arg(root.models.loadedContextLength).arg(Format.bytes(root.models.kvCacheBytes))
            }
            Row2 {
                name: qsTr("Load time")
                value: Format.seconds(root.models.loadSeconds)
            }
            Row2 {
                name: qsTr("Device")
                value: root.models.device.toUpperCase()
            }
            Label {
                Layout.fillWidth: true
                text: root.models.deviceMode
                wrapMode: Text.Wrap
                opacity: 0.7
            }
            Label {
                Layout.fillWidth: true
                visible: root.models.deviceNote.length > 0
                text: root.models.deviceNote
                wrapMode: Text.Wrap
                color: Theme.warning
            }
            Label {
                Layout.fillWidth: true
                visible: root.models.chatTemplateNote.length > 0
                text: root.models.chatTemplateNote
                wrapMode: Text.Wrap
                color: Theme.warning
            }
        }
        RowLayout {
            Layout.fillWidth: true
            Label {
                text: qsTr("Run on (next load)")
                Layout.fillWidth: true
            }
            ComboBox {
                id: deviceBox
                objectName: "deviceBox"
                model: ["auto", "cpu", "cuda", "mps", "cpu-generic"]
                currentIndex: Math.max(0, model.indexOf(root.models.preferredDevice))
                onActivated: index => root.models.preferredDevice = deviceBox.model[index]
            }
        }
        Item {
            Layout.preferredHeight: 14
        }
    }
}
