// Resident memory of this process split into weights / KV cache / the rest, and the machine's
// memory: used by this process, used by everything else, available. Updated by MemoryMonitor.
pragma ComponentBehavior: Bound
import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import QinsChat

ColumnLayout {
    id: root

    required property MemoryMonitor memory

    spacing: 6
    Accessible.role: Accessible.Chart
    Accessible.name: qsTr("Memory: this process uses %1 of %2; %3 available")
        .arg(Format.bytes(root.memory.residentBytes)).arg(Format.bytes(root.memory.totalBytes))
        .arg(Format.bytes(root.memory.availableBytes))

    component Bar: Item {
        id: bar
        required property real total
        required property list<real> parts
        required property list<color> colors
        implicitHeight: 14
        Rectangle {
            anchors.fill: parent
            radius: 4
            color: Theme.gaugeTrack
        }
        Row {
            anchors.fill: parent
            Repeater {
                model: bar.parts.length
                delegate: Rectangle {
                    required property int index
                    width: bar.total > 0 ? Math.max(0, bar.width * bar.parts[index] / bar.total) : 0
                    height: bar.height
                    color: bar.colors[index]
                    radius: 2
                }
            }
        }
    }
    component Legend: RowLayout {
        id: legend
        required property color swatch
        required property string name
        required property real bytes
        spacing: 6
        Rectangle {
            implicitWidth: 10
            implicitHeight: 10
            radius: 2
            color: legend.swatch
        }
        Label {
            Layout.fillWidth: true
            text: legend.name
            color: Theme.text
        }
        Label {
            text: Format.bytes(legend.bytes)
            color: Theme.mutedText
            font.family: Theme.monoFamily
        }
    }

    RowLayout {
        Layout.fillWidth: true
        Label {
            Layout.fillWidth: true
            text: qsTr("This process")
            color: Theme.text
            font.bold: true
        }
        Label {
            text: Format.bytes(root.memory.residentBytes)
            color: Theme.text
            font.family: Theme.monoFamily
        }
    }
    Bar {
        Layout.fillWidth: true
        total: root.memory.residentBytes
        parts: [root.memory.weightBytes, root.memory.kvCacheBytes, root.memory.otherBytes]
        colors: [Theme.gaugeWeights, Theme.gaugeKvCache, Theme.gaugeOther]
    }
    Legend {
        Layout.fillWidth: true
        swatch: Theme.gaugeWeights
        name: qsTr("Model weights")
        bytes: root.memory.weightBytes
    }
    Legend {
        Layout.fillWidth: true
        swatch: Theme.gaugeKvCache
        name: qsTr("KV cache")
        bytes: root.memory.kvCacheBytes
    }
    Legend {
        Layout.fillWidth: true
        swatch: Theme.gaugeOther
        name: qsTr("Everything else")
        bytes: root.memory.otherBytes
    }

    RowLayout {
        Layout.fillWidth: true
        Layout.topMargin: 8
        Label {
            Layout.fillWidth: true
            text: qsTr("This computer")
            color: Theme.text
            font.bold: true
        }
        Label {
            text: Format.bytes(root.memory.totalBytes)
            color: Theme.text
            font.family: Theme.monoFamily
        }
    }
    Bar {
        Layout.fillWidth: true
        total: root.memory.totalBytes
        parts: [root.memory.residentBytes,
                Math.max(0, root.memory.totalBytes - root.memory.availableBytes - root.memory.residentBytes)]
        colors: [Theme.accent, Theme.mutedText]
    }
    Legend {
        Layout.fillWidth: true
        swatch: Theme.accent
        name: qsTr("QINS Chat")
        bytes: root.memory.residentBytes
    }
    Legend {
        Layout.fillWidth: true
        swatch: Theme.mutedText
        name: qsTr("Other programs")
        bytes: Math.max(0, root.memory.totalBytes - root.memory.availableBytes - root.memory.residentBytes)
    }
    Legend {
        Layout.fillWidth: true
        swatch: Theme.gaugeTrack
        name: qsTr("Available")
        bytes: root.memory.availableBytes
    }
}
