"""Choosing where the rig is: the virtual rig, one duplex device, or separate output and input
devices, plus the mic's channel convention. The choice is remembered in the app settings.

``DeviceChoice`` is what is chosen (saved/loaded as ``devices/*`` keys, applied to
``LiveOptions``); ``check_choice`` says in one sentence what is wrong with a choice on the
devices PortAudio sees (e.g. an input with fewer than 4 channels); ``DevicesDialog`` is the
form. Device names, not indices, are stored: indices change when devices come and go.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from PyQt6 import QtWidgets
from PyQt6.QtCore import QSettings

from bgm2pose.sensing.backends import MIC_CHANNELS, SPEAKER_CHANNELS, DeviceInfo
from bgm2pose.sensing.bformat import CONVENTIONS

BACKENDS = ("virtual", "duplex", "split")
_BACKEND_LABEL = {"virtual": "Virtual rig (simulated room and person)",
                  "duplex": "One device (plays and records)",
                  "split": "Separate output and input devices"}
_CONVENTION_LABEL = {"ambix": "AmbiX (ACN/SN3D: W Y Z X)", "fuma": "FuMa (W X Y Z, W -3 dB)",
                     "internal": "Internal (W X Y Z, SN3D)"}


@dataclass(frozen=True)
class DeviceChoice:
    backend: str = "virtual"  # one of BACKENDS
    device: str | None = None  # duplex
    output_device: str | None = None  # split
    input_device: str | None = None  # split
    convention: str = "ambix"  # one of bformat.CONVENTIONS

    @property
    def devices(self) -> tuple[str, str] | None:
        """(output, input) device names for a real rig, None for the virtual one."""
        if self.backend == "duplex" and self.device:
            return self.device, self.device
        if self.backend == "split" and self.output_device and self.input_device:
            return self.output_device, self.input_device
        return None

    def save(self, settings: QSettings) -> None:
        for f in dataclasses.fields(self):
            settings.setValue(f"devices/{f.name}", getattr(self, f.name) or "")

    @classmethod
    def load(cls, settings: QSettings) -> DeviceChoice:
        values = {f.name: str(settings.value(f"devices/{f.name}", f.default or "")) or None
                  for f in dataclasses.fields(cls)}
        backend = values["backend"] if values["backend"] in BACKENDS else "virtual"
        convention = values["convention"] if values["convention"] in CONVENTIONS else "ambix"
        return cls(backend, values["device"], values["output_device"], values["input_device"],
                   convention)

    def apply(self, options):
        """``LiveOptions`` with this choice's backend, devices and convention."""
        return dataclasses.replace(options, backend=self.backend, device=self.device,
                                   output_device=self.output_device,
                                   input_device=self.input_device, convention=self.convention)


def check_choice(choice: DeviceChoice, devices: list[DeviceInfo]) -> str | None:
    """None if ``choice`` can run on ``devices``, else one sentence with the cause and the fix."""
    if choice.backend == "virtual":
        return None
    by_name = {d.name: d for d in devices}
    needs = ([(choice.device, "in"), (choice.device, "out")] if choice.backend == "duplex"
             else [(choice.input_device, "in"), (choice.output_device, "out")])
    for name, side in needs:
        if not name:
            return f"no {'input' if side == 'in' else 'output'} device is chosen; pick one"
        info = by_name.get(name)
        if info is None:
            return f"device {name!r} is not connected; plug it in or choose another"
        if side == "in" and info.max_input_channels < MIC_CHANNELS:
            return (f"input {name!r} has {info.max_input_channels} channel(s) but a first-order "
                    f"ambisonic mic needs {MIC_CHANNELS} (W X Y Z); choose the mic's 4-channel "
                    "interface")
        if side == "out" and info.max_output_channels < SPEAKER_CHANNELS:
            return (f"output {name!r} has {info.max_output_channels} channel(s) but the rig "
                    f"plays on {SPEAKER_CHANNELS} speakers; choose a stereo output")
    return None


class DevicesDialog(QtWidgets.QDialog):
    """The form; ``choice()`` is what it shows. OK is refused while the choice is invalid."""

    def __init__(self, choice: DeviceChoice, devices: list[DeviceInfo],
                 parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Audio devices")
        self.devices = devices
        self.backend = QtWidgets.QComboBox()
        for b in BACKENDS:
            self.backend.addItem(_BACKEND_LABEL[b], b)
        self.device = self._device_combo(lambda d: d.max_input_channels > 0
                                         and d.max_output_channels > 0)
        self.output_device = self._device_combo(lambda d: d.max_output_channels > 0)
        self.input_device = self._device_combo(lambda d: d.max_input_channels > 0)
        self.convention = QtWidgets.QComboBox()
        for c in ("ambix", "fuma", "internal"):
            self.convention.addItem(_CONVENTION_LABEL[c], c)
        self.message = QtWidgets.QLabel()
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #d05050")
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Ok
                                             | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.ok_button = buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Ok)

        form = QtWidgets.QFormLayout(self)
        form.addRow("Rig", self.backend)
        form.addRow("Device", self.device)
        form.addRow("Output (speakers)", self.output_device)
        form.addRow("Input (mic)", self.input_device)
        form.addRow("Mic convention", self.convention)
        form.addRow(self.message)
        form.addRow(buttons)
        if not devices:
            self.message.setText("PortAudio sees no audio devices; only the virtual rig can run")

        self.set_choice(choice)
        for combo in (self.backend, self.device, self.output_device, self.input_device,
                      self.convention):
            combo.currentIndexChanged.connect(self._update)
        self._update()

    def _device_combo(self, keep) -> QtWidgets.QComboBox:
        combo = QtWidgets.QComboBox()
        for d in self.devices:
            if keep(d):
                combo.addItem(f"{d.name}  ({d.max_input_channels} in, "
                              f"{d.max_output_channels} out, {d.host_api})", d.name)
        return combo

    def set_choice(self, choice: DeviceChoice) -> None:
        for combo, value in ((self.backend, choice.backend), (self.device, choice.device),
                             (self.output_device, choice.output_device),
                             (self.input_device, choice.input_device),
                             (self.convention, choice.convention)):
            i = combo.findData(value)
            if i >= 0:
                combo.setCurrentIndex(i)

    def choice(self) -> DeviceChoice:
        backend = self.backend.currentData()
        return DeviceChoice(
            backend=backend,
            device=self.device.currentData() if backend == "duplex" else None,
            output_device=self.output_device.currentData() if backend == "split" else None,
            input_device=self.input_device.currentData() if backend == "split" else None,
            convention=self.convention.currentData())

    def _update(self) -> None:
        backend = self.backend.currentData()
        self.device.setEnabled(backend == "duplex")
        self.output_device.setEnabled(backend == "split")
        self.input_device.setEnabled(backend == "split")
        self.convention.setEnabled(backend != "virtual")
        problem = check_choice(self.choice(), self.devices)
        self.message.setText(problem[0].upper() + problem[1:] + "." if problem else "")
        self.ok_button.setEnabled(problem is None)
