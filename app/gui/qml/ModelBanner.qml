// Model loading (progress, Cancel) or why there is no model (with Open buttons); hidden when ready.
pragma ComponentBehavior: Bound
import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import QinsChat

Rectangle {
    id: root

    required property ModelManager models
    signal openFileRequested()
    signal openFolderRequested()

    visible: !root.models.ready
    implicitHeight: visible ? layout.implicitHeight + 20 : 0
    color: root.models.status === ModelManager.Failed ? Qt.rgba(Theme.danger.r, Theme.danger.g, Theme.danger.b, 0.12)
                                                        : Theme.surface
    Rectangle {
        anchors.bottom: parent.bottom
        width: parent.width
        height: 1
        color: Theme.border
    }

    ColumnLayout {
        id: layout
        x: 14
        y: 10
        width: parent.width - 28
        spacing: 6

        RowLayout {
            Layout.fillWidth: true
            visible: root.models.loading
            Label {
                Layout.fillWidth: true
                text: qsTr("%1 — %2 (%3%)").arg(root.models.message).arg(root.models.stage)
                          .arg(Math.round(root.models.progress * 100))
                elide: Text.ElideMiddle
                color: Theme.text
            }
            Button {
                text: qsTr("Cancel")
                Accessible.name: qsTr("Cancel loading the model")
                onClicked: root.models.cancelLoad()
            }
        }
        ProgressBar {
            Layout.fillWidth: true
            visible: root.models.loading
            from: 0
            to: 1
            value: root.models.progress
            Accessible.name: qsTr("Model loading progress")
        }

        RowLayout {
            Layout.fillWidth: true
            visible: !root.models.loading
            Label {
                Layout.fillWidth: true
                text: root.models.message.length > 0 ? root.models.message : qsTr("No model is loaded.")
                wrapMode: Text.Wrap
                color: Theme.text
            }
            Button {
                text: qsTr("Open model file…")
                highlighted: true
                Accessible.name: qsTr("Open a .qins model file")
                onClicked: root.openFileRequested()
            }
            Button {
                text: qsTr("Open folder…")
                Accessible.name: qsTr("Open a Hugging Face model folder")
                onClicked: root.openFolderRequested()
            }
        }
    }
}
