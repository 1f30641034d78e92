"""The desktop app's main window: playlist, live 3D skeleton, spectrograms, levels, status.

Threads: the GUI thread never waits on audio or inference. A ``LiveEngine`` is built and
started in a helper thread (the model warm-up and the first track's decoding take seconds);
the window picks it up on its timer. Two timers then read what the engine's threads wrote:
``POSE_HZ`` for the newest poses (``engine.feed.latest()``), ``SLOW_HZ`` for the rings
(spectrograms, levels), the player's status (playlist) and the live figures (status bar).

Options: ``base_options`` (model, seed, realtime, ...) with the remembered ``DeviceChoice``
and the playlist applied on each start. An empty playlist plays generated music the model did
not train on, and the virtual rig's subject defaults to one it did not (``LiveEngine``).

Teach… opens the Teach workflow (``teach_panel``): a camera (or the virtual rig's truth)
labels the live music, the running model is fine-tuned on it in a child process and swapped
in without stopping; later starts use the taught model too.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from PyQt6 import QtCore, QtGui, QtWidgets
from PyQt6.QtCore import QSettings

from bgm2pose.app.audio_views import LevelMeters, SpectrogramView
from bgm2pose.app.devices_dialog import DeviceChoice, DevicesDialog, check_choice
from bgm2pose.app.live_engine import LiveEngine, LiveOptions
from bgm2pose.app.playlist_panel import PlaylistPanel
from bgm2pose.app.recording import new_session_folder, recordings_folder, start_recorder
from bgm2pose.app.skeleton_view import SkeletonPanel, SkeletonView
from bgm2pose.app.teach_panel import TeachDialog
from bgm2pose.models.posefeed import LiveStats
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.recorder import SessionRecorder

POSE_HZ = 30
SLOW_HZ = 10


def status_text(stats: LiveStats) -> str:
    """The live figures in one line: backend, latency, drift, rate, timings, losses, accuracy."""
    parts = [stats.backend, f"latency {stats.latency_samples:.1f} samples"]
    if stats.drift_ppm is not None:
        parts.append(f"drift {stats.drift_ppm:+.1f} ppm")
    parts += [f"{stats.windows_per_s:.1f} windows/s", f"features {stats.features_ms:.1f} ms",
              f"inference {stats.inference_ms:.1f} ms", f"end-to-end {stats.e2e_ms:.0f} ms",
              f"xruns {stats.xruns}", f"dropped {stats.dropped}", f"flagged {stats.flagged}"]
    if stats.mae is not None:
        parts.append(stats.mae_text())
    if stats.pckh is not None:
        parts.append(f"PCKh@0.5 {100 * stats.pckh:.1f}%")
    return "  |  ".join(parts)


def profile_warning(choice: DeviceChoice, sample_rate: int = 48_000) -> str | None:
    """A warning when real devices are chosen and no saved calibration covers them."""
    pair = choice.devices
    if pair is None:
        return None
    from bgm2pose.calibration.profiles import load_profile

    if load_profile(pair[0], pair[1], sample_rate) is None:
        return (f"No calibration profile for {pair[0]} -> {pair[1]}: run Calibrate… before "
                "going live")
    return None


class MainWindow(QtWidgets.QMainWindow):
    engine_started = QtCore.pyqtSignal()

    def __init__(self, base_options: LiveOptions, settings: QSettings,
                 engine_factory: Callable[[LiveOptions], LiveEngine] = LiveEngine,
                 list_devices: Callable[[], list] | None = None):
        super().__init__()
        self.setWindowTitle("bgm2pose — pose from background music")
        self.base_options = base_options
        self.settings = settings
        self.engine_factory = engine_factory
        self._list_devices = list_devices
        self.choice = DeviceChoice.load(settings)
        self.engine: LiveEngine | None = None
        self._starting: Future | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="engine-start")
        self._last_seq = -1
        self._recorder: SessionRecorder | None = None
        self.teach_dialog: TeachDialog | None = None

        self.view = SkeletonView()
        self.view_panel = SkeletonPanel(self.view)
        self.playlist = PlaylistPanel(settings)
        self.played = SpectrogramView("Played (speakers, L+R)")
        self.recorded = SpectrogramView("Recorded (mic, W X Y Z mixed)")
        self.meters = LevelMeters()
        self.live_label = QtWidgets.QLabel("Stopped")
        self.warning_label = QtWidgets.QLabel()
        self.warning_label.setStyleSheet("color: #e0a030")
        self.statusBar().addWidget(self.live_label, 1)
        self.statusBar().addPermanentWidget(self.warning_label)

        self._build_toolbar()
        side = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        side.addWidget(self.played)
        side.addWidget(self.recorded)
        side.addWidget(self.meters)
        main = QtWidgets.QSplitter()
        main.addWidget(self.playlist)
        main.addWidget(self.view_panel)
        main.addWidget(side)
        main.setStretchFactor(1, 3)
        main.setSizes([300, 900, 380])
        self.setCentralWidget(main)
        self.resize(1600, 900)

        self.playlist.play_requested.connect(self.start)
        self.playlist.restart_requested.connect(self.restart)
        self._pose_timer = QtCore.QTimer(self)
        self._pose_timer.timeout.connect(self.refresh_pose)
        self._pose_timer.start(1000 // POSE_HZ)
        self._slow_timer = QtCore.QTimer(self)
        self._slow_timer.timeout.connect(self.refresh_live)
        self._slow_timer.start(1000 // SLOW_HZ)
        self._update_warning()

    def _build_toolbar(self) -> None:
        bar = self.addToolBar("Live")
        bar.setObjectName("live-toolbar")
        self.start_action = bar.addAction("▶ Start", self.toggle_running)
        bar.addAction("Devices…", self.choose_devices)
        bar.addAction("Calibrate…", self.calibrate)
        bar.addAction("Teach…", self.teach)
        self.record_action = bar.addAction("● Record", self.toggle_recording)
        self.record_action.setCheckable(True)

    # -- lifecycle ------------------------------------------------------------------------------

    def live_options(self) -> LiveOptions:
        options = self.choice.apply(self.base_options)
        return dataclasses.replace(options, tracks=self.playlist.model.paths()
                                   or list(self.base_options.tracks))

    def start(self, record_to: Path | None = None) -> None:
        """Build and start the live engine in a helper thread (no-op if running/starting);
        with ``record_to``, a session recorder starts with it."""
        if self.engine is not None or self._starting is not None:
            return
        options = self.live_options()
        self.live_label.setText(f"Starting the {options.backend} rig…")
        self.start_action.setEnabled(False)
        self._starting = self._executor.submit(self._build_engine, options, record_to)

    def _build_engine(self, options: LiveOptions, record_to: Path | None
                      ) -> tuple[LiveEngine, SessionRecorder | None]:
        engine = self.engine_factory(options)
        recorder = None if record_to is None else start_recorder(engine, record_to)
        try:
            engine.start()
        except BaseException:
            if recorder is not None:
                recorder.stop()
            raise
        return engine, recorder

    def _engine_ready(self) -> None:
        future, self._starting = self._starting, None
        self.start_action.setEnabled(True)
        try:
            engine, self._recorder = future.result()
        except UserError as exc:
            self.record_action.setChecked(False)
            self.live_label.setText(f"Cannot start: {exc}")
            return
        except Exception as exc:  # a bug: show it rather than die in the helper thread
            self.record_action.setChecked(False)
            self.live_label.setText(f"Cannot start: {type(exc).__name__}: {exc}")
            return
        self.engine = engine
        self._last_seq = -1
        self.view.set_rig(engine.rig)
        self.played.follow(engine.player.reference)
        self.recorded.follow(engine.backend.recorded)
        self.meters.follow(engine.backend.recorded)
        self.playlist.attach(engine.player, mirrors=bool(self.playlist.model.paths()))
        self.start_action.setText("■ Stop")
        self._update_warning()
        self.engine_started.emit()

    def stop(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.stop()
        self._finish_recording(engine)
        self.playlist.detach()
        for view in (self.played, self.recorded, self.meters):
            view.follow(None)
        self.view.set_pose(None)
        self.view.set_ghost(None)
        self.view_panel.show_accuracy(None)
        self.start_action.setText("▶ Start")
        self.live_label.setText("Stopped")
        self._update_warning()

    def restart(self) -> None:
        if self.engine is not None:
            self.stop()
            self.start()

    def toggle_running(self) -> None:
        if self.engine is None:
            self.start()
        else:
            self.stop()

    def wait_started(self, timeout: float) -> bool:
        """Process events until the engine runs (tests, demo); True if it does."""
        deadline = time.monotonic() + timeout
        while self.engine is None and time.monotonic() < deadline:
            QtWidgets.QApplication.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
            if self._starting is None and self.engine is None:
                return False
        return self.engine is not None

    def screenshot(self) -> QtGui.QImage:
        """The window as it looks, 3D view included."""
        return self.view_panel.grab_with_view(self)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        if self.teach_dialog is not None:
            self.teach_dialog.cancel()  # a training process must not outlive the window
        if self._starting is not None:
            engine_future, self._starting = self._starting, None
            engine_future.add_done_callback(_discard_started)
        self.stop()
        self._executor.shutdown(wait=False)
        self.playlist.model.save(self.settings)
        self.settings.sync()
        super().closeEvent(event)

    # -- timers ---------------------------------------------------------------------------------

    def refresh_pose(self) -> None:
        if self.engine is None:
            return
        update, _ = self.engine.feed.latest()
        if update is None or update.seq == self._last_seq:
            return
        self._last_seq = update.seq
        self.view.set_pose(update.poses[-1])
        self.view.set_ghost(None if update.truth is None else update.truth[-1])

    def refresh_live(self) -> None:
        if self._starting is not None and self._starting.done():
            self._engine_ready()
        if self.engine is None:
            return
        self.played.refresh()
        self.recorded.refresh()
        self.meters.refresh()
        self.playlist.refresh()
        _, stats = self.engine.feed.latest()
        if stats is not None:
            text = status_text(stats)
            self.live_label.setText(f"{text}  |  {stats.status}" if stats.status else text)
            self.view_panel.show_accuracy(stats.mae_text())
        if self._recorder is not None:
            self.record_action.setText(f"● Recording {self._recorder.seconds:.0f} s")

    # -- dialogs --------------------------------------------------------------------------------

    def choose_devices(self) -> None:
        from bgm2pose.sensing.backends import list_devices

        devices = (self._list_devices or list_devices)()
        dialog = DevicesDialog(self.choice, devices, self)
        if dialog.exec() != QtWidgets.QDialog.DialogCode.Accepted:
            return
        self.set_choice(dialog.choice())

    def set_choice(self, choice: DeviceChoice) -> None:
        """Use and remember ``choice``; a running pipeline restarts on it."""
        self.choice = choice
        choice.save(self.settings)
        self._update_warning()
        self.restart()

    def _update_warning(self) -> None:
        """Device problems, and the running engine's warnings (skipped music files, a
        subject or track the model trained on)."""
        warnings = [] if self.engine is None else list(self.engine.warnings)
        if self.choice.devices is not None:
            devices = (self._list_devices or _safe_devices)()
            warnings.insert(0, check_choice(self.choice, devices) or profile_warning(self.choice))
        self.warning_label.setText("\n".join(w for w in warnings if w))

    def calibrate(self) -> None:
        from bgm2pose.app.calibration_wizard import CalibrationWizard

        if self.engine is not None:
            self.stop()
        CalibrationWizard(self.choice, self).exec()
        self._update_warning()

    def teach(self) -> None:
        """The Teach dialog: one, kept, so a training left running in the background shows
        its progress when the dialog is opened again."""
        if self.teach_dialog is None:
            self.teach_dialog = TeachDialog(lambda: self.engine, self.settings, self)
            self.teach_dialog.model_taught.connect(self._use_taught_model)
        self.teach_dialog.show()
        self.teach_dialog.raise_()

    def _use_taught_model(self, model: Path) -> None:
        """Later starts run the taught model too (the running engine has it already)."""
        self.base_options = dataclasses.replace(self.base_options, model=model)

    # -- recording ------------------------------------------------------------------------------

    def toggle_recording(self) -> None:
        """Record: a recorder joins the running pipeline at the rings' current end (nothing
        restarts), or, with none running, the pipeline starts with a recorder from its first
        sample; stop recording: close the session, the pipeline keeps running."""
        if self.record_action.isChecked():
            if self._recorder is not None:
                return
            if self._starting is not None:  # the engine is not there yet to join
                self.record_action.setChecked(False)
                return
            folder = new_session_folder(recordings_folder(self.settings))
            if self.engine is None:
                self.start(record_to=folder)
                return
            try:
                self._recorder = start_recorder(self.engine, folder, from_now=True)
            except UserError as exc:
                self.record_action.setChecked(False)
                self.statusBar().showMessage(f"Cannot record: {exc}", 15_000)
        elif self._recorder is not None:
            self._finish_recording(self.engine)

    def _finish_recording(self, engine: LiveEngine | None) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            return
        self.record_action.setChecked(False)
        self.record_action.setText("● Record")
        folder = recorder.stop(None if engine is None else engine.aligner.latency)
        problem = f" ({recorder.error})" if recorder.error else ""
        self.statusBar().showMessage(
            f"Recorded {recorder.seconds:.1f} s into {folder}{problem}", 15_000)


def _discard_started(future: Future) -> None:
    """Stop an engine (and recorder) that finished starting after the window closed."""
    if future.exception() is None:
        engine, recorder = future.result()
        engine.stop()
        if recorder is not None:
            recorder.stop(engine.aligner.latency)


def _safe_devices() -> list:
    """The devices PortAudio sees, or none when PortAudio itself is unavailable."""
    try:
        from bgm2pose.sensing.backends import list_devices

        return list_devices()
    except Exception:  # no PortAudio library, no sound server: the virtual rig still works
        return []
