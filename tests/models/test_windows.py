import numpy as np
import pytest

from bgm2pose.models.windows import aligned_audio, session_windows, window_poses
from bgm2pose.sensing.errors import InputWarning
from bgm2pose.sensing.features import window_features
from bgm2pose.sensing.session import Session, SessionInfo
from bgm2pose.sensing.skeleton import normalise


def _session(seconds=2.4, latency=0, poses=None, offset=0.0):
    rng = np.random.default_rng(0)
    n = int(seconds * 48000)
    ref = (0.1 * rng.standard_normal((2, n))).astype(np.float32)
    mic = (0.1 * rng.standard_normal((4, n))).astype(np.float32)
    info = SessionInfo(latency_samples=latency, pose_offset_s=offset,
                       subject={"name": "S1"}, track="jazz-0000")
    return Session(folder=None, info=info, mic=mic, reference=ref, poses=poses)


def _walking_poses(frames):
    """Rigid skeleton translating at 1 m/s along x: interpolation is exact."""
    rng = np.random.default_rng(1)
    rest = rng.normal(size=(21, 3))
    t = np.arange(frames) / 120.0
    return (rest[None] + t[:, None, None] * np.array([1.0, 0, 0])).astype(np.float32)


def test_windows_pair_features_with_the_right_audio():
    s = _session()
    w = session_windows(s)
    assert w.base.shape == (4, 9, 12, 128)
    np.testing.assert_allclose(
        w.base[2], window_features(s.mic[:, 57600:86400], s.reference[:, 57600:86400]), atol=1e-4)


def test_latency_pairs_mic_n_with_reference_n_minus_latency():
    s = _session(latency=100)
    mic, ref, first = aligned_audio(s)
    assert first == 100
    np.testing.assert_array_equal(mic[:, 0], s.mic[:, 100])
    np.testing.assert_array_equal(ref[:, 0], s.reference[:, 0])
    np.testing.assert_array_equal(mic[:, 500], s.mic[:, 600])
    np.testing.assert_array_equal(ref[:, 500], s.reference[:, 500])


def test_window_poses_interpolate_72_rows_to_12_and_normalise():
    poses = _walking_poses(400)
    w = session_windows(_session(poses=poses))
    # Window 1 starts at 0.6 s = pose row 72; its 12 samples span rows 72..143.
    rows = np.linspace(72, 143, 12)
    expected = normalise(poses[0][None] + (rows / 120.0)[:, None, None] * np.array([1.0, 0, 0]))
    np.testing.assert_allclose(w.poses[1].reshape(12, 21, 3), expected, atol=1e-5)
    np.testing.assert_allclose(window_poses(poses, np.array([72.0]), 72)[0, -1], poses[143], atol=1e-5)


def test_windows_without_poses_are_dropped():
    # 200 rows cover 1.67 s: only the first two 0.6 s windows (rows 0..143) are annotated.
    w = session_windows(_session(seconds=2.4, poses=_walking_poses(200)))
    assert list(w.start_sample) == [0, 28800]


def test_mic_and_reference_of_different_lengths_are_cut_with_a_warning_naming_both():
    s = _session(seconds=2.4)
    s.reference = s.reference[:, :86400]
    with pytest.warns(InputWarning, match=r"mic.flac holds 2.40 s and reference.flac 1.80 s, "
                                          r"so only the 1.80 s both cover are used"):
        w = session_windows(s)
    assert len(w) == 3 and w.seconds == pytest.approx(1.8)


@pytest.mark.parametrize("seconds", [0.02, 0.5])
def test_a_session_shorter_than_one_window_has_none(seconds):
    w = session_windows(_session(seconds=seconds))
    assert len(w) == 0 and w.base.shape == (0, 9, 12, 128)
    assert w.seconds == pytest.approx(seconds)
