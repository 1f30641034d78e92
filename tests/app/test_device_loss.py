"""A device that vanishes mid-run: `bgm2pose run` ends with one sentence and keeps what it
recorded. The device is a JACK client on a JACK server of this test's own, which the test kills.

This file runs before any test that starts the session's JACK server (tests run in file
order): measured here, with a second JACK server running beside it, PortAudio's port
connection on the test's own server fails ("Error starting stream ... JACK error -1")."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bgm2pose.sensing.session import read_session

FS = 48_000


def env() -> dict[str, str]:
    return dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")


def test_a_device_that_vanishes_mid_run_ends_it_with_one_sentence_keeping_the_recording(
        own_jack_server, room_on, standin_model, tmp_path):
    name, server = own_jack_server
    folder = tmp_path / "session"
    with room_on(name, stop_cleanly=False) as (ready, _):
        run = subprocess.Popen(
            [sys.executable, "-m", "bgm2pose.app.cli", "run", "--quiet", "--backend", "duplex",
             "--device", "room", "--convention", "internal", "--latency", "7168",
             "--seconds", "60", "--model", str(standin_model), "--record", str(folder)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(env(), JACK_DEFAULT_SERVER=name))
        try:
            # Until the run records (process start-up is slow on a loaded machine), then a
            # few seconds more.
            deadline = time.monotonic() + 180
            mic = folder / "mic.flac"
            while not (mic.is_file() and mic.stat().st_size > 100_000):
                assert run.poll() is None and time.monotonic() < deadline, \
                    f"the run did not start recording: {run.communicate(timeout=30)}"
                time.sleep(0.2)
            time.sleep(3)
            # The device vanishes: JACK goes away under the running stream. (jackd2 leaves
            # its registry slot behind when it ends under its clients; conftest's name pool
            # reclaims it on the next run.)
            server.terminate()
            out, err = run.communicate(timeout=60)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    assert run.returncode == 1, err
    assert "audio device 'room'" in err.splitlines()[-1]
    assert "Traceback" not in err
    session = read_session(folder)
    assert session.mic.shape[1] >= 2 * FS  # what was recorded before the device went is kept
    assert session.reference.shape[1] == session.mic.shape[1]
