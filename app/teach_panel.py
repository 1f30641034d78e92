"""The app's Teach workflow (issue 15): a pose teacher labels the live music for a few
minutes, the running model is fine-tuned on it in the background, and the taught model
replaces it without stopping the engine.

On the running engine (the music playing):

1. Camera on: the teacher starts (``teach.teacher_for``: MediaPipe Pose on a camera index or
   a video file, or on the virtual rig its truth with a camera's flaws). The preview shows the
   teacher's newest camera frame with the joints it found drawn over it; frames are held in
   memory only, never written.
2. Teach: a session recorder joins the running rings with the teacher as its labels
   (``recording.start_recorder``, the recorder ``run --record --teacher`` uses) for the chosen
   minutes, into ``<recordings folder>/teach-<time>/session``. Then the teacher stops and the
   camera is released, before training.
3. Train: ``bgm2pose train <teach folder> --init <the running model> --export`` in a child
   process, no validation subject (one person taught), windows every ``TAUGHT_HOP_FRAMES``;
   the progress bar follows its output (windows ready, each epoch, export).
4. Swap: a helper thread loads the exported model into the engine
   (``LiveEngine.use_model``), which the estimator takes between windows; ``model_taught``
   tells the window, so later starts use it too.

Training runs in a process, not a thread: on a 2-core machine torch would hold the GIL for
much of each step and spread over both cores, and the audio callback, the estimator and the
GUI would stall with it. In its own process, on one thread (``OMP_NUM_THREADS=1``) at a lower
priority (``nice``), it takes what those leave over; Cancel kills it, leaving no
half-trained state in the app.

Closing the dialog turns the camera off and drops an unfinished recording; a training goes
on in the background (the window's Teach… shows it again).

Errors (no camera, no ``[camera]`` extra, the engine stopping, a recording the disk refused,
too little confident teaching, a failed training) are one sentence in the dialog. Nothing
half-written stays: a recording that did not finish, or taught too little, is removed with
its folder; a training that failed or was cancelled is removed with its output, and the
complete recording is kept (to train on later with ``bgm2pose train``).

Like the calibration wizard, the helper thread only leaves its outcome in a future that the
dialog's timer reads: no Qt call leaves the GUI thread.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PyQt6 import QtCore, QtGui, QtWidgets
from PyQt6.QtCore import QSettings

from bgm2pose.app.live_engine import LiveEngine
from bgm2pose.app.recording import new_session_folder, recordings_folder, start_recorder
from bgm2pose.app.skeleton_view import joint_colours
from bgm2pose.app.teach import VIRTUAL_CAMERA_LATENCY_S, teacher_for
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.recorder import POSE_FPS, SessionRecorder
from bgm2pose.sensing.session import POSES_FILE
from bgm2pose.sensing.skeleton import BONES
from bgm2pose.sensing.teacher import PoseTeacher
from bgm2pose.sensing.teacher.align import MIN_CONFIDENCE
from bgm2pose.sensing.teacher.camera import CameraView

# Confident teaching below this (five 0.6 s windows) fine-tunes nothing worth swapping in.
MIN_TAUGHT_S = 3.0
# Windows every 150 ms: a few minutes of teaching give a thousand windows, not 300.
TAUGHT_HOP_FRAMES = 3
TRAIN_NICE = 10
PREVIEW_HZ = 15
SESSION_DIR = "session"
TRAINING_DIR = "training"
MODEL_NAME = "taught.onnx"
_KEY = "teach/"
# What the train verb prints (stdout): its windows, each epoch's summary, the export.
_WINDOWS_LINE = re.compile(r"^train: (\d+) windows")
_EPOCH_LINE = re.compile(r" epoch (\d+)/(\d+):")
_EXPORT_LINE = "export: wrote"
_CLI_ERROR = "bgm2pose train: error: "


def draw_view(view: CameraView, min_confidence: float = MIN_CONFIDENCE) -> QtGui.QImage:
    """The camera frame with the teacher's skeleton over it: its bones, and each joint it is
    at least ``min_confidence`` sure of as a dot of the 3D view's colour for it."""
    h, w, _ = view.image.shape
    image = QtGui.QImage(np.ascontiguousarray(view.image).data, w, h, 3 * w,
                         QtGui.QImage.Format.Format_RGB888).copy()
    if view.joints is None:
        return image
    xy = [QtCore.QPointF(float(x), float(y)) for x, y in view.joints * (w, h)]
    seen = view.confidence >= min_confidence
    size = max(3.0, w / 90)
    painter = QtGui.QPainter(image)
    painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
    painter.setPen(QtGui.QPen(QtGui.QColor(255, 255, 255, 220), size / 2))
    for a, b in BONES:
        if seen[a] and seen[b]:
            painter.drawLine(xy[a], xy[b])
    # A dark rim: the joint colours must show on any clothes.
    painter.setPen(QtGui.QPen(QtGui.QColor(20, 20, 20), size / 3))
    for j, colour in enumerate(joint_colours()):
        if seen[j]:
            painter.setBrush(QtGui.QColor.fromRgbF(*colour))
            painter.drawEllipse(xy[j], size, size)
    painter.end()
    return image


def taught_seconds(session: Path) -> float:
    """Seconds of a recorded session's pose frames the teacher was confident of."""
    path = session / POSES_FILE
    if not path.is_file():
        return 0.0
    poses = np.load(path)
    return float(np.isfinite(poses).all(axis=(1, 2)).sum()) / POSE_FPS


def train_command(folder: Path, init: Path, epochs: int, model: Path) -> list[str]:
    """The child process that fine-tunes ``init`` on the sessions under ``folder`` and
    exports the result to ``model``: ``bgm2pose train`` at a lower priority."""
    command = [sys.executable, "-m", "bgm2pose.app.cli", "train", str(folder),
               "--out", str(model.parent), "--init", str(init), "--epochs", str(epochs),
               "--val-subjects", "--hop-frames", str(TAUGHT_HOP_FRAMES), "--device", "cpu",
               "--export", str(model)]
    nice = shutil.which("nice")
    return [nice, "-n", str(TRAIN_NICE), *command] if nice else command


def failure(stderr: str, exit_code: int) -> str:
    """The sentence a failed training process left: the verb's own error, else its last
    line (an unexpected exception's type and message, never the traceback)."""
    lines = [line.strip() for line in re.split(r"[\r\n]", stderr) if line.strip()]
    for line in reversed(lines):
        if line.startswith(_CLI_ERROR):
            return line[len(_CLI_ERROR):]
    return lines[-1] if lines else f"the training process ended with exit code {exit_code}"


class TeachDialog(QtWidgets.QDialog):
    """The Teach workflow (see the module docstring) on the engine ``engine()`` returns."""

    model_taught = QtCore.pyqtSignal(Path)

    def __init__(self, engine: Callable[[], LiveEngine | None], settings: QSettings,
                 parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Teach the room")
        self.engine = engine
        self.settings = settings
        self.phase = "idle"  # idle | preview | recording | training | swapping
        self.teacher: PoseTeacher | None = None
        self.recorder: SessionRecorder | None = None
        self.process: QtCore.QProcess | None = None
        self.folder: Path | None = None  # this teaching's folder
        self._target = 0  # samples to record
        self._epochs = 0
        self._windows = 0
        self._stderr = ""
        self._shown: CameraView | None = None
        self._swapping: Future | None = None
        self._engine_swapped: LiveEngine | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="model-swap")
        self._build()
        self._timer = QtCore.QTimer(self)
        self._timer.timeout.connect(self._tick)
        self._timer.start(1000 // PREVIEW_HZ)
        self._update_buttons()

    def _build(self) -> None:
        s = self.settings
        self.kind = QtWidgets.QComboBox()
        self.kind.addItem("Camera (MediaPipe Pose)", "camera")
        self.kind.addItem("Virtual rig's truth (no camera)", "virtual")
        self.source = QtWidgets.QLineEdit(str(s.value(_KEY + "source", "0")))
        self.source.setToolTip("a camera index (0 is the first camera) or a video file")
        self.browse = QtWidgets.QPushButton("Video…")
        self.browse.clicked.connect(self._browse)
        self.latency = _spin(0.0, 2.0, float(s.value(_KEY + "latency", VIRTUAL_CAMERA_LATENCY_S)),
                             " s", "the camera's delay from light to frame (measure it with "
                                   "`bgm2pose teacher-latency`)")
        self.min_confidence = _spin(0.0, 1.0, float(s.value(_KEY + "min_confidence",
                                                            MIN_CONFIDENCE)), "",
                                    "frames with a joint the teacher is less sure of never train")
        self.minutes = _spin(0.05, 60.0, float(s.value(_KEY + "minutes", 3.0)), " min",
                             "how long to record while the person moves to the music")
        self.epochs = QtWidgets.QSpinBox()
        self.epochs.setRange(1, 200)
        self.epochs.setValue(int(s.value(_KEY + "epochs", 10)))
        self.epochs.setToolTip("training passes over the taught windows")
        source_row = QtWidgets.QHBoxLayout()
        source_row.addWidget(self.source, 1)
        source_row.addWidget(self.browse)
        form = QtWidgets.QFormLayout()
        form.addRow("Teacher", self.kind)
        form.addRow("Camera", source_row)
        form.addRow("Camera latency", self.latency)
        form.addRow("Min. confidence", self.min_confidence)
        form.addRow("Record for", self.minutes)
        form.addRow("Train for (epochs)", self.epochs)

        self.preview = QtWidgets.QLabel("Camera off")
        self.preview.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(480, 360)
        self.preview.setStyleSheet("background: #121218; color: #aaa")
        self.progress = QtWidgets.QProgressBar()
        self.status = QtWidgets.QLabel("Start the music, turn the camera on, stand in view, "
                                       "then Teach.")
        self.status.setWordWrap(True)
        self.camera_button = QtWidgets.QPushButton("Camera on")
        self.camera_button.clicked.connect(self.toggle_camera)
        self.teach_button = QtWidgets.QPushButton("Teach")
        self.teach_button.clicked.connect(self.teach)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QtWidgets.QHBoxLayout()
        for button in (self.camera_button, self.teach_button, self.cancel_button):
            buttons.addWidget(button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.preview, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(buttons)

    def _browse(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "A video to teach from")
        if path:
            self.source.setText(path)

    # -- steps ----------------------------------------------------------------------------

    def toggle_camera(self) -> None:
        if self.teacher is None:
            self.camera_on()
        elif self.phase == "preview":
            self._camera_off()
            self.phase = "idle"
            self._update_buttons()

    def camera_on(self) -> bool:
        """Start the teacher on the running engine (its preview shows); False, with the
        reason shown, if it cannot."""
        if self.teacher is not None:
            return True
        engine = self.engine()
        if engine is None or not engine.running:
            self.say("Start the music first: the teacher's poses are placed on the running "
                     "audio clock.")
            return False
        source = self.source.text().strip() or "0"
        spec = "virtual" if self.kind.currentData() == "virtual" else f"camera:{source}"
        try:
            teacher = teacher_for(spec, engine, self.latency.value())
            teacher.start()
        except UserError as exc:
            self.say(f"Cannot start the teacher: {_clause(exc)}.")
            return False
        self._remember()
        self.teacher = teacher
        self.phase = "preview"
        if self.kind.currentData() == "virtual":
            self.preview.setText("The virtual teacher sees the rig's truth (the green ghost "
                                 "in the 3D view); there is no camera image.")
        else:
            self.preview.setText("Waiting for the camera's first frame…")
        self.say("Teacher on: stand fully in view, then Teach.")
        self._update_buttons()
        return True

    def teach(self) -> None:
        """Record the chosen minutes with the teacher, then train and swap."""
        if self.phase not in ("idle", "preview") or not self.camera_on():
            return
        engine = self.engine()
        folder = new_session_folder(recordings_folder(self.settings), prefix="teach")
        try:
            self.recorder = start_recorder(engine, folder / SESSION_DIR, from_now=True,
                                           teacher=self.teacher,
                                           min_confidence=self.min_confidence.value())
        except UserError as exc:
            self.say(f"Cannot record: {_clause(exc)}.")
            return
        self.folder = folder
        self._target = round(self.minutes.value() * 60 * engine.backend.sample_rate)
        self.phase = "recording"
        self.progress.setRange(0, self._target)
        self.progress.setValue(0)
        self.say(f"Recording {self.minutes.value():g} min: move to the music in view.")
        self._update_buttons()

    def _recorded(self, engine: LiveEngine) -> None:
        recorder, self.recorder = self.recorder, None
        recorder.stop(engine.aligner.latency)
        self._camera_off()
        session = self.folder / SESSION_DIR
        if recorder.error:
            self._give_up(f"Teaching stopped: {_clause(recorder.error)}.", keep_recording=False)
            return
        taught = taught_seconds(session)
        if taught < MIN_TAUGHT_S:
            self._give_up(f"Only {taught:.1f} s of the {recorder.seconds:.0f} s recorded had "
                          f"the whole body confidently in view, and fine-tuning needs "
                          f"{MIN_TAUGHT_S:g} s; stand fully in the camera's view, in good "
                          "light, and teach again.", keep_recording=False)
            return
        self._train(engine.model.path, taught)

    def _train(self, init: Path, taught: float) -> None:
        self._epochs = self.epochs.value()
        self._stderr = ""
        command = train_command(self.folder, init, self._epochs,
                                self.folder / TRAINING_DIR / MODEL_NAME)
        env = QtCore.QProcessEnvironment.systemEnvironment()
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env.insert(name, "1")
        env.insert("PYTHONUNBUFFERED", "1")  # progress lines as they happen, not at the end
        process = QtCore.QProcess(self)
        process.setProcessEnvironment(env)
        process.readyReadStandardOutput.connect(self._read_output)
        process.readyReadStandardError.connect(self._read_errors)
        process.finished.connect(self._trained)
        process.errorOccurred.connect(self._process_error)
        self.process = process
        self.phase = "training"
        self.progress.setRange(0, self._epochs + 2)
        self.progress.setValue(0)
        self.say(f"Taught {taught:.0f} s; camera off. Preparing the windows to train on…")
        self._update_buttons()
        process.start(command[0], command[1:])

    def _read_output(self) -> None:
        text = bytes(self.process.readAllStandardOutput()).decode(errors="replace")
        for line in text.splitlines():
            if m := _WINDOWS_LINE.match(line):
                self.progress.setValue(1)
                self._windows = int(m.group(1))
                self.say(f"Training on {self._windows} windows for {self._epochs} epochs…")
            elif m := _EPOCH_LINE.search(line):
                self.progress.setValue(1 + int(m.group(1)))
                self.say(f"Trained epoch {m.group(1)} of {m.group(2)}"
                         + ("; exporting…" if m.group(1) == m.group(2) else "…"))
            elif line.startswith(_EXPORT_LINE):
                self.progress.setValue(self._epochs + 2)

    def _read_errors(self) -> None:
        text = bytes(self.process.readAllStandardError()).decode(errors="replace")
        self._stderr = (self._stderr + text)[-8000:]  # the end holds the reason

    def _process_error(self, error: QtCore.QProcess.ProcessError) -> None:
        if error == QtCore.QProcess.ProcessError.FailedToStart and self.process is not None:
            self.process = None
            self._give_up(f"Training could not start ({sys.executable} cannot be run).",
                          keep_recording=True)

    def _trained(self, exit_code: int, exit_status: QtCore.QProcess.ExitStatus) -> None:
        process, self.process = self.process, None
        if process is None:  # cancelled
            return
        model = self.folder / TRAINING_DIR / MODEL_NAME
        if exit_status != QtCore.QProcess.ExitStatus.NormalExit or exit_code != 0 \
                or not model.is_file():
            self._give_up(f"Training failed: {_clause(failure(self._stderr, exit_code))}.",
                          keep_recording=True)
            return
        engine = self.engine()
        if engine is None:
            self.model_taught.emit(model)
            self._finish(f"Taught model ready in {model}; it runs from the next start.")
            return
        self.phase = "swapping"
        self.say("Loading the taught model into the running engine…")
        self._engine_swapped = engine
        self._swapping = self._executor.submit(engine.use_model, model)
        self._update_buttons()

    def _swapped(self) -> None:
        future, self._swapping = self._swapping, None
        model = self.folder / TRAINING_DIR / MODEL_NAME
        try:
            future.result()
        except UserError as exc:
            self._give_up(f"The taught model could not be loaded: {_clause(exc)}.",
                          keep_recording=True)
            return
        except Exception as exc:  # a bug: one line, not a traceback
            self._give_up(f"The taught model could not be loaded: {type(exc).__name__}: "
                          f"{_clause(exc)}.", keep_recording=True)
            return
        self.model_taught.emit(model)
        self._finish(f"Now estimating with the taught model ({self._windows} windows, "
                     f"{self._epochs} epochs): {model}.")

    def cancel(self) -> None:
        """Stop whatever runs (recording, training); the camera goes off."""
        if self.process is not None:
            process, self.process = self.process, None
            process.kill()
            process.waitForFinished(5000)
            self._give_up("Training cancelled.", keep_recording=True)
        elif self.recorder is not None:
            self.recorder.stop()
            self.recorder = None
            self._give_up("Teaching cancelled; nothing was kept.", keep_recording=False)
        elif self.phase == "preview":
            self._camera_off()
            self.phase = "idle"
            self._update_buttons()

    # -- endings --------------------------------------------------------------------------

    def _give_up(self, sentence: str, keep_recording: bool) -> None:
        """Show ``sentence`` and remove what this teaching wrote that is not whole: the
        training's output, and unless ``keep_recording`` the recording too."""
        self._camera_off()
        if self.folder is not None:
            if keep_recording:
                shutil.rmtree(self.folder / TRAINING_DIR, ignore_errors=True)
                sentence = sentence[:-1] + f"; the recording is kept in {self.folder}."
            else:
                shutil.rmtree(self.folder, ignore_errors=True)
        self._finish(sentence)
        self.progress.setValue(0)

    def _finish(self, sentence: str) -> None:
        self.folder = None
        self.phase = "idle"
        self.say(sentence)
        self._update_buttons()

    def _camera_off(self) -> None:
        teacher, self.teacher = self.teacher, None
        if teacher is not None:
            teacher.stop()
        self._shown = None
        self.preview.clear()
        self.preview.setText("Camera off")

    def say(self, sentence: str) -> None:
        self.status.setText(sentence)

    # -- timer ----------------------------------------------------------------------------

    def _tick(self) -> None:
        engine = self.engine()
        virtual = engine is not None and engine.options.backend == "virtual"
        self.kind.model().item(1).setEnabled(virtual)
        if self._swapping is not None and self._swapping.done():
            self._swapped()
        if self.phase not in ("preview", "recording"):
            return
        problem = getattr(self.teacher, "error", None)
        if engine is None or not engine.running:
            problem = "the live engine stopped, so teaching stopped; start it and teach again"
        if problem:
            if self.recorder is not None:
                self.recorder.stop()
                self.recorder = None
            self._give_up(f"Teaching stopped: {_clause(problem)}.", keep_recording=False)
            return
        self._show_preview()
        if self.phase == "recording":
            done = engine.backend.recorded.end - self.recorder.first_sample
            self.progress.setValue(min(done, self._target))
            if done >= self._target:
                self._recorded(engine)

    def _show_preview(self) -> None:
        view_of = getattr(self.teacher, "latest_view", None)
        view = None if view_of is None else view_of()
        if view is None or view is self._shown:
            return
        self._shown = view
        image = draw_view(view, self.min_confidence.value())
        self.preview.setPixmap(QtGui.QPixmap.fromImage(image).scaled(
            self.preview.size(), QtCore.Qt.AspectRatioMode.KeepAspectRatio,
            QtCore.Qt.TransformationMode.SmoothTransformation))

    def _update_buttons(self) -> None:
        idle = self.phase in ("idle", "preview")
        self.camera_button.setText("Camera off" if self.phase == "preview" else "Camera on")
        self.camera_button.setEnabled(idle)
        self.teach_button.setEnabled(idle)
        self.cancel_button.setEnabled(self.phase in ("preview", "recording", "training"))
        for widget in (self.kind, self.source, self.browse, self.latency, self.min_confidence,
                       self.minutes, self.epochs):
            widget.setEnabled(self.phase == "idle")

    def _remember(self) -> None:
        for name, value in (("source", self.source.text().strip()),
                            ("latency", self.latency.value()),
                            ("min_confidence", self.min_confidence.value()),
                            ("minutes", self.minutes.value()), ("epochs", self.epochs.value())):
            self.settings.setValue(_KEY + name, value)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        # The camera never watches behind a closed dialog; a training goes on in the
        # background, and the dialog shows it again when reopened.
        if self.phase in ("preview", "recording"):
            self.cancel()
        super().closeEvent(event)


def _clause(reason: object) -> str:
    """A reason to put inside a sentence that ends with its own full stop."""
    return str(reason).rstrip(". ")


def _spin(low: float, high: float, value: float, suffix: str, tip: str
          ) -> QtWidgets.QDoubleSpinBox:
    spin = QtWidgets.QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setDecimals(2)
    spin.setSingleStep(0.05 if high <= 2 else 0.5)
    spin.setSuffix(suffix)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin
