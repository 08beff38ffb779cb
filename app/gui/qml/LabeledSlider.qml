// A slider with its name and value on one line above it.
import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import QinsChat

ColumnLayout {
    id: root

    property string label
    property string hint
    property real value
    property real from: 0
    property real to: 1
    property real stepSize: 0.01
    property int decimals: 2
    signal moved(real value)

    spacing: 0

    RowLayout {
        Layout.fillWidth: true
        Label {
            Layout.fillWidth: true
            text: root.label
            color: Theme.text
        }
        Label {
            text: root.hint.length > 0 && root.value === root.from ? root.hint : root.value.toFixed(root.decimals)
            color: Theme.mutedText
            font.family: Theme.monoFamily
        }
    }
    Slider {
        id: slider
        Layout.fillWidth: true
        from: root.from
        to: root.to
        stepSize: root.stepSize
        snapMode: Slider.SnapAlways
        value: root.value
        Accessible.name: root.label
        onMoved: root.moved(slider.value)
    }
}
