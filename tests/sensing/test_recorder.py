"""The session recorder: a finished recording is the rings sample for sample, and a recording
whose process is killed reads back with read_session up to its last flush."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
import tomllib

import numpy as np
import pytest
from bgm2pose.sensing.backend_virtual import VirtualBackend, VirtualScene
from bgm2pose.sensing.player import Player
from bgm2pose.sensing.recorder import RecorderError, SessionRecorder
from bgm2pose.sensing.ring import SampleRing
from bgm2pose.sensing.session import SessionInfo, read_session

FS = 48_000
LSB = 2.0 ** -23  # one step of a 24-bit sample


def music(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(1)
    return (0.1 * rng.standard_normal((2, int(seconds * FS)))).astype(np.float32)


def test_a_finished_recording_holds_the_rings_and_the_ground_truth(tmp_path):
    played = music(3.0)
    player = Player([played], fifo_frames=played.shape[1] + FS)
    player.pump()
    scene = VirtualScene(motion_seed=4, noise_seed=4)
    total = int(2.5 * FS) + 123
    backend = VirtualBackend(player, scene, realtime=False, stop_after=total)
    recorder = SessionRecorder(tmp_path / "take", backend.recorded, player.reference,
                               SessionInfo(mic_convention="internal", latency_samples=0.0),
                               ground_truth=backend.ground_truth, flush_s=0.2)
    recorder.start()
    with backend:
        assert backend.wait(60)
    folder = recorder.stop(latency_samples=12.5)

    session = read_session(folder)
    assert session.mic.shape == (4, total) and session.reference.shape == (2, total)
    np.testing.assert_allclose(session.mic, backend.recorded.read(0, total), atol=LSB)
    np.testing.assert_allclose(session.reference, played[:, :total], atol=LSB)
    assert np.abs(session.mic).max() > 0.01
    frames = -(-total // 400)
    np.testing.assert_array_equal(session.poses, scene.motion().next(frames))
    assert session.info.latency_samples == 12.5
    assert session.info.provenance["complete"] is True
    assert session.info.provenance["lost_samples"] == 0 and recorder.error is None



def test_a_recording_joined_mid_run_keeps_audio_and_pose_alignment(tmp_path):
    """A recorder started on a running rig at a ring index that is not a whole pose frame:
    file sample k is ring sample first + k for mic and reference, and the poses (row 0 at
    ring frame ceil(first / 400), pose_offset_s its time) give the same training windows as
    the poses of a recording made from sample 0."""
    from bgm2pose.models.windows import session_windows, window_poses
    from bgm2pose.sensing.skeleton import normalise

    played = music(4.0)
    player = Player([played], fifo_frames=played.shape[1] + FS)
    player.pump()
    scene = VirtualScene(motion_seed=5, noise_seed=5)
    total = int(3.5 * FS)
    backend = VirtualBackend(player, scene, realtime=False, stop_after=total)
    info = SessionInfo(mic_convention="internal", latency_samples=0.0)
    whole = SessionRecorder(tmp_path / "whole", backend.recorded, player.reference, info,
                            ground_truth=backend.ground_truth, flush_s=0.2)
    late: list[SessionRecorder] = []

    def join(end: int) -> None:  # the rig's thread, before each block: join once, mid-run
        if end >= FS and not late:
            recorder = SessionRecorder(
                tmp_path / "late", backend.recorded, player.reference,
                SessionInfo(mic_convention="internal", latency_samples=0.0),
                ground_truth=backend.ground_truth, flush_s=0.2, first_sample=end - 1_111)
            recorder.start()
            late.append(recorder)

    backend.pace = join
    whole.start()
    with backend:
        assert backend.wait(60)
    whole.stop()
    (recorder,) = late
    first = recorder.first_sample
    assert first % 400 != 0
    session = read_session(recorder.stop())

    n = total - first
    assert session.mic.shape == (4, n) and session.reference.shape == (2, n)
    np.testing.assert_allclose(session.mic, backend.recorded.read(first, n), atol=LSB)
    np.testing.assert_allclose(session.reference, played[:, first:total], atol=LSB)
    first_frame = -(-first // 400)
    truth = scene.motion().next(-(-total // 400))
    np.testing.assert_array_equal(session.poses, truth[first_frame:])
    assert session.info.pose_offset_s == pytest.approx((first_frame * 400 - first) / FS)
    assert 0 < session.info.pose_offset_s < 400 / FS
    assert recorder.lost_samples == 0 and recorder.error is None

    windows = session_windows(session, hop_frames=3)
    reference = read_session(tmp_path / "whole")
    assert len(windows) >= 10
    # The same instants located in the whole recording's pose file, in ring frames.
    ring_frame = (first + windows.start_sample) / 400
    expected = normalise(window_poses(reference.poses, ring_frame, 72.0))
    np.testing.assert_allclose(windows.poses, expected.reshape(windows.poses.shape), atol=1e-5)


def test_a_stop_while_one_ring_is_ahead_keeps_mic_and_reference_the_same_length(tmp_path):
    # The audio callback writes the reference ring before the mic ring: a stop in between
    # once left the reference file one block longer than the mic file.
    recorded, reference = SampleRing(4, 4 * FS), SampleRing(2, 4 * FS)
    rng = np.random.default_rng(3)
    mic_audio = (0.1 * rng.standard_normal((4, FS))).astype(np.float32)
    ref_audio = (0.1 * rng.standard_normal((2, FS + 512))).astype(np.float32)
    recorded.write(mic_audio.T)  # rings take (frames, channels) blocks
    reference.write(ref_audio.T)
    recorder = SessionRecorder(tmp_path / "take", recorded, reference,
                               SessionInfo(mic_convention="internal"), flush_s=0.2)
    recorder.start()
    session = read_session(recorder.stop())
    assert session.mic.shape == (4, FS) and session.reference.shape == (2, FS)
    np.testing.assert_allclose(session.mic, mic_audio, atol=LSB)
    np.testing.assert_allclose(session.reference, ref_audio[:, :FS], atol=LSB)


def test_a_negative_first_sample_is_refused():
    player = Player([music(0.1)])
    backend = VirtualBackend(player, VirtualScene(subject=None), realtime=False)
    with pytest.raises(RecorderError, match="negative"):
        SessionRecorder("unused", backend.recorded, player.reference, SessionInfo(),
                        first_sample=-1)

_KILLED = """
import sys, time
import numpy as np
from bgm2pose.sensing.backend_virtual import VirtualBackend, VirtualScene
from bgm2pose.sensing.player import Player
from bgm2pose.sensing.recorder import SessionRecorder
from bgm2pose.sensing.session import SessionInfo
rng = np.random.default_rng(1)
played = (0.1 * rng.standard_normal((2, 30 * 48000))).astype(np.float32)
player = Player([played], fifo_frames=played.shape[1] + 48000)
player.pump()
backend = VirtualBackend(player, VirtualScene(motion_seed=4, noise_seed=4), realtime=True)
recorder = SessionRecorder(sys.argv[1], backend.recorded, player.reference,
                           SessionInfo(mic_convention="internal"),
                           ground_truth=backend.ground_truth, flush_s=0.5)
recorder.start()
backend.start()
print("recording", flush=True)
time.sleep(60)
"""


def test_a_killed_recording_reads_back_up_to_its_last_flush(tmp_path):
    folder = tmp_path / "killed"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, str(folder)], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "recording"
        time.sleep(3.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    session = read_session(folder)
    n = session.mic.shape[1]
    # Flushed every 0.5 s while the rig ran in real time: at least 1.5 s survive.
    assert n >= int(1.5 * FS), n
    played = music(30.0)
    m = session.reference.shape[1]
    assert m >= int(1.5 * FS)
    np.testing.assert_allclose(session.reference, played[:, :m], atol=LSB)
    assert np.abs(session.mic).max() > 0.01 and np.all(np.isfinite(session.mic))
    assert session.poses is not None and len(session.poses) >= int(1.5 * 120)
    expected = VirtualScene(motion_seed=4, noise_seed=4).motion().next(len(session.poses))
    np.testing.assert_array_equal(session.poses, expected)
    info = tomllib.loads((folder / "session.toml").read_text())
    assert info["provenance"]["complete"] is False


_REFUSED = """
import sys
import numpy as np
from bgm2pose.sensing.recorder import SessionRecorder
from bgm2pose.sensing.ring import SampleRing
from bgm2pose.sensing.session import SessionInfo
recorded, reference = SampleRing(4, 4 * 48000), SampleRing(2, 4 * 48000)
rng = np.random.default_rng(3)
recorded.write((0.1 * rng.standard_normal((3 * 48000, 4))).astype(np.float32))
reference.write((0.1 * rng.standard_normal((3 * 48000, 2))).astype(np.float32))
recorder = SessionRecorder(sys.argv[1], recorded, reference, SessionInfo(), flush_s=0.2)
recorder.start()
recorder.stop()
print(recorder.error)
"""


def test_a_recording_the_disk_refuses_ends_in_a_sentence_with_the_cause_and_the_fix(tmp_path):
    folder = tmp_path / "take"
    limit = 200_000  # bytes per file, well under the 3 s of 4-channel noise (~1.7 MB)
    proc = subprocess.run(
        [sys.executable, "-c", _REFUSED, str(folder)], capture_output=True, text=True,
        timeout=120, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"),
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert proc.returncode == 0, proc.stderr
    error = proc.stdout.strip()
    assert error == (f"the recording into {folder} stopped after 0.0 s because the disk "
                     "refused a write, so the rest of the run was not recorded; free space on "
                     "that disk (or raise the file-size limit), or record to another folder")
    provenance = tomllib.loads((folder / "session.toml").read_text())["provenance"]
    assert provenance["error"] == error and provenance["complete"] is False


def test_a_folder_with_a_session_is_not_overwritten(tmp_path):
    player = Player([music(0.1)])
    backend = VirtualBackend(player, VirtualScene(subject=None), realtime=False)
    (tmp_path / "session.toml").write_text("")
    with pytest.raises(RecorderError, match="already holds a session; choose a new folder"):
        SessionRecorder(tmp_path, backend.recorded, player.reference, SessionInfo())
