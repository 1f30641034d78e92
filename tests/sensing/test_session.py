import re

import numpy as np
import pytest

from bgm2pose.sensing.bformat import from_internal
from bgm2pose.sensing.session import (
    SessionError, SessionInfo, find_sessions, read_session, write_session,
)


def _audio(rng, channels, n=4800, level=0.3):
    return (level * rng.uniform(-1, 1, (channels, n))).astype(np.float32)


def test_round_trip_keeps_audio_poses_and_info(tmp_path):
    rng = np.random.default_rng(0)
    mic, ref = _audio(rng, 4), _audio(rng, 2)
    poses = rng.normal(size=(12, 21, 3)).astype(np.float32)
    info = SessionInfo(rig={"rt60": 0.5}, subject={"name": "S1", "height": 1.7, "build": 1.0},
                       track="jazz-0000", latency_samples=12.5, provenance={"seed": 3})
    write_session(tmp_path / "s", info, mic, ref, poses)
    s = read_session(tmp_path / "s")
    # 24-bit FLAC: quantisation step 2^-23.
    np.testing.assert_allclose(s.mic, mic, atol=2.0**-22)
    np.testing.assert_allclose(s.reference, ref, atol=2.0**-22)
    np.testing.assert_array_equal(s.poses, poses)
    assert s.info == info
    assert s.duration_s == pytest.approx(0.1)
    assert find_sessions(tmp_path) == [tmp_path / "s"]


def test_mic_in_ambix_is_read_as_internal(tmp_path):
    rng = np.random.default_rng(1)
    internal = _audio(rng, 4, level=0.2)
    write_session(tmp_path / "a", SessionInfo(mic_convention="ambix"),
                  from_internal(internal, "ambix"), _audio(rng, 2))
    np.testing.assert_allclose(read_session(tmp_path / "a").mic, internal, atol=2.0**-22)


def test_refuses_clipping_overwrite_and_bad_shapes(tmp_path):
    rng = np.random.default_rng(2)
    loud = _audio(rng, 4)
    loud[0, 10] = 1.5
    with pytest.raises(SessionError, match="clip"):
        write_session(tmp_path / "c", SessionInfo(), loud, _audio(rng, 2))
    assert not (tmp_path / "c" / "session.toml").exists()
    write_session(tmp_path / "d", SessionInfo(), _audio(rng, 4), _audio(rng, 2))
    with pytest.raises(SessionError, match="already holds"):
        write_session(tmp_path / "d", SessionInfo(), _audio(rng, 4), _audio(rng, 2))
    with pytest.raises(SessionError, match=r"\(4, samples\)"):
        write_session(tmp_path / "e", SessionInfo(), _audio(rng, 2), _audio(rng, 2))


def test_reading_a_non_session_says_what_to_pass(tmp_path):
    with pytest.raises(SessionError, match="not a session folder"):
        read_session(tmp_path)


def _written(tmp_path, poses=None):
    rng = np.random.default_rng(3)
    return write_session(tmp_path / "s", SessionInfo(), _audio(rng, 4), _audio(rng, 2), poses)


@pytest.mark.parametrize("line, message", [
    ('sample_rate = "fast"', "sample_rate = 'fast', which is not a whole number; correct it, "
                             "e.g. sample_rate = 48000"),
    ("pose_fps = 0", "pose_fps = 0, which is not positive"),
    ("latency_samples = true", "latency_samples = True, which is not a number"),
])
def test_a_mistyped_value_in_session_toml_is_named_with_an_example(tmp_path, line, message):
    toml = _written(tmp_path) / "session.toml"
    name = line.split(" ")[0]
    toml.write_text("\n".join(line if row.startswith(f"{name} =") else row
                              for row in toml.read_text().splitlines()))
    with pytest.raises(SessionError, match=re.escape(message)):
        read_session(toml.parent)


def test_a_session_toml_that_is_not_utf8_is_a_sentence(tmp_path):
    toml = _written(tmp_path) / "session.toml"
    toml.write_bytes(toml.read_bytes().replace(b'track = ""', 'track = "café"'.encode("latin-1")))
    with pytest.raises(SessionError, match="not a valid session description.*utf-8"):
        read_session(toml.parent)


@pytest.mark.parametrize("content", ["pickled", "garbage", "truncated"])
def test_poses_that_are_pickled_or_not_npy_are_refused_without_unpickling(tmp_path, content):
    folder = _written(tmp_path, poses=np.zeros((12, 21, 3), np.float32))
    path = folder / "poses.npy"
    if content == "pickled":
        np.save(path, np.array([{"frames": 12}], dtype=object), allow_pickle=True)
    elif content == "garbage":
        path.write_bytes(b"\x00 not an array " * 8)
    else:
        path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(SessionError, match="not a .npy array of plain numbers"):
        read_session(folder)


def test_poses_of_another_shape_are_refused(tmp_path):
    folder = _written(tmp_path)
    np.save(folder / "poses.npy", np.zeros((12, 20, 3), np.float32))
    with pytest.raises(SessionError, match=r"shape \(12, 20, 3\), not poses \(frames, 21, 3\)"):
        read_session(folder)


def test_a_poses_file_of_zero_frames_reads_as_an_unlabelled_session(tmp_path):
    """Recordings through a real device used to write poses.npy with 0 frames; they must read
    as what they are, sessions without labels, not as labels for no window."""
    rng = np.random.default_rng(0)
    mic = (0.1 * rng.standard_normal((4, 48_000))).astype(np.float32)
    reference = (0.1 * rng.standard_normal((2, 48_000))).astype(np.float32)
    write_session(tmp_path / "s", SessionInfo(), mic, reference, np.zeros((0, 21, 3), np.float32))
    assert read_session(tmp_path / "s").poses is None
