// The Models page: the catalog (download with bytes, rate and ETA; pause, cancel, resume; then
// conversion and Load) and the models on this computer (Load, Delete after a confirmation).
pragma ComponentBehavior: Bound
import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import QinsChat

Rectangle {
    id: root

    required property ModelDownloads downloads
    required property ModelLibrary library
    required property ModelManager models
    signal closeRequested()
    signal loadRequested(string path)

    color: Theme.window

    component Heading: Label {
        Layout.topMargin: 12
        font.bold: true
        font.pixelSize: 17
        color: Theme.text
    }
    component Muted: Label {
        Layout.fillWidth: true
        wrapMode: Text.Wrap
        color: Theme.mutedText
    }

    ScrollView {
        id: scroll
        anchors.fill: parent
        contentWidth: availableWidth

        ColumnLayout {
            x: 20
            width: scroll.availableWidth - 40
            spacing: 8

            RowLayout {
                Layout.fillWidth: true
                Layout.topMargin: 14
                Label {
                    Layout.fillWidth: true
                    text: qsTr("Models")
                    font.pixelSize: 22
                    font.bold: true
                    color: Theme.text
                }
                Button {
                    text: qsTr("Back to chat")
                    Accessible.name: qsTr("Close the models page and go back to the chat")
                    onClicked: root.closeRequested()
                }
            }
            Muted {
                text: qsTr("Downloads come from the Hugging Face Hub (%1) into its cache (%2), are checked against the Hub's hashes, "
                           + "then converted to QINS codes in %3: 8-bit (best quality) or 4-bit QINS-4 (smaller, faster decode), as you choose for each model. "
                           + "A paused download resumes where it stopped, also after a restart.")
                      .arg(root.downloads.hubEndpoint).arg(root.downloads.cacheDir).arg(root.downloads.modelsDir)
            }

            Heading {
                text: qsTr("Get a model")
            }
            Repeater {
                model: root.downloads
                delegate: Rectangle {
                    id: card
                    required property int index
                    required property string repo
                    required property string title
                    required property string description
                    required property string licence
                    required property string sizesText
                    required property int downloadState
                    required property string stateText
                    required property double progress
                    required property string progressText
                    required property string errorMessage
                    required property string qinsPath
                    required property int precision
                    required property var precisionOptions
                    readonly property bool active: card.downloadState === ModelDownloads.Downloading
                                                   || card.downloadState === ModelDownloads.Converting

                    Layout.fillWidth: true
                    implicitHeight: cardLayout.implicitHeight + 24
                    radius: 8
                    color: Theme.surface
                    border.color: card.index === root.downloads.highlightedRow ? Theme.accent : Theme.border
                    border.width: card.index === root.downloads.highlightedRow ? 2 : 1

                    ColumnLayout {
                        id: cardLayout
                        x: 14
                        y: 12
                        width: card.width - 28
                        spacing: 4

                        RowLayout {
                            Layout.fillWidth: true
                            ColumnLayout {
                                Layout.fillWidth: true
                                spacing: 2
                                Label {
                                    text: card.title
                                    font.bold: true
                                    font.pixelSize: 15
                                    color: Theme.text
                                }
                                Label {
                                    Layout.fillWidth: true
                                    text: card.repo + " · " + qsTr("licence: %1").arg(card.licence)
                                    font.family: Theme.monoFamily
                                    color: Theme.mutedText
                                    elide: Text.ElideRight
                                }
                            }
                            Button {
                                visible: !card.active && card.downloadState !== ModelDownloads.Converted
                                enabled: !root.downloads.busy
                                highlighted: true
                                text: card.downloadState === ModelDownloads.Paused ? qsTr("Resume")
                                    : card.downloadState === ModelDownloads.Downloaded ? qsTr("Convert") : qsTr("Download")
                                Accessible.name: qsTr("%1 %2").arg(text).arg(card.title)
                                onClicked: root.downloads.download(card.repo)
                            }
                            Button {
                                visible: card.active
                                text: qsTr("Pause")
                                Accessible.name: qsTr("Pause the download of %1 (keeps what was downloaded)").arg(card.title)
                                onClicked: root.downloads.pause()
                            }
                            Button {
                                visible: card.active
                                text: qsTr("Cancel")
                                Accessible.name: qsTr("Cancel the download of %1").arg(card.title)
                                onClicked: root.downloads.cancel()
                            }
                            Button {
                                visible: card.downloadState === ModelDownloads.Converted
                                highlighted: true
                                text: qsTr("Load")
                                Accessible.name: qsTr("Load %1").arg(card.title)
                                onClicked: root.loadRequested(card.qinsPath)
                            }
                        }
                        Muted {
                            text: card.description
                            visible: text.length > 0
                        }
                        Label {
                            objectName: "sizes-" + card.index
                            Layout.fillWidth: true
                            text: card.sizesText
                            wrapMode: Text.Wrap
                            color: Theme.text
                        }
                        // The precision to convert to (and the converted file Load uses).
                        Flow {
                            Layout.fillWidth: true
                            spacing: 14
                            Label {
                                height: bits8.height
                                verticalAlignment: Text.AlignVCenter
                                text: qsTr("Convert to:")
                                color: Theme.mutedText
                            }
                            RadioButton {
                                id: bits8
                                objectName: "precision8-" + card.index
                                enabled: !card.active
                                checked: card.precision === ModelDownloads.Bits8
                                text: card.precisionOptions[ModelDownloads.Bits8]
                                Accessible.name: qsTr("Convert %1 to %2").arg(card.title).arg(text)
                                onClicked: root.downloads.setPrecision(card.repo, ModelDownloads.Bits8)
                            }
                            RadioButton {
                                objectName: "precision4-" + card.index
                                enabled: !card.active
                                checked: card.precision === ModelDownloads.Bits4
                                text: card.precisionOptions[ModelDownloads.Bits4]
                                Accessible.name: qsTr("Convert %1 to %2").arg(card.title).arg(text)
                                onClicked: root.downloads.setPrecision(card.repo, ModelDownloads.Bits4)
                            }
                        }
                        Label {
                            Layout.fillWidth: true
                            text: card.stateText
                            font.bold: card.active || card.downloadState === ModelDownloads.Converted
                            color: card.downloadState === ModelDownloads.Converted ? Theme.accent : Theme.text
                        }
                        ProgressBar {
                            Layout.fillWidth: true
                            visible: card.active
                            from: 0
                            to: 1
                            value: card.progress
                            Accessible.name: qsTr("Download progress of %1").arg(card.title)
                        }
                        Muted {
                            visible: card.active && text.length > 0
                            text: card.progressText
                            font.family: Theme.monoFamily
                        }
                        Label {
                            Layout.fillWidth: true
                            visible: card.errorMessage.length > 0
                            text: card.errorMessage
                            wrapMode: Text.Wrap
                            color: Theme.danger
                        }
                    }
                }
            }

            RowLayout {
                Layout.fillWidth: true
                TextField {
                    id: repoField
                    Layout.fillWidth: true
                    placeholderText: qsTr("Any model on the Hub: ORG/NAME or ORG/NAME@REVISION")
                    Accessible.name: qsTr("Hugging Face repo id to add")
                    onAccepted: addButton.clicked()
                }
                Button {
                    id: addButton
                    text: qsTr("Add")
                    enabled: repoField.text.trim().length > 0
                    Accessible.name: qsTr("Add this repo to the list")
                    onClicked: {
                        if (root.downloads.addRepo(repoField.text) >= 0)
                            repoField.clear()
                    }
                }
            }
            Label {
                Layout.fillWidth: true
                visible: root.downloads.addError.length > 0
                text: root.downloads.addError
                wrapMode: Text.Wrap
                color: Theme.danger
            }

            Heading {
                text: qsTr("On this computer")
            }
            Muted {
                visible: root.library.count === 0
                text: qsTr("No converted model and no downloaded model folder yet.")
            }
            Label {
                Layout.fillWidth: true
                visible: root.library.errorMessage.length > 0
                text: root.library.errorMessage
                wrapMode: Text.Wrap
                color: Theme.danger
            }
            Repeater {
                model: root.library
                delegate: RowLayout {
                    id: local
                    required property string name
                    required property string path
                    required property string kind
                    required property string sizeText
                    required property string codebook
                    required property string origin
                    required property string paramsText
                    required property string deleteText
                    readonly property bool loaded: root.models.ready && (root.models.loadingPath === local.path
                                                                         || root.models.modelPath === local.path)
                    Layout.fillWidth: true
                    spacing: 10

                    ColumnLayout {
                        Layout.fillWidth: true
                        spacing: 1
                        Label {
                            Layout.fillWidth: true
                            text: local.name + (local.loaded ? qsTr("  (loaded)") : "")
                            font.bold: true
                            elide: Text.ElideRight
                            color: Theme.text
                        }
                        Muted {
                            text: [local.kind === "qins" ? qsTr(".qins file") : qsTr("downloaded folder"),
                                   local.sizeText, qsTr("codebook: %1").arg(local.codebook), local.paramsText,
                                   local.origin].filter(s => s.length > 0).join(" · ")
                        }
                    }
                    Button {
                        text: qsTr("Load")
                        enabled: !local.loaded && !root.models.loading
                        Accessible.name: qsTr("Load %1").arg(local.name)
                        onClicked: root.loadRequested(local.path)
                    }
                    Button {
                        text: qsTr("Delete…")
                        enabled: !local.loaded
                        Accessible.name: qsTr("Delete %1 from the disk").arg(local.name)
                        onClicked: {
                            confirmDelete.path = local.path
                            confirmDelete.message = local.deleteText
                            confirmDelete.open()
                        }
                    }
                }
            }
            Item {
                Layout.preferredHeight: 16
            }
        }
    }

    Dialog {
        id: confirmDelete
        property string path
        property string message
        anchors.centerIn: parent
        width: Math.min(520, root.width - 80)
        modal: true
        title: qsTr("Delete this model?")
        standardButtons: Dialog.Yes | Dialog.Cancel
        Label {
            width: confirmDelete.availableWidth
            wrapMode: Text.Wrap
            text: confirmDelete.message
        }
        onAccepted: root.library.remove(confirmDelete.path)
    }
}
