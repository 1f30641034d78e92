"""Fixtures shared by every test folder.

``jack_server``: a real JACK server (dummy driver, 48 kHz, period 512) for the whole session,
named uniquely per test run, with ``JACK_DEFAULT_SERVER`` pointing at it. PortAudio is shut
down before the server stops (otherwise its JACK host API aborts the process); a test that
starts a JACK client after PortAudio initialised calls ``backends.refresh_devices()``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

JACK_RATE = 48_000
JACK_PERIOD = 512


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


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
        _stop(proc)
        if previous is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = previous
