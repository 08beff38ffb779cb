// A one-line coloured notice under the toolbar (context overflow, errors); hidden when empty.
import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import QinsChat

Rectangle {
    id: root

    property string text
    property color tone: Theme.warning
    property bool closable: false
    signal closeRequested()

    visible: root.text.length > 0
    implicitHeight: visible ? row.implicitHeight + 12 : 0
    color: Qt.rgba(root.tone.r, root.tone.g, root.tone.b, 0.14)

    RowLayout {
        id: row
        anchors.fill: parent
        anchors.leftMargin: 12
        anchors.rightMargin: 8
        Label {
            Layout.fillWidth: true
            text: root.text
            wrapMode: Text.Wrap
            color: Theme.text
        }
        ToolButton {
            visible: root.closable
            text: "\u2715"
            Accessible.name: qsTr("Dismiss")
            onClicked: root.closeRequested()
        }
    }
}
