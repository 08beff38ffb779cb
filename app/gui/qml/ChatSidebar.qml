// The chat list: new chat, search, rename (double-click), delete (with undo in the window).
pragma ComponentBehavior: Bound
import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import QinsChat

Rectangle {
    id: root

    required property ChatListModel chats
    required property ChatController controller
    signal newChatRequested()

    color: Theme.sidebar

    ColumnLayout {
        anchors.fill: parent
        anchors.margins: 10
        spacing: 8

        Button {
            Layout.fillWidth: true
            text: qsTr("+  New chat")
            Accessible.name: qsTr("New chat")
            ToolTip.visible: hovered
            ToolTip.text: qsTr("New chat (Ctrl+N)")
            onClicked: root.newChatRequested()
        }

        TextField {
            id: search
            Layout.fillWidth: true
            placeholderText: qsTr("Search chats")
            Accessible.name: qsTr("Search chats")
            text: root.chats.filter
            onTextEdited: root.chats.filter = search.text
        }

        ListView {
            id: list
            Layout.fillWidth: true
            Layout.fillHeight: true
            clip: true
            spacing: 2
            model: root.chats
            ScrollBar.vertical: ScrollBar {}

            delegate: ItemDelegate {
                id: item

                required property int index
                required property real chatId  // a qint64 row id: `int` is 32-bit in QML
                required property string title
                required property string updated
                property bool renaming: false

                width: ListView.view.width
                highlighted: item.chatId === root.controller.currentChatId
                Accessible.name: qsTr("Chat: %1").arg(item.title)
                onClicked: root.controller.openChat(item.chatId)
                onDoubleClicked: item.renaming = true

                contentItem: RowLayout {
                    spacing: 4
                    ColumnLayout {
                        Layout.fillWidth: true
                        spacing: 0
                        visible: !item.renaming
                        Label {
                            Layout.fillWidth: true
                            text: item.title
                            elide: Text.ElideRight
                            color: item.highlighted ? Theme.accentText : Theme.text
                        }
                        Label {
                            text: item.updated
                            color: item.highlighted ? Theme.accentText : Theme.mutedText
                            opacity: item.highlighted ? 0.8 : 1
                            font.pixelSize: 11
                        }
                    }
                    TextField {
                        id: renameField
                        Layout.fillWidth: true
                        visible: item.renaming
                        text: item.title
                        Accessible.name: qsTr("New name for the chat")
                        onVisibleChanged: if (visible) { renameField.selectAll(); renameField.forceActiveFocus() }
                        onAccepted: {
                            root.chats.rename(item.chatId, renameField.text)
                            item.renaming = false
                        }
                        Keys.onEscapePressed: item.renaming = false
                        onActiveFocusChanged: if (!activeFocus) item.renaming = false
                    }
                    ToolButton {
                        visible: !item.renaming && (item.hovered || item.highlighted)
                        text: "\u270e"
                        Accessible.name: qsTr("Rename chat")
                        ToolTip.visible: hovered
                        ToolTip.text: qsTr("Rename")
                        onClicked: item.renaming = true
                    }
                    ToolButton {
                        visible: !item.renaming && (item.hovered || item.highlighted)
                        text: "\u2715"
                        Accessible.name: qsTr("Delete chat")
                        ToolTip.visible: hovered
                        ToolTip.text: qsTr("Delete")
                        onClicked: root.chats.remove(item.chatId)
                    }
                }
            }

            Label {
                anchors.centerIn: parent
                visible: list.count === 0
                text: root.chats.filter.length > 0 ? qsTr("No chat matches") : qsTr("No chats yet")
                color: Theme.mutedText
            }
        }
    }
}
