"""A session recorded through a real audio device (JACK, the virtual room as the device) has no
pose labels: no poses.npy is written, ``features`` extracts its windows, and ``evaluate`` and
``train`` refuse it in one sentence that says there are no labels."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from bgm2pose.sensing.features import FRAMES_PER_WINDOW, HOP
from bgm2pose.sensing.session import POSES_FILE, read_session


def cli(*args: str) -> subprocess.CompletedProcess:
    # The environment now: the JACK fixture has set JACK_DEFAULT_SERVER.
    return subprocess.run([sys.executable, "-m", "bgm2pose.app.cli", *args], capture_output=True,
                          text=True, timeout=300,
                          env=dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1"))


def test_a_duplex_recording_without_a_teacher_goes_through_features_but_not_training(
        virtual_room, standin_model, tmp_path):
    folder = tmp_path / "take"
    with virtual_room() as (ready, _):
        latency = ready["delay_samples"] + 2 * ready["period"]
        r = cli("run", "--quiet", "--backend", "duplex", "--device", "room", "--convention",
                "internal", "--latency", str(latency), "--seconds", "3",
                "--model", str(standin_model), "--record", str(folder))
    assert r.returncode == 0, r.stderr
    assert not (folder / POSES_FILE).exists()
    session = read_session(folder)
    assert session.poses is None and session.duration_s >= 3.0

    out = tmp_path / "features.npz"
    r = cli("features", str(folder), "-o", str(out))
    assert r.returncode == 0, r.stderr
    shared = session.mic.shape[1] - round(session.info.latency_samples)
    windows = (shared // HOP - FRAMES_PER_WINDOW) // FRAMES_PER_WINDOW + 1  # hop: one window
    assert f"features: {windows} windows of (9, 12, 128)" in r.stdout
    assert "no pose labels" in r.stdout
    with np.load(out) as saved:
        assert saved["base"].shape == (windows, 9, 12, 128)
        assert np.all(np.isfinite(saved["base"]))
        assert "poses" not in saved  # placeholder zeros must not pass for labels

    for verb in (["evaluate", str(standin_model), str(folder)],
                 ["train", str(folder), "--out", str(tmp_path / "run"), "--epochs", "1"]):
        r = cli(*verb)
        assert r.returncode == 2, r.stderr
        error = r.stderr.strip().splitlines()[-1]
        assert error == (f"bgm2pose {verb[0]}: error: session {folder} has no pose labels (it "
                         "was recorded without a teacher), so it cannot train or evaluate a "
                         "model; move unlabelled sessions out of the data set folder.")
        assert "Traceback" not in r.stderr
