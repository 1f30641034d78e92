"""Fixtures for the desktop app tests: a private X server, temp settings, a stand-in model.

``xvfb`` (session): an Xvfb server with Mesa's software GL for the whole run, with DISPLAY and
QT_QPA_PLATFORM=xcb set before pytest-qt creates the QApplication (Qt's ``offscreen``
platform cannot render the GL view), and GL contexts shared (see ``share_gl_contexts``).

``standin_model`` (session): an exported ONNX model whose poses are the average subject's rest
pose moved by a fixed random linear map of the per-frame features, so the skeleton looks like
a person and moves with the audio. The shipped demo model may not exist yet in a development
tree, and a freshly initialised network collapses every joint onto the hips. Its card has that
rest pose as its mean pose (so the live mean-pose MAE shows) and no training data (so the
virtual rig's defaults stay the first subject and seeds).

``trained_model``: the stand-in under a card that says it trained on every subject but S4, on
ambient-0000..0003 and jazz-0000: the live defaults must be read from the card, not assumed.
"""

from __future__ import annotations


import json
import shutil

import numpy as np
import pytest
from PyQt6.QtCore import QSettings

from bgm2pose.app.app_cmd import close_qt_application
from bgm2pose.app.skeleton_view import share_gl_contexts
from bgm2pose.app.xvfb import virtual_display


@pytest.fixture(scope="session", autouse=True)
def xvfb():
    share_gl_contexts()
    with virtual_display() as display:
        yield display
        close_qt_application()


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """App settings in a temp folder, and calibration profiles in another."""
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope,
                      str(tmp_path / "settings"))
    monkeypatch.setenv("BGM2POSE_CONFIG_DIR", str(tmp_path / "config"))
    from bgm2pose.app.settings import app_settings

    return app_settings()


@pytest.fixture(scope="session")
def standin_model(tmp_path_factory):
    import torch
    from torch import nn

    from bgm2pose.models.export import export_onnx
    from bgm2pose.sensing.features import FeatureStats
    from bgm2pose.sensing.sim.subjects import SUBJECTS
    from bgm2pose.sensing.skeleton import normalise

    rest = normalise(SUBJECTS[0].rest_pose())

    class StandIn(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("rest", torch.tensor(rest.reshape(63), dtype=torch.float32))
            self.mix = nn.Linear(13, 63)

        def forward(self, x, m):
            per_frame = torch.cat([x, m], dim=1).mean(dim=3).transpose(1, 2)  # (B, 12, 13)
            return self.rest + 2.0 * torch.tanh(3.0 * self.mix(per_frame))

    torch.manual_seed(0)
    torch.set_num_threads(1)
    stats = FeatureStats(mean=np.array([-60, -63, -64, -62, -50, -51, 0.1, -0.05, 0.2]),
                         std=np.array([12, 11, 11, 12, 15, 15, 0.4, 0.3, 0.5]))
    path = tmp_path_factory.mktemp("model") / "standin.onnx"
    export_onnx(StandIn().eval(), stats, path, {"method": "stand-in for tests",
                                                 "mean_pose": rest.reshape(63).tolist()})
    return path


@pytest.fixture(scope="session")
def trained_model(standin_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("trained") / "trained.onnx"
    shutil.copyfile(standin_model, path)  # the same bytes: the card's checksum still holds
    card = json.loads(standin_model.with_suffix(".json").read_text())
    card["data"] = {"subjects": ["S1", "S2", "S3", "S5", "S6", "S7", "S8"],
                    "tracks": ["ambient-0000", "ambient-0001", "ambient-0002", "ambient-0003",
                               "jazz-0000"]}
    path.with_suffix(".json").write_text(json.dumps(card))
    return path
