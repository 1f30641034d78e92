"""Frames a teacher masked (NaN poses, ``sensing.teacher.align``) never become training
targets: ``session_windows`` keeps only the windows whose pose rows are all finite."""

from __future__ import annotations

import numpy as np
from bgm2pose.models.windows import session_windows
from bgm2pose.sensing.backend_virtual import VirtualScene
from bgm2pose.sensing.session import SessionInfo, read_session, write_session


def test_windows_over_masked_frames_are_left_out(tmp_path):
    rng = np.random.default_rng(1)
    seconds = 6
    mic = (0.1 * rng.standard_normal((4, seconds * 48_000))).astype(np.float32)
    reference = (0.1 * rng.standard_normal((2, seconds * 48_000))).astype(np.float32)
    poses = VirtualScene().motion().next(seconds * 120).astype(np.float32)
    poses[200] = np.nan  # inside window 2 (frames 144..215)
    poses[432:440] = np.nan  # window 6 (432..503), and 5 (360..431) interpolates towards 432
    write_session(tmp_path / "s", SessionInfo(), mic, reference, poses)
    session = read_session(tmp_path / "s")
    windows = session_windows(session)
    np.testing.assert_array_equal(windows.start_sample // 28_800, [0, 1, 3, 4, 7, 8, 9])
    assert np.all(np.isfinite(windows.poses))
    # The windows kept are the ones a session without masked frames gives.
    session.poses = VirtualScene().motion().next(seconds * 120).astype(np.float32)
    whole = session_windows(session)
    np.testing.assert_array_equal(windows.poses, whole.poses[[0, 1, 3, 4, 7, 8, 9]])


def test_a_teachers_labels_are_scaled_by_the_persons_hip_spine_not_each_frames(tmp_path):
    # The virtual teacher's 3 cm per joint on a ~10 cm hip-spine bone: divided frame by frame,
    # every target would swing by ~20% of its distance from the hips.
    rng = np.random.default_rng(2)
    seconds = 6
    mic = (0.1 * rng.standard_normal((4, seconds * 48_000))).astype(np.float32)
    reference = (0.1 * rng.standard_normal((2, seconds * 48_000))).astype(np.float32)
    truth = VirtualScene().motion().next(seconds * 120).astype(np.float32)
    noisy = truth + rng.normal(scale=0.03, size=truth.shape).astype(np.float32)
    write_session(tmp_path / "truth", SessionInfo(), mic, reference, truth)
    write_session(tmp_path / "taught", SessionInfo(provenance={"teacher": {"name": "virtual"}}),
                  mic, reference, noisy)
    expected = session_windows(read_session(tmp_path / "truth")).poses
    taught = session_windows(read_session(tmp_path / "taught")).poses
    untaught = read_session(tmp_path / "taught")
    untaught.info.provenance.clear()  # the same labels, normalised frame by frame
    per_frame = session_windows(untaught).poses
    hands = [8, 12]  # LeftHand, RightHand: farthest from the hips, scaled most

    def error(poses, joints=slice(None)):
        return np.abs(poses - expected).reshape(*poses.shape[:2], 21, 3)[:, :, joints].mean()

    assert error(taught) < 0.75 * error(per_frame)  # measured: 0.65x
    assert error(taught, hands) < 0.7 * error(per_frame, hands)  # measured: 0.62x
