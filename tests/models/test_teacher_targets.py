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
