"""The calibration wizard on the virtual rig: measures, plots the impulse responses, saves a
profile; the main window warns about real devices that have no profile."""

from __future__ import annotations

from bgm2pose.app.calibration_wizard import VIRTUAL_DEVICE, CalibrationWizard
from bgm2pose.app.devices_dialog import DeviceChoice
from bgm2pose.app.live_engine import LiveOptions
from bgm2pose.app.main_window import MainWindow
from bgm2pose.calibration.profiles import Profile, list_profiles, load_profile, save_profile
from bgm2pose.sensing.backends import DeviceInfo
from bgm2pose.sensing.sim.rig import SPEED_OF_SOUND, Rig


def test_wizard_measures_the_virtual_rig_and_saves_its_profile(qtbot, settings):
    wizard = CalibrationWizard(DeviceChoice())
    qtbot.addWidget(wizard)
    wizard.repeats.setValue(1)
    assert load_profile(VIRTUAL_DEVICE, VIRTUAL_DEVICE, 48_000) is None
    wizard.measure_button.click()
    qtbot.waitUntil(lambda: wizard.result is not None or "failed" in wizard.message.text(),
                    timeout=120_000)
    assert wizard.result is not None, wizard.message.text()
    assert wizard.progress.value() == 1000
    # The virtual rig's device round trip is 0; each speaker adds its flight time.
    rig = Rig()
    result = wizard.result
    assert abs(result.device_latency_samples) < 0.5
    for speaker, latency in zip(rig.speakers, result.latency_samples):
        flight = ((speaker - rig.mic_position) ** 2).sum() ** 0.5 / SPEED_OF_SOUND * 48_000
        assert abs(latency - flight) < 1.0
    assert "Device round trip" in wizard.message.text()
    assert len(wizard.plot.getPlotItem().listDataItems()) == 2

    assert wizard.save_button.isEnabled()
    wizard.save_button.click()
    profile = load_profile(VIRTUAL_DEVICE, VIRTUAL_DEVICE, 48_000)
    assert profile is not None and profile.latency_samples == result.device_latency_samples
    assert wizard.saved_path.exists() and "Saved to" in wizard.message.text()
    assert len(list_profiles()) == 1


def test_live_view_warns_when_the_chosen_devices_have_no_profile(qtbot, settings):
    devices = [DeviceInfo(3, "Ambi interface", "ALSA", 4, 2, 48_000.0)]
    window = MainWindow(LiveOptions(), settings, list_devices=lambda: devices)
    qtbot.addWidget(window)
    assert window.warning_label.text() == ""  # the virtual rig needs no calibration
    window.set_choice(DeviceChoice("duplex", device="Ambi interface"))
    assert "No calibration profile" in window.warning_label.text()
    save_profile(Profile("Ambi interface", "Ambi interface", 48_000, 312.5, "2025-01-01"))
    window.set_choice(DeviceChoice("duplex", device="Ambi interface"))
    assert window.warning_label.text() == ""
