"""A recording labelled by a pose teacher (the virtual rig's truth with a camera's flaws): its
poses are the teacher's on the 120 fps frames, in time with the audio when the latency setting
is right, with the teacher's confidences beside them."""

from __future__ import annotations

import numpy as np
import pytest
from bgm2pose.sensing.backend_virtual import VirtualBackend, VirtualScene
from bgm2pose.sensing.player import Player
from bgm2pose.sensing.recorder import RecorderError, SessionRecorder
from bgm2pose.sensing.ring import SampleRing
from bgm2pose.sensing.session import CONFIDENCE_FILE, SessionInfo, read_session
from bgm2pose.sensing.teacher.virtual import VirtualTeacher

FS = 48_000


def record(folder, latency_s: float, correction_s: float, seconds: float = 4.0):
    rng = np.random.default_rng(1)
    played = (0.1 * rng.standard_normal((2, int(seconds * FS) + FS))).astype(np.float32)
    player = Player([played], fifo_frames=played.shape[1] + FS)
    player.pump()
    scene = VirtualScene(motion_seed=6, noise_seed=6)
    backend = VirtualBackend(player, scene, realtime=False, stop_after=int(seconds * FS))
    teacher = VirtualTeacher(backend.ground_truth, noise_cm=3, latency_s=latency_s,
                             correction_s=correction_s, fps=30)
    recorder = SessionRecorder(folder, backend.recorded, player.reference,
                               SessionInfo(mic_convention="internal"), teacher=teacher,
                               flush_s=0.2)
    recorder.start()
    with backend:
        assert backend.wait(120)
    recorder.stop()
    assert recorder.error is None
    return read_session(folder), scene.motion().next(int(seconds * 120))


def best_shift(poses: np.ndarray, truth: np.ndarray, most: int = 24) -> int:
    """The lag (frames) by which the recorded poses follow the truth best."""
    inner = slice(most, len(poses) - most)
    rows = np.arange(len(poses))[inner]
    errors = [np.nanmean(np.linalg.norm(poses[inner] - truth[rows - k], axis=-1))
              for k in range(-most, most + 1)]
    return int(np.argmin(errors)) - most


def test_taught_poses_are_the_truth_within_the_noise_and_in_time(tmp_path):
    session, truth = record(tmp_path / "take", latency_s=0.1, correction_s=0.1)
    poses = session.poses
    assert len(poses) == len(truth)
    finite = np.isfinite(poses).all(axis=(1, 2))
    # Every frame has teacher poses around it but the last few after the last 30 fps pose.
    assert finite[:-4].all()
    error = np.linalg.norm(poses[finite] - truth[finite], axis=-1)
    rms = np.sqrt(np.mean(error ** 2))
    assert 0.01 < rms < 0.03  # 3 cm RMS noise, part averaged away between camera frames
    assert best_shift(poses, truth) == 0
    confidence = np.load(session.folder / CONFIDENCE_FILE)
    assert confidence.shape == (len(poses), 21)
    assert np.all(confidence[finite] == 1) and np.all(confidence[~finite] == 0)
    teacher = session.info.provenance["teacher"]
    assert teacher["name"] == "virtual" and teacher["noise_cm"] == 3
    assert teacher["latency_setting_s"] == 0.1


def test_an_uncorrected_camera_latency_shows_as_poses_late_by_it(tmp_path):
    session, truth = record(tmp_path / "take", latency_s=0.1, correction_s=0.0)
    assert best_shift(session.poses, truth) == 12  # 0.1 s at 120 fps


def test_a_recording_takes_its_poses_from_one_source(tmp_path):
    teacher = VirtualTeacher(lambda start, n: None)
    with pytest.raises(RecorderError, match="poses come from one of them"):
        SessionRecorder(tmp_path / "x", SampleRing(4, FS), SampleRing(2, FS), SessionInfo(),
                        ground_truth=lambda start, n: None, teacher=teacher)
