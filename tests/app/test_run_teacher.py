"""`bgm2pose run --record DIR --teacher ...` as a user runs it: the virtual teacher labels the
session like the truth within its noise and in time; a video file as the camera puts a known
event (the person stepping into view) on the audio clock within one 120 fps frame; without the
[camera] extra, or without --record, one sentence."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import skimage.data
from bgm2pose.sensing.session import CONFIDENCE_FILE, read_session


def run(*args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", **(extra_env or {}))
    return subprocess.run([sys.executable, "-m", "bgm2pose.app.cli", "run", "--quiet", *args],
                          capture_output=True, text=True, timeout=300, env=env)


def test_the_virtual_teacher_labels_a_run_like_the_truth_within_its_noise(standin_model, tmp_path):
    common = ("--fast", "--seconds", "5", "--model", str(standin_model), "--seed", "3")
    r = run(*common, "--record", str(tmp_path / "truth"))
    assert r.returncode == 0, r.stderr
    r = run(*common, "--record", str(tmp_path / "taught"), "--teacher", "virtual",
            "--teacher-noise", "3")
    assert r.returncode == 0, r.stderr
    truth = read_session(tmp_path / "truth").poses
    taught = read_session(tmp_path / "taught")
    poses = taught.poses[: len(truth)]
    finite = np.isfinite(poses).all(axis=(1, 2))
    assert finite[:-4].all()
    error = np.linalg.norm(poses[finite] - truth[: len(poses)][finite], axis=-1)
    assert 0.01 < np.sqrt(np.mean(error ** 2)) < 0.03
    assert np.load(taught.folder / CONFIDENCE_FILE).shape == (len(taught.poses), 21)
    assert taught.info.provenance["teacher"]["name"] == "virtual"


def test_a_video_as_the_camera_puts_the_person_stepping_in_on_the_audio_clock(
        standin_model, tmp_path, write_video):
    """The astronaut steps into view at 1.5 s of a 10 fps video; with a camera latency of
    0.1 s the view is of 1.4 s, the first taught 120 fps frame 168."""
    person = cv2.resize(skimage.data.astronaut(), (256, 256))
    empty = np.full_like(person, 128)
    video = tmp_path / "camera.avi"
    write_video(video, [empty] * 15 + [person] * 20, fps=10)
    r = run("--seconds", "4", "--model", str(standin_model), "--record", str(tmp_path / "take"),
            "--teacher", f"camera:{video}", "--teacher-latency", "0.1", "--min-confidence", "0")
    assert r.returncode == 0, r.stderr
    session = read_session(tmp_path / "take")
    assert session.info.provenance["teacher"]["origin_sample"] == 0
    finite = np.flatnonzero(np.isfinite(session.poses).all(axis=(1, 2)))
    assert finite[0] == 168, finite[:5]
    # From there every frame is taught until the video's last frame (3.4 s, seen at 3.3 s),
    # and none after it: the person is never lost, and nothing is made up.
    np.testing.assert_array_equal(finite, np.arange(168, 397))


def test_without_the_camera_extra_run_says_how_to_install_it(standin_model, tmp_path):
    blocked = tmp_path / "blocked" / "mediapipe"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('No module named mediapipe')\n")
    r = run("--fast", "--seconds", "1", "--model", str(standin_model), "--record",
            str(tmp_path / "take"), "--teacher", "camera",
            extra_env={"PYTHONPATH": str(blocked.parent)})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        "bgm2pose run: error: the camera teacher needs MediaPipe and OpenCV, which are not "
        "installed here (No module named mediapipe); install it with `.venv/bin/pip install -e "
        "'.[camera]'` (scripts/setup.sh does)")
    assert not (tmp_path / "take").exists()


def test_a_teacher_without_a_recording_is_one_sentence(standin_model):
    r = run("--fast", "--seconds", "1", "--model", str(standin_model), "--teacher", "virtual")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == ("bgm2pose run: error: --teacher labels a "
                                                 "recording; add --record DIR")
