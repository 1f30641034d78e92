"""`bgm2pose app`'s Teach workflow on the virtual rig, with a video file as the camera: the
preview draws the teacher's skeleton on the frame, a few seconds are recorded with the
teacher's labels, the running model is fine-tuned for one epoch in a child process, and the
taught model is swapped into the engine while it keeps estimating; the camera is released.
Errors are one sentence, and leave nothing behind."""

from __future__ import annotations

import json
import sys

import numpy as np
import pyqtgraph as pg
import pytest
import skimage.data
from PyQt6 import QtGui
from PyQt6.QtCore import QSettings

from bgm2pose.app.live_engine import LiveOptions
from bgm2pose.app.main_window import MainWindow
from bgm2pose.app.recording import RECORDINGS_KEY
from bgm2pose.app.skeleton_view import joint_colours
from bgm2pose.app.teach_panel import (
    MODEL_NAME, SESSION_DIR, TRAINING_DIR, draw_view, failure,
)
from bgm2pose.models.inference import demo_model_path
from bgm2pose.sensing.session import CONFIDENCE_FILE, read_session


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    return tmp_path_factory.mktemp("recordings")


@pytest.fixture(scope="module")
def window(qapp, recordings, tmp_path_factory):
    """One live window on the virtual rig with the shipped model (fine-tuning needs a model
    whose card records its network), for the module."""
    ini = tmp_path_factory.mktemp("settings") / "app.ini"
    settings = QSettings(str(ini), QSettings.Format.IniFormat)
    settings.setValue(RECORDINGS_KEY, str(recordings))
    win = MainWindow(LiveOptions(model=demo_model_path(), realtime=True), settings)
    win.show()
    win.start()
    assert win.wait_started(120), win.live_label.text()
    win.teach()
    yield win
    win.close()


@pytest.fixture(scope="module")
def video(tmp_path_factory, write_video):
    """20 s of the astronaut at 10 fps, a camera that sees her all the time."""
    import cv2

    person = cv2.resize(skimage.data.astronaut(), (256, 256))
    path = tmp_path_factory.mktemp("camera") / "camera.avi"
    write_video(path, [person] * 200, fps=10)
    return path


def test_errors_are_one_sentence_and_leave_nothing(window, recordings, tmp_path, monkeypatch):
    dialog = window.teach_dialog
    # The virtual rig's own truth can teach here, as `bgm2pose demo` runs.
    assert dialog.kind.model().item(1).isEnabled()
    dialog.source.setText(str(tmp_path / "missing.mp4"))
    assert not dialog.camera_on()
    assert dialog.status.text() == (
        f"Cannot start the teacher: the camera teacher's source {tmp_path / 'missing.mp4'} is "
        "neither a camera index nor a video file; pass a camera number such as 0, or an "
        "existing video.")
    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions", None)
    dialog.teach()
    assert dialog.status.text().startswith("Cannot start the teacher: the camera teacher needs "
                                           "MediaPipe and OpenCV, which are not installed here")
    assert "pip install -e '.[camera]'" in dialog.status.text()
    assert dialog.phase == "idle" and dialog.teacher is None
    assert not list(recordings.iterdir())


def test_teaching_too_little_confidently_is_one_sentence_and_keeps_nothing(window, video,
                                                                          recordings, qtbot):
    dialog = window.teach_dialog
    dialog.source.setText(str(video))
    dialog.min_confidence.setValue(0.5)  # the astronaut's hips, below the frame, never are
    dialog.minutes.setValue(0.05)
    dialog.teach()
    qtbot.waitUntil(lambda: dialog.phase == "idle", timeout=30_000)
    assert dialog.status.text().startswith("Only 0.0 s of the 3 s recorded had the whole body "
                                           "confidently in view, and fine-tuning needs 3 s;")
    assert dialog.teacher is None and not list(recordings.iterdir())


def test_a_failed_training_says_why_in_one_line():
    tqdm = "epoch 1:  60%|######    | 3/5\r\x1b[A"
    assert failure(f"{tqdm}\nbgm2pose train: error: --init x.onnx: its card does not record "
                   "the network\n", 2) == "--init x.onnx: its card does not record the network"
    traceback = "Traceback (most recent call last):\n  File \"t.py\", line 1\nValueError: boom\n"
    assert failure(tqdm + "\n" + traceback, 1) == "ValueError: boom"
    assert failure("", -9) == "the training process ended with exit code -9"


def test_teach_with_a_video_as_the_camera_swaps_the_taught_model_in_live(window, video,
                                                                          recordings, qtbot):
    dialog = window.teach_dialog
    engine = window.engine
    before = engine.estimator.model
    dialog.source.setText(str(video))
    # The astronaut is a bust: her hips are below the frame, seen with low confidence.
    dialog.min_confidence.setValue(0.0)
    dialog.minutes.setValue(0.08)  # 4.8 s
    dialog.epochs.setValue(1)
    # The preview, while it records: the camera's frame with the teacher's skeleton on it.
    dialog.teach()
    teacher = dialog.teacher
    assert dialog.phase == "recording", dialog.status.text()
    qtbot.waitUntil(lambda: dialog._shown is not None, timeout=20_000)
    assert not dialog.preview.pixmap().isNull()
    view = dialog._shown
    drawn = draw_view(view, 0.0).convertToFormat(QtGui.QImage.Format.Format_RGB888)
    rgb = pg.functions.ndarray_from_qimage(drawn)[..., :3].astype(int)
    h, w, _ = view.image.shape
    pixels = np.round(view.joints * (w, h)).astype(int)
    inside = (pixels >= 0).all(axis=1) & (pixels < (w, h)).all(axis=1)
    colours = np.round(joint_colours()[:, :3] * 255)
    dots = np.abs(rgb[pixels[inside, 1], pixels[inside, 0]] - colours[inside]).max(axis=1) < 40
    assert dots.mean() > 0.7, f"joint dots at {dots.sum()} of {inside.sum()} joints"
    assert np.abs(rgb - view.image).max(axis=-1).astype(bool).mean() < 0.1  # the frame shows

    qtbot.waitUntil(lambda: dialog.phase != "recording", timeout=30_000)
    # The camera is off once the recording ends: before training, not after it.
    assert dialog.teacher is None and teacher._capture is None
    assert not teacher._thread.is_alive() and teacher.latest_view() is None
    assert dialog.phase == "training", dialog.status.text()
    qtbot.waitUntil(lambda: dialog.phase == "idle", timeout=120_000)
    assert dialog.status.text().startswith("Now estimating with the taught model"), \
        dialog.status.text()
    assert dialog.progress.value() == dialog.progress.maximum() == 3

    # The same engine, never stopped, now estimates with the taught model.
    (folder,) = recordings.iterdir()
    model = folder / TRAINING_DIR / MODEL_NAME
    seq = engine.feed.latest()[0].seq
    qtbot.waitUntil(lambda: engine.feed.latest()[0].seq >= seq + 5, timeout=10_000)
    assert window.engine is engine and engine.running
    assert engine.estimator.model is not before and engine.estimator.model.path == model
    assert window.base_options.model == model  # and later starts run it too
    card = json.loads(model.with_suffix(".json").read_text())
    assert card["training"]["init"]["path"] == str(demo_model_path())
    assert card["training"]["epochs_run"] == 1

    # The session holds the teacher's labels; no camera image was written.
    session = read_session(folder / SESSION_DIR)
    taught = np.isfinite(session.poses).all(axis=(1, 2)).mean()
    assert len(session.poses) >= 4.5 * 120 and taught > 0.6
    assert (folder / SESSION_DIR / CONFIDENCE_FILE).is_file()
    assert session.info.provenance["teacher"]["name"] == "camera"
    suffixes = {p.suffix for p in folder.rglob("*") if p.is_file()}
    assert not suffixes & {".jpg", ".jpeg", ".png", ".avi", ".mp4", ".bmp"}, suffixes
