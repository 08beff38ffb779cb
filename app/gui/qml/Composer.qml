// The input box: Enter sends, Shift+Enter makes a new line; Stop while a reply streams (Esc too).
pragma ComponentBehavior: Bound
import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import QinsChat

Rectangle {
    id: root

    required property ChatController controller
    required property ModelManager models

    function focusInput() {
        input.forceActiveFocus()
    }
    function setText(text: string) {
        input.text = text
        input.cursorPosition = input.length
        input.forceActiveFocus()
    }
    function submit() {
        if (root.controller.send(input.text))
            input.clear()
    }

    color: Theme.window
    implicitHeight: row.implicitHeight + 24

    Rectangle {
        width: parent.width
        height: 1
        color: Theme.border
    }

    RowLayout {
        id: row
        anchors.fill: parent
        anchors.margins: 12
        spacing: 8

        ScrollView {
            Layout.fillWidth: true
            Layout.preferredHeight: Math.min(Math.max(input.implicitHeight, 44), 180)
            TextArea {
                id: input
                wrapMode: TextEdit.Wrap
                placeholderText: root.models.ready ? qsTr("Type a message (Enter sends, Shift+Enter starts a new line)")
                                                   : qsTr("Waiting for the model…")
                Accessible.name: qsTr("Message")
                Accessible.description: qsTr("Enter sends, Shift+Enter starts a new line")
                background: Rectangle {
                    radius: 8
                    color: Theme.surface
                    border.color: input.activeFocus ? Theme.accent : Theme.border
                }
                Keys.onPressed: (event) => {
                    if ((event.key === Qt.Key_Return || event.key === Qt.Key_Enter)
                            && !(event.modifiers & Qt.ShiftModifier)) {
                        root.submit()
                        event.accepted = true
                    }
                }
            }
        }

        Button {
            Layout.preferredHeight: 44
            Layout.preferredWidth: 88
            text: root.controller.generating ? qsTr("Stop") : qsTr("Send")
            highlighted: true
            enabled: root.controller.generating || (root.controller.canSend && input.text.trim().length > 0)
            Accessible.name: root.controller.generating ? qsTr("Stop the reply (Esc)") : qsTr("Send message")
            ToolTip.visible: hovered
            ToolTip.text: root.controller.generating ? qsTr("Stop (Esc)") : qsTr("Send (Enter)")
            onClicked: root.controller.generating ? root.controller.stop() : root.submit()
        }
    }
}
