// One message. A reply is drawn segment by segment (prose as Markdown, code blocks monospace
// with a copy button); while it streams only its last segment changes.
pragma ComponentBehavior: Bound
import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import QinsChat

Item {
    id: bubble

    required property int index
    required property string author
    required property string text
    required property bool streaming
    required property string stats
    required property SegmentListModel segments
    required property ChatController controller
    property bool isLast: false
    property bool editing: false

    readonly property bool fromUser: bubble.author === "user"
    readonly property real maxBubbleWidth: Math.min(bubble.width - 48, 820)

    implicitHeight: column.implicitHeight

    ColumnLayout {
        id: column
        x: bubble.fromUser ? bubble.width - width - 24 : 24
        width: bubble.fromUser && !bubble.editing
               ? Math.min(bubble.maxBubbleWidth, Math.max(userText.implicitWidth + 28, 120))
               : bubble.maxBubbleWidth
        spacing: 4

        Label {
            text: bubble.fromUser ? qsTr("You") : qsTr("Assistant")
            color: Theme.mutedText
            font.pixelSize: 11
            font.bold: true
            Layout.alignment: bubble.fromUser ? Qt.AlignRight : Qt.AlignLeft
        }

        Rectangle {
            Layout.fillWidth: true
            implicitHeight: content.implicitHeight + 20
            radius: 10
            color: bubble.fromUser ? Theme.userBubble : Theme.assistantBubble
            border.color: bubble.fromUser ? "transparent" : Theme.border
            Accessible.role: Accessible.StaticText
            Accessible.name: (bubble.fromUser ? qsTr("You said: ") : qsTr("Assistant said: ")) + bubble.text

            ColumnLayout {
                id: content
                x: 12
                y: 10
                width: parent.width - 24
                spacing: 8

                // The user's words, as typed (no Markdown).
                TextEdit {
                    id: userText
                    Layout.fillWidth: true
                    visible: bubble.fromUser && !bubble.editing
                    text: bubble.text
                    textFormat: TextEdit.PlainText
                    wrapMode: TextEdit.Wrap
                    readOnly: true
                    selectByMouse: true
                    color: Theme.text
                    selectionColor: Theme.accent
                    selectedTextColor: Theme.accentText
                }

                // Edit and resend.
                TextArea {
                    id: editor
                    Layout.fillWidth: true
                    visible: bubble.editing
                    wrapMode: TextEdit.Wrap
                    Accessible.name: qsTr("Edit message")
                    Keys.onEscapePressed: bubble.editing = false
                    background: Rectangle {
                        radius: 6
                        color: Theme.surface
                        border.color: editor.activeFocus ? Theme.accent : Theme.border
                    }
                }
                RowLayout {
                    visible: bubble.editing
                    Layout.alignment: Qt.AlignRight
                    Button {
                        text: qsTr("Cancel")
                        onClicked: bubble.editing = false
                    }
                    Button {
                        text: qsTr("Send")
                        highlighted: true
                        enabled: bubble.controller.canSend
                        Accessible.name: qsTr("Send the edited message")
                        onClicked: {
                            bubble.editing = false
                            bubble.controller.editAndResend(bubble.index, editor.text)
                        }
                    }
                }

                Repeater {
                    model: bubble.fromUser ? null : bubble.segments
                    delegate: Item {
                        id: segment

                        required property bool code
                        required property string text
                        required property string language

                        Layout.fillWidth: true
                        implicitHeight: segment.code ? codeBox.implicitHeight : prose.implicitHeight

                        // Both views exist; the one that does not apply is hidden. (A Loader of a
                        // bound inline Component is refused by Qt 6.4 inside a delegate.)
                        TextEdit {
                            id: prose
                            width: segment.width
                            visible: !segment.code
                            text: segment.code ? "" : segment.text
                            textFormat: TextEdit.MarkdownText
                            wrapMode: TextEdit.Wrap
                            readOnly: true
                            selectByMouse: true
                            color: Theme.text
                            selectionColor: Theme.accent
                            selectedTextColor: Theme.accentText
                            onLinkActivated: (link) => Qt.openUrlExternally(link)
                        }
                        Rectangle {
                            id: codeBox
                            width: segment.width
                            visible: segment.code
                            implicitHeight: codeColumn.implicitHeight + 8
                            radius: 6
                            color: Theme.codeBackground
                            border.color: Theme.border
                            ColumnLayout {
                                id: codeColumn
                                x: 10
                                y: 2
                                width: parent.width - 20
                                spacing: 0
                                RowLayout {
                                    Layout.fillWidth: true
                                    Label {
                                        Layout.fillWidth: true
                                        text: segment.language.length > 0 ? segment.language : qsTr("code")
                                        color: Theme.mutedText
                                        font.pixelSize: 11
                                    }
                                    ToolButton {
                                        id: copyCode
                                        property bool copied: false
                                        text: copyCode.copied ? qsTr("Copied") : qsTr("Copy")
                                        font.pixelSize: 11
                                        Accessible.name: qsTr("Copy code")
                                        onClicked: {
                                            bubble.controller.copyText(segment.text)
                                            copyCode.copied = true
                                            copiedTimer.restart()
                                        }
                                        Timer {
                                            id: copiedTimer
                                            interval: 1500
                                            onTriggered: copyCode.copied = false
                                        }
                                    }
                                }
                                TextEdit {
                                    Layout.fillWidth: true
                                    Layout.bottomMargin: 6
                                    text: segment.code ? segment.text : ""
                                    textFormat: TextEdit.PlainText
                                    wrapMode: TextEdit.WrapAnywhere
                                    readOnly: true
                                    selectByMouse: true
                                    font.family: Theme.monoFamily
                                    font.pixelSize: 13
                                    color: Theme.codeText
                                    selectionColor: Theme.accent
                                    selectedTextColor: Theme.accentText
                                }
                            }
                        }
                    }
                }

                RowLayout {
                    visible: bubble.streaming && bubble.text.length === 0
                    BusyIndicator {
                        running: parent.visible
                        implicitWidth: 22
                        implicitHeight: 22
                    }
                    Label {
                        text: qsTr("Thinking…")
                        color: Theme.mutedText
                    }
                }
            }
        }

        RowLayout {
            Layout.alignment: bubble.fromUser ? Qt.AlignRight : Qt.AlignLeft
            spacing: 2
            visible: !bubble.editing
            Label {
                visible: bubble.stats.length > 0
                text: bubble.stats
                color: Theme.mutedText
                font.pixelSize: 11
                rightPadding: 6
            }
            ToolButton {
                visible: !bubble.streaming
                text: qsTr("Copy")
                font.pixelSize: 11
                Accessible.name: qsTr("Copy message")
                onClicked: bubble.controller.copyMessage(bubble.index)
            }
            ToolButton {
                visible: bubble.fromUser
                enabled: bubble.controller.canSend
                text: qsTr("Edit")
                font.pixelSize: 11
                Accessible.name: qsTr("Edit and resend this message")
                onClicked: {
                    editor.text = bubble.text
                    bubble.editing = true
                    editor.forceActiveFocus()
                }
            }
            ToolButton {
                visible: !bubble.fromUser && bubble.isLast && !bubble.streaming
                enabled: bubble.controller.canRegenerate
                text: qsTr("Regenerate")
                font.pixelSize: 11
                Accessible.name: qsTr("Regenerate this reply")
                onClicked: bubble.controller.regenerate()
            }
        }
    }
}
