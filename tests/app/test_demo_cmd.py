"""``bgm2pose demo`` without a display: runs headless, prints the live figures, writes a PNG."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PyQt6 import QtGui

BIN = Path(sys.executable).with_name("bgm2pose")


def _headless_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return dict(env, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")


def test_headless_demo_prints_live_figures_and_writes_a_screenshot(trained_model, tmp_path):
    png = tmp_path / "shot.png"
    r = subprocess.run([str(BIN), "demo", "--model", str(trained_model), "--seconds", "4",
                        "--screenshot", str(png)], capture_output=True, text=True,
                       env=_headless_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "no display" in r.stdout
    # Honest by default: the subject and music its card says it never trained on (every
    # subject but S4; ambient up to seed 3, jazz seed 0), and nothing to warn about.
    assert ("subject S4 and music ambient-0004, jazz-0001, none of which the model trained on"
            in r.stdout)
    assert "warning" not in r.stdout + r.stderr
    # Every printed figure line has the model's MAE and the mean-pose predictor's beside it.
    figures = [line for line in r.stdout.splitlines() if "windows/s" in line]
    assert figures and "PCKh" in r.stdout
    for line in figures:
        assert re.search(r"MAE \d\.\d{3} \(mean pose \d\.\d{3}\)", line), line
    image = QtGui.QImage(str(png))
    assert (image.width(), image.height()) == (1600, 900)
    # The 3D view is in the picture: its dark background with bright skeleton colours.
    rgb = np.array([[image.pixelColor(x, y).getRgb()[:3] for x in range(500, 1100, 4)]
                    for y in range(150, 800, 4)])
    orange = (rgb[..., 0] > 200) & (rgb[..., 1] > 90) & (rgb[..., 1] < 170) & (rgb[..., 2] < 80)
    assert orange.sum() > 5


def test_demo_without_a_shipped_model_says_so_in_one_sentence(tmp_path, monkeypatch):
    from bgm2pose.models.inference import demo_model_path

    if demo_model_path().is_file():
        return  # a trained demo model ships: nothing to explain
    r = subprocess.run([str(BIN), "demo", "--seconds", "1"], capture_output=True, text=True,
                       env=_headless_env(), timeout=120)
    assert r.returncode == 2
    assert "no trained demo model" in r.stderr and "--model" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
