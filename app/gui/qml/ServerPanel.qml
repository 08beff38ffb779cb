// "Serve this model on localhost": the OpenAI-compatible server of `qins serve`, in the app.
pragma ComponentBehavior: Bound
import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import QinsChat

ScrollView {
    id: root

    required property LocalServer server
    required property ModelManager models

    contentWidth: availableWidth

    ColumnLayout {
        x: 14
        width: root.availableWidth - 28
        spacing: 8

        Label {
            Layout.topMargin: 14
            text: qsTr("Local server")
            font.bold: true
            font.pixelSize: 16
            color: Theme.text
        }
        Label {
            Layout.fillWidth: true
            wrapMode: Text.Wrap
            color: Theme.mutedText
            text: qsTr("Other programs on this computer (editors, web UIs, scripts) can use the loaded model "
                       + "through the OpenAI API. Your own chats keep working meanwhile.")
        }
        CheckBox {
            id: serveBox
            text: qsTr("Serve this model on localhost")
            checked: root.server.enabled
            Accessible.name: qsTr("Serve this model on localhost")
            onToggled: root.server.enabled = serveBox.checked
        }
        RowLayout {
            Layout.fillWidth: true
            Label {
                text: qsTr("Port")
                color: Theme.text
            }
            SpinBox {
                id: portBox
                Layout.fillWidth: true
                from: 1024
                to: 65535
                editable: true
                value: root.server.port
                textFromValue: (value, locale) => String(value)
                valueFromText: (text, locale) => Number(text)
                Accessible.name: qsTr("Server port")
                onValueModified: root.server.port = portBox.value
            }
        }
        Label {
            Layout.fillWidth: true
            wrapMode: Text.Wrap
            color: Theme.mutedText
            visible: root.server.enabled && !root.models.ready
            text: qsTr("Starts when a model is loaded.")
        }
        Label {
            Layout.fillWidth: true
            wrapMode: Text.Wrap
            color: Theme.text
            visible: root.server.address.length > 0
            text: root.server.running ? qsTr("Serving at") : qsTr("Starting at")
        }
        TextField {
            Layout.fillWidth: true
            visible: root.server.address.length > 0
            readOnly: true
            selectByMouse: true
            text: root.server.address
            font.family: Theme.monoFamily
            Accessible.name: qsTr("Server address")
        }
        Label {
            Layout.fillWidth: true
            visible: root.server.running
            color: Theme.text
            text: qsTr("Requests served: %1").arg(root.server.requestsServed)
        }
        Label {
            Layout.fillWidth: true
            wrapMode: Text.Wrap
            visible: root.server.error.length > 0
            color: Theme.danger
            text: root.server.error
        }
    }
}
