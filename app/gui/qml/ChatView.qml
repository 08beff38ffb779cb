// The messages of the open chat, or example prompts when it is empty.
pragma ComponentBehavior: Bound
import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import QinsChat

Item {
    id: root

    required property ChatController controller
    property string modelName
    // What the loaded model is ("a 3 M-parameter dictionary model trained by this project ...").
    property string modelDescription
    // "Get Phi-3.5-mini — 7.6 GB download, ..." ("" hides the card).
    property string offerText
    signal examplePicked(string prompt)
    signal getModelRequested()

    // The loaded model's example prompts (ModelProfile); general ones until a model says otherwise.
    property list<string> examples: [
        qsTr("Explain the difference between a process and a thread, with an example."),
        qsTr("Write a C++ function that reverses the words in a string."),
        qsTr("Give me three ideas for a weekend trip near the mountains."),
        qsTr("Summarize the rules of chess in five bullet points.")
    ]

    ListView {
        id: list

        // Follow the reply while it streams unless the user scrolled up to read.
        property bool pinnedToEnd: true

        anchors.fill: parent
        clip: true
        spacing: 14
        topMargin: 16
        bottomMargin: 16
        model: root.controller.messages
        visible: list.count > 0
        boundsBehavior: Flickable.StopAtBounds
        ScrollBar.vertical: ScrollBar {}

        onMovementEnded: list.pinnedToEnd = list.atYEnd
        onContentHeightChanged: if (list.pinnedToEnd) list.positionViewAtEnd()
        onCountChanged: {
            list.pinnedToEnd = true
            list.positionViewAtEnd()
        }

        delegate: MessageBubble {
            id: bubble
            width: ListView.view.width
            controller: root.controller
            isLast: bubble.index === ListView.view.count - 1
        }
    }

    ColumnLayout {
        anchors.centerIn: parent
        width: Math.min(parent.width - 48, 640)
        visible: list.count === 0
        spacing: 14

        Label {
            Layout.alignment: Qt.AlignHCenter
            text: qsTr("QINS Chat")
            font.pixelSize: 28
            font.bold: true
            color: Theme.text
        }
        Label {
            Layout.fillWidth: true
            horizontalAlignment: Text.AlignHCenter
            wrapMode: Text.Wrap
            text: root.modelName.length > 0
                  ? qsTr("%1 runs on this computer. Nothing you type leaves it.").arg(root.modelName)
                  : qsTr("A language model running on this computer. Nothing you type leaves it.")
            color: Theme.mutedText
        }
        Label {
            Layout.fillWidth: true
            visible: root.modelDescription.length > 0
            horizontalAlignment: Text.AlignHCenter
            wrapMode: Text.Wrap
            text: qsTr("Loaded: %1 — %2.").arg(root.modelName).arg(root.modelDescription)
            color: Theme.text
        }
        Rectangle {
            Layout.fillWidth: true
            Layout.topMargin: 6
            visible: root.offerText.length > 0
            implicitHeight: offerRow.implicitHeight + 20
            radius: 8
            color: Qt.rgba(Theme.accent.r, Theme.accent.g, Theme.accent.b, 0.10)
            border.color: Theme.accent
            RowLayout {
                id: offerRow
                x: 14
                y: 10
                width: parent.width - 28
                Label {
                    Layout.fillWidth: true
                    text: root.offerText
                    wrapMode: Text.Wrap
                    font.bold: true
                    color: Theme.text
                }
                Button {
                    text: qsTr("Open the download…")
                    highlighted: true
                    Accessible.name: qsTr("Open the download of Phi-3.5-mini on the Models page")
                    onClicked: root.getModelRequested()
                }
            }
        }
        GridLayout {
            Layout.fillWidth: true
            Layout.topMargin: 12
            columns: 2
            columnSpacing: 10
            rowSpacing: 10
            Repeater {
                model: root.examples
                delegate: Button {
                    id: example
                    required property string modelData
                    Layout.fillWidth: true
                    Layout.preferredHeight: 64
                    Accessible.name: qsTr("Example prompt: %1").arg(example.modelData)
                    onClicked: root.examplePicked(example.modelData)
                    leftPadding: 14
                    rightPadding: 14
                    contentItem: Label {
                        text: example.modelData
                        wrapMode: Text.Wrap
                        verticalAlignment: Text.AlignVCenter
                        color: Theme.text
                    }
                }
            }
        }
    }
}
