"""``bgm2pose features`` on sessions it cannot use whole: one warning line for files of
different lengths (and the duration it used), one error sentence for a session shorter than
a window."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from bgm2pose.sensing.session import SessionInfo, write_session

BIN = Path(sys.executable).with_name("bgm2pose")


def _session(folder: Path, mic_s: float, reference_s: float) -> Path:
    rng = np.random.default_rng(0)
    mic = (0.2 * rng.uniform(-1, 1, (4, int(mic_s * 48_000)))).astype(np.float32)
    reference = (0.2 * rng.uniform(-1, 1, (2, int(reference_s * 48_000)))).astype(np.float32)
    return write_session(folder, SessionInfo(), mic, reference)


def _features(session: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), "features", str(session), "-o", str(session / "f.npz")],
                          capture_output=True, text=True, timeout=300)


def test_files_of_different_lengths_warn_once_and_quote_the_duration_used(tmp_path):
    session = _session(tmp_path / "s", mic_s=3.0, reference_s=2.0)
    r = _features(session)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == (f"bgm2pose features: warning: session {session}: mic.flac holds "
                                "3.00 s and reference.flac 2.00 s, so only the 2.00 s both "
                                "cover are used")
    assert f"3 windows of (9, 12, 128) (channel, frame, mel) from 2.0 s of {session}" in r.stdout


def test_a_session_shorter_than_one_window_is_one_sentence(tmp_path):
    session = _session(tmp_path / "s", mic_s=0.4, reference_s=0.4)
    r = _features(session)
    assert r.returncode == 2
    assert r.stderr.strip() == (f"bgm2pose features: error: session {session} holds no whole "
                                "0.6 s window of audio (its mic and reference share 0.40 s); "
                                "record or simulate a longer session")
    assert not (session / "f.npz").exists()
