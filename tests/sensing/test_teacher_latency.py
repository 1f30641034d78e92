"""A camera teacher's latency from claps (``sensing.teacher.latency``, ``bgm2pose
teacher-latency``): a session whose mic hears claps and whose 30 fps teacher sees the hands meet
0.13 s later gives back 0.13 s, within one 120 fps frame, whatever latency setting it was
recorded with."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from bgm2pose.sensing.skeleton import INDEX
from bgm2pose.sensing.session import SessionInfo, write_session
from bgm2pose.sensing.sim.subjects import SUBJECTS
from bgm2pose.sensing.teacher import TeacherError, TeacherPoses
from bgm2pose.sensing.teacher.align import resample
from bgm2pose.sensing.teacher.latency import heard_claps, measure, seen_claps

FS = 48_000
CLAPS = np.array([1.0, 2.13, 3.27, 4.31, 5.46, 6.58, 7.71])  # s, at every phase of a 30 fps frame
LATENCY = 0.13


def clapping_session(folder, setting_s: float):
    rng = np.random.default_rng(4)
    seconds = 9
    mic = (1e-3 * rng.standard_normal((4, seconds * FS))).astype(np.float32)
    for t in CLAPS:  # a 20 ms burst, decaying: a clap as an omni mic hears it
        n = int(t * FS)
        mic[:, n:n + 960] += (0.2 * rng.uniform(-1, 1, 960) * np.exp(-np.arange(960) / 150))
    reference = (0.01 * rng.standard_normal((2, seconds * FS))).astype(np.float32)
    # The camera: 30 fps, frames taken at k / 30 s, stamped LATENCY late less the setting.
    t = np.arange(seconds * 30) / 30
    gap = 0.03 + 0.4 * (1 - np.exp(-((t[:, None] - CLAPS[None]) / 0.12) ** 2)).min(axis=1)
    joints = np.repeat(SUBJECTS[0].rest_pose()[None], len(t), axis=0)
    joints[:, INDEX["LeftHand"], 0] = gap / 2
    joints[:, INDEX["RightHand"], 0] = -gap / 2
    taught = TeacherPoses((t + LATENCY - setting_s) * FS, joints, np.ones((len(t), 21)))
    poses, _ = resample(taught, 0, seconds * 120, FS // 120, FS)
    info = SessionInfo(provenance={"teacher": {"name": "camera", "latency_setting_s": setting_s}})
    return write_session(folder, info, mic, reference, poses)


@pytest.mark.parametrize("setting_s", [0.0, 0.05])
def test_claps_give_the_camera_latency_within_one_frame(tmp_path, setting_s):
    folder = clapping_session(tmp_path / "claps", setting_s)
    r = subprocess.run([sys.executable, "-m", "bgm2pose.app.cli", "teacher-latency", str(folder)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("teacher-latency: 7 claps (7 heard, 7 seen): the camera is ")
    measured = float(r.stdout.rsplit("--teacher-latency ", 1)[1])
    assert abs(measured - LATENCY) < 1 / 120, r.stdout


def test_heard_claps_are_the_onsets():
    rng = np.random.default_rng(0)
    w = 1e-3 * rng.standard_normal(4 * FS)
    for t in (0.5, 1.7, 2.9):
        w[int(t * FS):int(t * FS) + 480] += 0.4
    np.testing.assert_allclose(heard_claps(w, FS), [0.5, 1.7, 2.9], atol=1e-3)


def test_too_few_claps_is_one_sentence_with_what_to_do():
    with pytest.raises(TeacherError, match=r"2 claps were heard and 1 seen, and only 1 of them "
                                           r"pair up; record again with the person clapping"):
        measure(np.array([1.0, 2.0]), np.array([1.1]))


def test_hands_that_never_meet_are_no_claps():
    poses = np.repeat(SUBJECTS[0].rest_pose()[None], 240, axis=0)
    assert len(seen_claps(poses, 120.0)) == 0
