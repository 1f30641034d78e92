"""Device choice: remembered between runs, refused with a clear message when the input cannot
be a B-format mic, and a warning in the live view when the devices are not calibrated."""

from __future__ import annotations

from bgm2pose.app.devices_dialog import DeviceChoice, DevicesDialog, check_choice
from bgm2pose.app.live_engine import LiveOptions
from bgm2pose.app.main_window import MainWindow
from bgm2pose.app.settings import app_settings
from bgm2pose.sensing.backends import DeviceInfo

DEVICES = [
    DeviceInfo(0, "Laptop speakers", "ALSA", 2, 2, 48_000.0),
    DeviceInfo(1, "Ambi interface", "ALSA", 4, 2, 48_000.0),
    DeviceInfo(2, "USB stereo mic", "ALSA", 2, 0, 48_000.0),
]


def test_device_choice_persists_between_runs(qtbot, settings):
    dialog = DevicesDialog(DeviceChoice(), DEVICES)
    qtbot.addWidget(dialog)
    dialog.backend.setCurrentIndex(dialog.backend.findData("split"))
    dialog.output_device.setCurrentIndex(dialog.output_device.findData("Laptop speakers"))
    dialog.input_device.setCurrentIndex(dialog.input_device.findData("Ambi interface"))
    dialog.convention.setCurrentIndex(dialog.convention.findData("fuma"))
    chosen = dialog.choice()
    assert dialog.ok_button.isEnabled()

    window = MainWindow(LiveOptions(), settings, list_devices=lambda: DEVICES)
    qtbot.addWidget(window)
    window.set_choice(chosen)
    window.close()
    settings.sync()

    restored = DeviceChoice.load(app_settings())
    assert restored == DeviceChoice("split", None, "Laptop speakers", "Ambi interface", "fuma")
    options = restored.apply(LiveOptions())
    assert (options.backend, options.output_device, options.input_device,
            options.convention) == ("split", "Laptop speakers", "Ambi interface", "fuma")
    again = MainWindow(LiveOptions(), app_settings(), list_devices=lambda: DEVICES)
    qtbot.addWidget(again)
    assert again.choice == restored


def test_an_input_with_fewer_than_four_channels_is_refused_with_the_reason(qtbot):
    dialog = DevicesDialog(DeviceChoice(), DEVICES)
    qtbot.addWidget(dialog)
    dialog.backend.setCurrentIndex(dialog.backend.findData("split"))
    dialog.output_device.setCurrentIndex(dialog.output_device.findData("Laptop speakers"))
    dialog.input_device.setCurrentIndex(dialog.input_device.findData("USB stereo mic"))
    assert not dialog.ok_button.isEnabled()
    assert "2 channel(s)" in dialog.message.text() and "needs 4" in dialog.message.text()
    dialog.input_device.setCurrentIndex(dialog.input_device.findData("Ambi interface"))
    assert dialog.ok_button.isEnabled() and dialog.message.text() == ""
    # The duplex form says the same about a stereo device.
    problem = check_choice(DeviceChoice("duplex", device="Laptop speakers"), DEVICES)
    assert problem is not None and "needs 4" in problem
    assert check_choice(DeviceChoice("duplex", device="Gone"), DEVICES).startswith(
        "device 'Gone' is not connected")
