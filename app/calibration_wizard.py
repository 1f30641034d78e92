"""The calibration wizard: measure the speakers -> mic latency of the chosen devices, show the
impulse responses and the result, and save it as the devices' calibration profile.

The measurement (``calibration.latency.measure_latency``, ~16 s of sine sweeps) runs in a
worker thread; the worker only stores its progress and outcome in attributes, which the
dialog's timer shows (no Qt call leaves the GUI thread). On the virtual rig the room is
empty (nobody stands in the direct paths) and the rig runs as fast as it can.

Profiles are kept per (output device, input device, sample rate); the virtual rig's is saved
under the name ``VIRTUAL_DEVICE`` for both.
"""

from __future__ import annotations

import threading

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtWidgets

from bgm2pose.app.devices_dialog import DeviceChoice
from bgm2pose.calibration.latency import CalibrationResult, measure_latency
from bgm2pose.calibration.profiles import Profile, save_profile
from bgm2pose.sensing.errors import UserError

VIRTUAL_DEVICE = "virtual rig"
IR_SHOWN_MS = 40.0  # of each impulse response: the direct path and the first reflections
_SPEAKER_PENS = ("#4c9aff", "#ff8a1f")


def backend_factory(choice: DeviceChoice):
    """``make_backend(player)`` for the chosen devices, as ``measure_latency`` wants it."""
    if choice.backend == "virtual":
        from bgm2pose.sensing.backend_virtual import VirtualBackend, VirtualScene

        return lambda player: VirtualBackend(player, VirtualScene(subject=None), realtime=False)
    if choice.backend == "duplex":
        from bgm2pose.sensing.backend_duplex import DuplexBackend

        return lambda player: DuplexBackend(player, choice.device,
                                            mic_convention=choice.convention)
    from bgm2pose.sensing.backend_split import SplitBackend

    return lambda player: SplitBackend(player, choice.output_device, choice.input_device,
                                       convention=choice.convention)


def device_pair(choice: DeviceChoice) -> tuple[str, str]:
    return choice.devices or (VIRTUAL_DEVICE, VIRTUAL_DEVICE)


def result_text(result: CalibrationResult) -> str:
    rate = result.sample_rate
    lines = [
        f"Device round trip: {result.device_latency_samples:.2f} samples "
        f"({1000 * result.device_latency_samples / rate:.2f} ms)",
        "Speaker latency (L, R): " + ", ".join(f"{x:.2f}" for x in result.latency_samples)
        + " samples",
        "Implied distances (L, R): " + ", ".join(f"{d:.2f}" for d in result.distances_m)
        + " m",
        f"SNR: {result.snr_db:.0f} dB",
    ]
    if result.clock_ratio != 1.0:
        lines.append(f"Clock drift: {(result.clock_ratio - 1) * 1e6:+.1f} ppm")
    lines += [f"⚠ {w}" for w in result.warnings]
    return "\n".join(lines)


class CalibrationWizard(QtWidgets.QDialog):
    def __init__(self, choice: DeviceChoice, parent: QtWidgets.QWidget | None = None,
                 make_backend=None):
        super().__init__(parent)
        self.setWindowTitle("Calibrate latency")
        self.choice = choice
        self.make_backend = make_backend or backend_factory(choice)
        self.result: CalibrationResult | None = None
        self.saved_path = None
        self._thread: threading.Thread | None = None
        self._progress = (0.0, "")
        self._outcome: CalibrationResult | str | None = None

        output, input_ = device_pair(choice)
        intro = QtWidgets.QLabel(
            f"Output: <b>{output}</b> &nbsp; Input: <b>{input_}</b><br>"
            "Sine sweeps play on each speaker in turn. Keep the room quiet and do not stand "
            "between the speakers and the microphone.")
        intro.setWordWrap(True)
        self.level = QtWidgets.QDoubleSpinBox()
        self.level.setRange(-60, 0)
        self.level.setValue(-20)
        self.level.setSuffix(" dBFS")
        self.repeats = QtWidgets.QSpinBox()
        self.repeats.setRange(1, 10)
        self.repeats.setValue(3)
        self.measure_button = QtWidgets.QPushButton("Measure")
        self.measure_button.clicked.connect(self.measure)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1000)
        self.message = QtWidgets.QLabel()
        self.message.setWordWrap(True)
        self.plot = pg.PlotWidget(title="Impulse responses (W channel)")
        self.plot.setLabel("bottom", "lag", units="ms")
        self.plot.addLegend()
        self.plot.setMinimumHeight(220)
        self.save_button = QtWidgets.QPushButton("Save profile")
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(self.save)
        close = QtWidgets.QPushButton("Close")
        close.clicked.connect(self.reject)

        form = QtWidgets.QFormLayout()
        form.addRow("Sweep level", self.level)
        form.addRow("Repeats", self.repeats)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.measure_button)
        buttons.addStretch(1)
        buttons.addWidget(self.save_button)
        buttons.addWidget(close)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addWidget(self.plot, 1)
        layout.addLayout(buttons)
        self.resize(640, 560)

        self._timer = QtCore.QTimer(self)
        self._timer.timeout.connect(self._poll)

    # -- measuring ----------------------------------------------------------------------------

    def measure(self) -> None:
        if self.running:
            return
        self.result, self._outcome = None, None
        self.save_button.setEnabled(False)
        self.measure_button.setEnabled(False)
        self.plot.clear()
        self.message.setText("Measuring…")
        level, repeats = self.level.value(), self.repeats.value()
        self._thread = threading.Thread(target=self._work, args=(level, repeats),
                                        name="calibration", daemon=True)
        self._thread.start()
        self._timer.start(100)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _work(self, level: float, repeats: int) -> None:
        def progress(fraction: float, text: str) -> None:
            self._progress = (fraction, text)

        try:
            self._outcome = measure_latency(self.make_backend, level_db=level, repeats=repeats,
                                            progress=progress)
        except UserError as exc:
            self._outcome = str(exc)
        except Exception as exc:  # a bug: report it in the dialog rather than lose it
            self._outcome = f"{type(exc).__name__}: {exc}"

    def _poll(self) -> None:
        fraction, text = self._progress
        self.progress.setValue(int(1000 * fraction))
        if self.running:
            self.message.setText(text)
            return
        self._timer.stop()
        self.measure_button.setEnabled(True)
        outcome = self._outcome
        if isinstance(outcome, CalibrationResult):
            self.show_result(outcome)
        else:
            self.message.setText(f"Calibration failed: {outcome}")

    def show_result(self, result: CalibrationResult) -> None:
        self.result = result
        self.progress.setValue(1000)
        self.message.setText(result_text(result))
        n = min(result.impulse_responses.shape[-1],
                int(IR_SHOWN_MS / 1000 * result.sample_rate))
        lag_ms = np.arange(n) * 1000 / result.sample_rate
        for speaker, (name, pen) in enumerate(zip(("left", "right"), _SPEAKER_PENS)):
            self.plot.plot(lag_ms, result.impulse_responses[speaker, 0, :n], pen=pen,
                           name=f"{name} speaker")
        self.save_button.setEnabled(True)

    # -- saving -------------------------------------------------------------------------------

    def save(self) -> None:
        if self.result is None:
            return
        output, input_ = device_pair(self.choice)
        profile = Profile.from_result(self.result, output, input_, self.choice.convention)
        try:
            self.saved_path = save_profile(profile)
        except (UserError, OSError) as exc:
            self.message.setText(f"{self.message.text()}\nNot saved: {exc}")
            return
        self.save_button.setEnabled(False)
        self.message.setText(f"{self.message.text()}\nSaved to {self.saved_path}")

    def reject(self) -> None:
        if self.running:  # the measurement holds the device; let it finish first
            self.message.setText("Wait for the measurement to finish (a few seconds).")
            return
        super().reject()
