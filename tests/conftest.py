"""Fixtures shared by every test folder.

``virtual_room``: starts the virtual rig as a JACK client in its own process on that server
(as ``bgm2pose virtual-room`` runs it): ``with virtual_room(*cli_args) as (ready, stopped)``.

``jack_server``: a real JACK server (dummy driver, 48 kHz, period 512) for the whole session,
named uniquely per test run, with ``JACK_DEFAULT_SERVER`` pointing at it. PortAudio is shut
down before the server stops (otherwise its JACK host API aborts the process); a test that
starts a JACK client after PortAudio initialised calls ``backends.refresh_devices()``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from bgm2pose.app.xvfb import stop_process

JACK_RATE = 48_000
JACK_PERIOD = 512


@pytest.fixture(scope="session")
def jack_server(tmp_path_factory):
    """Name of a running JACK server (dummy driver) that lives for the test session."""
    missing = [tool for tool in ("jackd", "jack_wait") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed; scripts/setup.sh installs jackd2")
    name = f"bgm2pose-test-{os.getpid()}"
    log_path = tmp_path_factory.mktemp("jack") / "jackd.log"
    with open(log_path, "w") as log:
        # A new session, so a Ctrl-C aimed at pytest does not kill the server mid-test.
        proc = subprocess.Popen(
            ["jackd", "-n", name, "-d", "dummy", "-r", str(JACK_RATE), "-p", str(JACK_PERIOD)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    previous = os.environ.get("JACK_DEFAULT_SERVER")
    try:
        try:
            subprocess.run(["jack_wait", "-s", name, "-w", "-t", "10"], check=True,
                           capture_output=True, timeout=20)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pytest.fail(f"jackd did not come up within 10 s; its log:\n{log_path.read_text()}")
        os.environ["JACK_DEFAULT_SERVER"] = name
        yield name
    finally:
        sd = sys.modules.get("sounddevice")
        while sd is not None and sd._initialized:  # PortAudio's JACK client leaves first
            sd._terminate()
        stop_process(proc)
        if previous is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = previous


def _room_line(proc: subprocess.Popen, timeout: float) -> dict:
    """The next JSON status line of the virtual room."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"the virtual room printed nothing for {timeout} s")
    line = proc.stdout.readline()
    if not line:
        proc.stderr.seek(0)
        raise RuntimeError(f"the virtual room exited early: {proc.stderr.read()}")
    return json.loads(line)


@contextlib.contextmanager
def _virtual_room(server: str, *args: str):
    """Yields (ready line, dict that receives the stopped line); the room must stop cleanly
    on SIGINT, and is killed if it does not."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    # stderr to a file: JACK's chatter must never fill a pipe and block the room.
    with tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "bgm2pose.sensing.virtual_room",
                                 "--server", server, *args],
                                stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        proc.stderr = stderr
        stopped: dict = {}
        try:
            yield _room_line(proc, 60), stopped
            proc.send_signal(signal.SIGINT)
            stopped.update(_room_line(proc, 30))
            assert proc.wait(timeout=30) == 0, "the virtual room failed on stopping"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()


@pytest.fixture(scope="session")
def virtual_room(jack_server):
    """``virtual_room(*args)``: the virtual room on the test JACK server, see the module
    docstring."""
    return functools.partial(_virtual_room, jack_server)
