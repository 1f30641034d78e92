"""The main window on the virtual rig: the live skeleton is drawn where it should be, moves,
and the ground-truth ghost is drawn beside it; the window reads the pipeline on timers."""

from __future__ import annotations

import re

import numpy as np
import pyqtgraph as pg
import pytest
from PyQt6 import QtGui
from PyQt6.QtCore import QSettings

from bgm2pose.app.live_engine import LiveOptions
from bgm2pose.app.main_window import MainWindow
from bgm2pose.app.skeleton_view import GHOST_COLOUR, joint_colours


def _rgb(view) -> np.ndarray:
    image = view.grabFramebuffer().convertToFormat(QtGui.QImage.Format.Format_RGB888)
    return pg.functions.ndarray_from_qimage(image)[..., :3].astype(int)


def _near(rgb: np.ndarray, xy: np.ndarray, colour, radius: int = 3, tol: int = 60) -> np.ndarray:
    """For each pixel position, whether a pixel of ``colour`` (0..1 RGB) lies within ``radius``."""
    target = np.asarray(colour[:3]) * 255
    found = []
    h, w, _ = rgb.shape
    for x, y in np.round(xy).astype(int):
        patch = rgb[max(0, y - radius):min(h, y + radius + 1),
                    max(0, x - radius):min(w, x + radius + 1)]
        found.append(patch.size > 0 and bool(
            (np.abs(patch - target).max(axis=-1) <= tol).any()))
    return np.array(found)


@pytest.fixture(scope="module")
def window(qapp, standin_model, tmp_path_factory):
    """One live window on the virtual rig for the module (starting one takes seconds)."""
    ini = tmp_path_factory.mktemp("settings") / "app.ini"
    win = MainWindow(LiveOptions(model=standin_model, realtime=True),
                     QSettings(str(ini), QSettings.Format.IniFormat))
    win.resize(1400, 800)
    win.show()
    win.start()
    assert win.wait_started(120), win.live_label.text()
    yield win
    win.close()


@pytest.fixture(autouse=True)
def _poses_arrived(window, qtbot):
    qtbot.waitUntil(lambda: window._last_seq >= 3, timeout=60_000)


def test_skeleton_is_drawn_at_its_projected_joints_and_moves(window, qtbot):
    view = window.view
    qtbot.wait(100)
    rgb = _rgb(view)
    pixels = view.joint_pixels()
    colours = joint_colours()
    hits = np.array([_near(rgb, pixels[j:j + 1], colours[j])[0] for j in range(len(pixels))])
    assert hits.mean() >= 0.8, f"joint colours missing at {np.flatnonzero(~hits)}"
    # The same colours are not simply everywhere: random spots of the view lack them.
    rng = np.random.default_rng(0)
    h, w, _ = rgb.shape
    elsewhere = np.c_[rng.uniform(0, w, 200), rng.uniform(0, h, 200)]
    far = np.min(np.linalg.norm(elsewhere[:, None] - pixels[None], axis=-1), axis=1) > 25
    stray = np.mean([_near(rgb, elsewhere[far], c).mean() for c in colours[[0, 5, 9]]])
    assert stray < 0.05

    first_seq, first = window._last_seq, pixels
    qtbot.waitUntil(lambda: window._last_seq >= first_seq + 10, timeout=30_000)
    qtbot.wait(100)
    moved = np.linalg.norm(view.joint_pixels() - first, axis=1)
    assert moved.max() > 2.0, "the skeleton did not move over half a second of music"
    rgb2 = _rgb(view)
    assert np.abs(rgb2 - rgb).sum() > 0


def test_virtual_rig_draws_the_ground_truth_ghost(window, qtbot):
    qtbot.wait(100)
    ghost = window.view.ghost_bone_pixels()
    assert ghost is not None
    rgb = _rgb(window.view)
    # Translucent over the dark background: a dimmer green than GHOST_COLOUR itself.
    dim = np.asarray(GHOST_COLOUR[:3]) * GHOST_COLOUR[3]
    hits = _near(rgb, ghost, dim, radius=3, tol=45)
    assert hits.mean() >= 0.5, f"ghost found at {hits.sum()} of {len(hits)} bone midpoints"


def test_status_bar_shows_live_figures_with_accuracy_on_the_virtual_rig(window, qtbot):
    qtbot.waitUntil(lambda: "windows/s" in window.live_label.text(), timeout=10_000)
    text = window.live_label.text()
    for phrase in ("virtual rig", "latency", "inference", "xruns", "MAE", "PCKh"):
        assert phrase in text
    # The model's live MAE with the mean-pose predictor's beside it, in the status line and
    # under the 3D view, as the feed has them.
    _, stats = window.engine.feed.latest()
    assert stats.mean_pose_mae is not None and stats.mean_pose_mae > 0
    pair = re.compile(r"MAE (\d\.\d{3}) \(mean pose (\d\.\d{3})\)")
    for shown in (text, window.view_panel.caption.text()):
        model, mean_pose = map(float, pair.search(shown).groups())
        assert model > 0 and abs(mean_pose - stats.mean_pose_mae) < 0.05, shown


def test_record_joins_the_running_pipeline_and_the_session_is_the_rings(window, qtbot,
                                                                          tmp_path):
    from bgm2pose.app.recording import RECORDINGS_KEY
    from bgm2pose.sensing.session import read_session

    window.settings.setValue(RECORDINGS_KEY, str(tmp_path))
    engine = window.engine
    before, _ = engine.feed.latest()
    window.record_action.trigger()  # checks it: a recorder joins the live rings at once
    recorder = window._recorder
    assert recorder is not None and window.engine is engine and engine.running
    assert recorder.first_sample > 0 and recorder.first_sample % 400 == 0
    qtbot.waitUntil(lambda: recorder.seconds >= 1.5, timeout=30_000)
    window.record_action.trigger()  # unchecks it: the session is closed, live goes on
    assert window._recorder is None and window.engine is engine and engine.running
    assert "Recorded" in window.statusBar().currentMessage()

    # The estimator went on publishing through the recording: no restart, no fresh feed.
    updates = [u for u in engine.feed.history(256) if u.seq >= before.seq]
    assert updates[0].seq == before.seq and len(updates) >= 10
    assert [u.seq for u in updates] == list(range(before.seq, before.seq + len(updates)))
    assert np.all(np.diff([u.capture_time for u in updates]) > 0)

    (folder,) = tmp_path.iterdir()
    session = read_session(folder)
    first, n = recorder.first_sample, session.mic.shape[1]
    assert n >= 1.5 * 48_000 and session.reference.shape == (2, n)
    np.testing.assert_allclose(session.mic, engine.backend.recorded.read(first, n), atol=2**-23)
    np.testing.assert_allclose(session.reference, engine.player.reference.read(first, n),
                               atol=2**-23)
    assert np.abs(session.mic).max() > 1e-3  # the mic heard the music
    assert session.info.pose_offset_s == 0.0
    frames = len(session.poses)
    assert frames == -(-n // 400)
    np.testing.assert_array_equal(session.poses, engine.backend.ground_truth(first, frames * 400))
