// The window: chat list | chat (banner, messages, composer) | sampling / statistics panel.
// Every view binds to the C++ objects declared here; none of them holds state of its own that
// outlives it.
pragma ComponentBehavior: Bound
import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import QtQuick.Dialogs
import QinsChat

ApplicationWindow {
    id: window

    // Which side panel shows: "" (none), "sampling" or "stats".
    property string sidePanel: ""
    // Which page fills the chat column: "chat" or "models" (Models, or Ctrl+M).
    property string page: "chat"
    // The window's C++ objects, for tests and tools that drive the window from outside.
    readonly property ModelManager modelManager: models
    readonly property ChatController chatController: controller
    readonly property ModelDownloads modelDownloads: downloads
    readonly property ModelLibrary modelLibrary: library

    // "Get Phi-3.5-mini" and the Models button: the Models page, with `repo` shown first.
    function showModels(repo: string) {
        if (repo.length > 0)
            downloads.highlight(repo)
        library.refresh()
        downloads.refresh()
        window.page = "models"
    }

    function togglePanel(name: string) {
        window.sidePanel = window.sidePanel === name ? "" : name
    }

    width: AppSettings.windowWidth
    height: AppSettings.windowHeight
    minimumWidth: 760
    minimumHeight: 480
    visible: true
    visibility: AppSettings.maximized ? Window.Maximized : Window.Windowed
    title: controller.currentTitle + " — QINS Chat"
    color: Theme.window

    palette.window: Theme.window
    palette.windowText: Theme.text
    palette.base: Theme.surface
    palette.alternateBase: Theme.window
    palette.text: Theme.text
    palette.button: Theme.surface
    palette.buttonText: Theme.text
    palette.brightText: Theme.text
    palette.highlight: Theme.accent
    palette.highlightedText: Theme.accentText
    palette.placeholderText: Theme.mutedText
    palette.light: Theme.surface
    palette.midlight: Theme.surface
    palette.mid: Theme.border
    palette.dark: Theme.border
    palette.shadow: Theme.border
    palette.toolTipBase: Theme.surface
    palette.toolTipText: Theme.text
    palette.link: Theme.accent

    onClosing: {
        AppSettings.maximized = window.visibility === Window.Maximized
        if (window.visibility !== Window.Maximized) {
            AppSettings.windowWidth = window.width
            AppSettings.windowHeight = window.height
        }
    }

    SamplingSettings {
        id: sampling
    }
    ChatListModel {
        id: chatList
    }
    ModelManager {
        id: models
        autoLoad: true
    }
    ModelLibrary {
        id: library
    }
    ModelDownloads {
        id: downloads
        library: library
    }
    ModelProfile {
        id: profile
        modelManager: models
    }
    MemoryMonitor {
        id: memory
        modelManager: models
    }
    LocalServer {
        id: localServer
        objectName: "localServer"
        models: models
    }
    ChatController {
        id: controller
        modelManager: models
        settings: sampling
        chats: chatList
        onCurrentChatIdChanged: AppSettings.lastChatId = controller.currentChatId
    }

    Component.onCompleted: {
        if (AppSettings.lastChatId > 0)
            controller.openChat(AppSettings.lastChatId)
        composer.focusInput()
    }

    Shortcut {
        sequence: "Ctrl+N"
        onActivated: {
            controller.newChat()
            composer.focusInput()
        }
    }
    Shortcut {
        sequence: "Esc"
        enabled: controller.generating
        onActivated: controller.stop()
    }
    Shortcut {
        sequence: "Ctrl+L"
        onActivated: composer.focusInput()
    }
    Shortcut {
        sequence: "Ctrl+,"
        onActivated: window.togglePanel("sampling")
    }
    Shortcut {
        sequence: "Ctrl+I"
        onActivated: window.togglePanel("stats")
    }
    Shortcut {
        sequence: "Ctrl+O"
        onActivated: openFileDialog.open()
    }
    Shortcut {
        sequence: "Ctrl+M"
        onActivated: window.page === "models" ? window.page = "chat" : window.showModels("")
    }
    Shortcut {
        sequence: "Ctrl+B"
        onActivated: AppSettings.sidebarVisible = !AppSettings.sidebarVisible
    }

    FileDialog {
        id: openFileDialog
        title: qsTr("Open a QINS model")
        nameFilters: [qsTr("QINS models (*.qins)"), qsTr("All files (*)")]
        onAccepted: models.openModel(openFileDialog.selectedFile)
    }
    FolderDialog {
        id: openFolderDialog
        title: qsTr("Open a Hugging Face model folder")
        onAccepted: models.openModel(openFolderDialog.selectedFolder)
    }
    FileDialog {
        id: exportDialog
        title: qsTr("Export chat")
        fileMode: FileDialog.SaveFile
        nameFilters: [qsTr("Markdown (*.md)"), qsTr("JSON (*.json)")]
        onAccepted: controller.exportChat(exportDialog.selectedFile,
                                          exportDialog.selectedNameFilter.index === 1 ? "json" : "markdown")
    }

    Dialog {
        id: storeNoticeDialog
        anchors.centerIn: parent
        width: Math.min(520, window.width - 80)
        modal: true
        title: qsTr("Chat history was reset")
        standardButtons: Dialog.Ok
        visible: chatList.storeNotice.length > 0 || chatList.storeError.length > 0
        Label {
            width: storeNoticeDialog.availableWidth
            wrapMode: Text.Wrap
            text: chatList.storeError.length > 0 ? chatList.storeError : chatList.storeNotice
        }
    }

    RowLayout {
        anchors.fill: parent
        spacing: 0

        ChatSidebar {
            Layout.fillHeight: true
            Layout.preferredWidth: 260
            visible: AppSettings.sidebarVisible
            chats: chatList
            controller: controller
            onNewChatRequested: {
                controller.newChat()
                composer.focusInput()
            }
        }

        ColumnLayout {
            Layout.fillWidth: true
            Layout.fillHeight: true
            spacing: 0

            ToolBar {
                Layout.fillWidth: true
                background: Rectangle {
                    color: Theme.window
                    Rectangle {
                        anchors.bottom: parent.bottom
                        width: parent.width
                        height: 1
                        color: Theme.border
                    }
                }
                RowLayout {
                    anchors.fill: parent
                    anchors.leftMargin: 8
                    anchors.rightMargin: 8
                    ToolButton {
                        text: AppSettings.sidebarVisible ? "\u2039" : "\u203a"
                        font.pixelSize: 20
                        Accessible.name: AppSettings.sidebarVisible ? qsTr("Hide chat list") : qsTr("Show chat list")
                        ToolTip.visible: hovered
                        ToolTip.text: qsTr("Chat list (Ctrl+B)")
                        onClicked: AppSettings.sidebarVisible = !AppSettings.sidebarVisible
                    }
                    Label {
                        Layout.fillWidth: true
                        text: controller.currentTitle
                        elide: Text.ElideRight
                        font.bold: true
                        font.pixelSize: 15
                        color: Theme.text
                    }
                    Label {
                        text: models.ready ? profile.title + " · " + models.device
                                           : models.loading ? qsTr("Loading model…") : qsTr("No model")
                        color: Theme.mutedText
                        elide: Text.ElideMiddle
                        Layout.maximumWidth: 260
                        ToolTip.visible: modelLabelHover.hovered && models.ready
                        ToolTip.text: profile.title + ": " + profile.description
                        HoverHandler {
                            id: modelLabelHover
                        }
                    }
                    ToolButton {
                        text: qsTr("Models")
                        checkable: true
                        checked: window.page === "models"
                        Accessible.name: qsTr("Models: download, convert, load and delete models")
                        ToolTip.visible: hovered
                        ToolTip.text: qsTr("Get and manage models (Ctrl+M)")
                        onClicked: window.page === "models" ? window.page = "chat" : window.showModels("")
                    }
                    ToolButton {
                        text: qsTr("Open…")
                        Accessible.name: qsTr("Open a model")
                        ToolTip.visible: hovered
                        ToolTip.text: qsTr("Open a .qins model file (Ctrl+O)")
                        onClicked: openMenu.open()
                        Menu {
                            id: openMenu
                            y: parent.height
                            MenuItem {
                                text: qsTr("Model file (.qins)…")
                                onTriggered: openFileDialog.open()
                            }
                            MenuItem {
                                text: qsTr("Hugging Face folder…")
                                onTriggered: openFolderDialog.open()
                            }
                        }
                    }
                    ToolButton {
                        text: qsTr("Export…")
                        enabled: controller.messages.count > 0
                        Accessible.name: qsTr("Export this chat as Markdown or JSON")
                        onClicked: exportDialog.open()
                    }
                    ToolButton {
                        text: qsTr("Sampling")
                        checkable: true
                        checked: window.sidePanel === "sampling"
                        Accessible.name: qsTr("Sampling settings")
                        ToolTip.visible: hovered
                        ToolTip.text: qsTr("Sampling settings (Ctrl+,)")
                        onClicked: window.togglePanel("sampling")
                    }
                    ToolButton {
                        text: qsTr("Stats")
                        checkable: true
                        checked: window.sidePanel === "stats"
                        Accessible.name: qsTr("Memory and statistics")
                        ToolTip.visible: hovered
                        ToolTip.text: qsTr("Memory and statistics (Ctrl+I)")
                        onClicked: window.togglePanel("stats")
                    }
                    ToolButton {
                        text: localServer.running ? qsTr("Server \u25cf") : qsTr("Server")
                        checkable: true
                        checked: window.sidePanel === "server"
                        Accessible.name: qsTr("Serve this model on localhost")
                        ToolTip.visible: hovered
                        ToolTip.text: localServer.running ? localServer.address : qsTr("Serve this model to other programs (OpenAI API)")
                        onClicked: window.togglePanel("server")
                    }
                    ToolButton {
                        text: Theme.dark ? "\u2600" : "\u263e"
                        font.pixelSize: 16
                        Accessible.name: qsTr("Switch light or dark theme")
                        ToolTip.visible: hovered
                        ToolTip.text: Theme.mode === "system" ? qsTr("Theme: following the system")
                                                              : qsTr("Theme: %1 (click again to follow the system)").arg(Theme.mode)
                        onClicked: Theme.toggle()
                    }
                }
            }

            ModelBanner {
                Layout.fillWidth: true
                models: models
                onOpenFileRequested: openFileDialog.open()
                onOpenFolderRequested: openFolderDialog.open()
            }

            Notice {
                Layout.fillWidth: true
                text: controller.contextNotice
                tone: Theme.warning
            }
            Notice {
                Layout.fillWidth: true
                text: controller.errorMessage
                tone: Theme.danger
                closable: true
                onCloseRequested: controller.clearError()
            }

            ModelsPage {
                Layout.fillWidth: true
                Layout.fillHeight: true
                visible: window.page === "models"
                downloads: downloads
                library: library
                models: models
                onCloseRequested: window.page = "chat"
                onLoadRequested: (path) => {
                    models.load(path)
                    window.page = "chat"
                }
            }

            ChatView {
                Layout.fillWidth: true
                Layout.fillHeight: true
                visible: window.page === "chat"
                controller: controller
                modelName: models.ready ? profile.title : ""
                modelDescription: models.ready ? profile.description : ""
                examples: profile.examples
                offerText: profile.offerDownload ? profile.offerText : ""
                onGetModelRequested: window.showModels(profile.offerRepo)
                onExamplePicked: (prompt) => {
                    if (!controller.send(prompt))
                        composer.setText(prompt)
                }
            }

            Composer {
                id: composer
                Layout.fillWidth: true
                visible: window.page === "chat"
                controller: controller
                models: models
            }
        }

        Rectangle {
            Layout.fillHeight: true
            Layout.preferredWidth: 320
            visible: window.sidePanel !== ""
            color: Theme.window
            Rectangle {
                width: 1
                height: parent.height
                color: Theme.border
            }
            SamplingPanel {
                anchors.fill: parent
                anchors.leftMargin: 1
                visible: window.sidePanel === "sampling"
                settings: sampling
                generating: controller.generating
            }
            StatsPanel {
                anchors.fill: parent
                anchors.leftMargin: 1
                visible: window.sidePanel === "stats"
                models: models
                controller: controller
                memory: memory
            }
            ServerPanel {
                anchors.fill: parent
                anchors.leftMargin: 1
                visible: window.sidePanel === "server"
                server: localServer
                models: models
            }
        }
    }

    // "Deleted <chat>  Undo": a deleted chat can be brought back until the next deletion.
    Rectangle {
        id: undoBar
        anchors.horizontalCenter: parent.horizontalCenter
        anchors.bottom: parent.bottom
        anchors.bottomMargin: 96
        width: undoRow.implicitWidth + 24
        height: undoRow.implicitHeight + 12
        radius: 6
        color: Theme.text
        visible: chatList.canUndoRemove && undoTimer.running
        RowLayout {
            id: undoRow
            anchors.centerIn: parent
            Label {
                text: qsTr("Deleted “%1”").arg(chatList.removedTitle)
                color: Theme.window
            }
            Button {
                text: qsTr("Undo")
                Accessible.name: qsTr("Undo deleting the chat")
                onClicked: chatList.undoRemove()
            }
        }
        Timer {
            id: undoTimer
            interval: 8000
        }
        Connections {
            target: chatList
            function onChatRemoved() { undoTimer.restart() }
        }
    }
}
