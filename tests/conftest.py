"""Fixtures shared by every test folder.

``jack_server``: a real JACK server (dummy driver, 48 kHz, period 512) for the whole session,
under the first name of a small pool no running server holds (see ``_NAME_POOL``), with
``JACK_DEFAULT_SERVER`` pointing at it. PortAudio is shut down before the server stops
(otherwise its JACK host API aborts the process); a test that starts a JACK client after
PortAudio initialised calls ``backends.refresh_devices()``.

``jack_log``: the path of that server's log.

``own_jack_server``: (name, process) of a JACK server of one test's own, for tests that kill it.

``bad_music``: each kind of music file that cannot be played (``BAD_MUSIC``: empty, no samples,
truncated, not audio, missing, a folder, unreadable) in turn, with the phrase of its reason.

``virtual_room``: starts the virtual rig as a JACK client in its own process on the session's
server (as ``bgm2pose virtual-room`` runs it): ``with virtual_room(*cli_args) as (ready,
stopped)``; ``room_on(server, *cli_args, stop_cleanly=True)`` does it on any server.

``direct_rig``: a rig file (``--rig``) in which only the direct sound meets the body, the
cheaper room for JACK tests (see the fixture).

``write_video``: ``write_video(path, rgb_frames, fps)`` writes a video file OpenCV reads, to
stand in for a camera (needs the ``[camera]`` extra's OpenCV).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import types

import pytest

from bgm2pose.app.xvfb import stop_process

# Kinds of music that cannot be played -> the phrase of the reason ``check_music`` gives.
BAD_MUSIC = {
    "empty file": "is empty",
    "zero-length WAV": "holds no audio samples",
    "truncated FLAC": "is cut short",
    "random bytes named .mp3": "could not be decoded",
    "missing path": "does not exist",
    "folder named x.wav": "is a folder",
    "unreadable file": "is unreadable",
}

JACK_RATE = 48_000
JACK_PERIOD = 512


# jackd2's shared-memory registry has 8 server slots, and it frees the slot of a server that
# died without unregistering (one pulled out from under its clients, as the device-loss test
# does, or a killed one) only when a server of the same name starts. Names therefore come from
# a small fixed pool, never the pid: with pid names, each suite run leaked a slot for good, and
# the ninth run failed every JACK test with "Too many servers already active".
_NAME_POOL = 4


def _jackd_running(name: str) -> bool:
    check = subprocess.run(["jack_wait", "-s", name, "-c"], capture_output=True, text=True,
                           timeout=20)
    return check.stdout.strip() == "running"


def _any_jackd_process() -> bool:
    for comm in glob.glob("/proc/[0-9]*/comm"):
        with contextlib.suppress(OSError), open(comm) as f:
            if f.read().strip() == "jackd":
                return True
    return False


def _start_jackd(name: str, log_path) -> subprocess.Popen | None:
    """jackd under ``name``, up and answering; None if another server holds the name (a
    concurrent test run) or the registry is full, which its log then says."""
    with open(log_path, "w") as log:
        # A new session, so a Ctrl-C aimed at pytest does not kill the server mid-test.
        proc = subprocess.Popen(
            ["jackd", "-n", name, "-d", "dummy", "-r", str(JACK_RATE), "-p", str(JACK_PERIOD)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        subprocess.run(["jack_wait", "-s", name, "-w", "-t", "10"], check=True,
                       capture_output=True, timeout=20)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        if proc.poll() is None:
            stop_process(proc)
            pytest.fail(f"jackd did not come up within 10 s; its log:\n{log_path.read_text()}")
    if proc.poll() is not None:  # it failed to register; jack_wait may have seen the other one
        return None
    return proc


@contextlib.contextmanager
def _jackd(prefix: str, log_path):
    """A JACK server (dummy driver) under the first free name ``prefix-K``; yields
    (name, process)."""
    missing = [tool for tool in ("jackd", "jack_wait") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed; scripts/setup.sh installs jackd2")
    proc = None
    for k in range(_NAME_POOL):
        name = f"{prefix}-{k}"
        if _jackd_running(name):
            continue
        proc = _start_jackd(name, log_path)
        if proc is None and "Too many servers" in log_path.read_text() \
                and not _any_jackd_process():
            # Full, yet no server runs on this machine: every slot is a dead server's (from
            # pid-named runs before the pool). jackd's --replace-registry would start afresh,
            # but 1.9.21 refuses it ("unknown option character"), so remove JACK's shared
            # memory files, which is safe with no server to use them.
            for path in glob.glob("/dev/shm/jack*"):
                if os.path.isdir(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
            proc = _start_jackd(name, log_path)
        if proc is not None:
            break
    if proc is None:
        pytest.fail(f"no JACK server could start under {prefix}-0..{_NAME_POOL - 1}; the last "
                    f"one's log:\n{log_path.read_text()}")
    try:
        yield name, proc
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def jack_log(tmp_path_factory):
    """Path of the session JACK server's log, where jackd names the client late in each xrun
    (``sensing.jack_log``)."""
    return tmp_path_factory.mktemp("jack") / "jackd.log"


@pytest.fixture(scope="session")
def jack_server(jack_log):
    """Name of a running JACK server (dummy driver) that lives for the test session."""
    previous = os.environ.get("JACK_DEFAULT_SERVER")
    with _jackd("bgm2pose-test", jack_log) as (name, _):
        os.environ["JACK_DEFAULT_SERVER"] = name
        try:
            yield name
        finally:
            sd = sys.modules.get("sounddevice")
            while sd is not None and sd._initialized:  # PortAudio's JACK client leaves first
                sd._terminate()
            if previous is None:
                os.environ.pop("JACK_DEFAULT_SERVER", None)
            else:
                os.environ["JACK_DEFAULT_SERVER"] = previous


@pytest.fixture
def own_jack_server(tmp_path):
    """(name, process) of a JACK server of this test's own, for tests that kill it; this
    process never connects to it (use it from subprocesses only)."""
    with _jackd("bgm2pose-own", tmp_path / "jackd.log") as server:
        yield server


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
def _virtual_room(server: str, *args: str, stop_cleanly: bool = True):
    """Yields (ready line, dict that receives the stopped line); with ``stop_cleanly`` the
    room must stop cleanly on SIGINT. Killed if it is still there at the end."""
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
            if stop_cleanly:
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


@pytest.fixture(scope="session")
def room_on():
    """``room_on(server, *args, stop_cleanly=True)``: the virtual room on any JACK server."""
    return _virtual_room



@pytest.fixture(scope="session")
def as_nobody():
    """(command prefix, environment variables) that run a command as user nobody, or None if
    this Python cannot run so; numba's cache and HOME go to a folder of its own, since
    nobody cannot write beside the project's sources."""
    if shutil.which("setpriv") is None:
        yield None
        return
    home = tempfile.mkdtemp(prefix="bgm2pose-nobody-")
    os.chmod(home, 0o777)
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    variables = {"HOME": home, "NUMBA_CACHE_DIR": home}
    ok = subprocess.run([*prefix, sys.executable, "-c", "import bgm2pose.sensing.features"],
                        capture_output=True, timeout=120,
                        env=dict(os.environ, **variables)).returncode == 0
    try:
        yield (prefix, variables) if ok else None
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def direct_rig(tmp_path):
    """Path of a rig file for `virtual-room --rig` and `run --rig` with only the direct sound
    meeting the body. The JACK tests' room client renders it in about two thirds of the
    default rig's CPU time, leaving more of a loaded machine to the process under test; a
    test comparing with an in-process run gives that run the same file."""
    path = tmp_path / "direct-rig.json"
    path.write_text(json.dumps({"body_paths": "direct"}))
    return path


def _write_video(path, frames, fps: float) -> None:
    import cv2

    h, w, _ = frames[0].shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()


@pytest.fixture(scope="session")
def write_video():
    """``write_video(path, rgb_frames, fps)``: a video file standing in for a camera."""
    return _write_video


@pytest.fixture(params=list(BAD_MUSIC))
def bad_music(request):
    """A music file that cannot be played, of each ``BAD_MUSIC`` kind in turn: a namespace of
    ``kind``, ``path``, ``phrase``, and ``as_user`` and ``env``, the command prefix and the
    environment variables to add to try it with. Root reads a chmod 000 file, so there the
    unreadable one is tried as user nobody (and skipped if that user cannot run this Python);
    both are empty otherwise."""
    import numpy as np
    import soundfile as sf

    kind = request.param
    as_user, variables = [], {}
    if kind == "unreadable file" and os.geteuid() == 0:
        nobody = request.getfixturevalue("as_nobody")
        if nobody is None:
            pytest.skip("running as root, which reads a chmod 000 file, and user nobody "
                        "cannot run this Python to try it")
        as_user, variables = nobody
    folder = tempfile.mkdtemp(prefix="bgm2pose-bad-music-")
    os.chmod(folder, 0o755)  # nobody must reach the unreadable file to be refused it
    path = os.path.join(folder, {"empty file": "empty.wav", "zero-length WAV": "zero.wav",
                                 "truncated FLAC": "cut.flac",
                                 "random bytes named .mp3": "noise.mp3",
                                 "missing path": "gone.wav", "folder named x.wav": "x.wav",
                                 "unreadable file": "locked.flac"}[kind])
    tone = 0.3 * np.sin(np.arange(96_000) * 0.05)[:, None].repeat(2, axis=1)  # 2 s, 48 kHz
    if kind == "empty file":
        open(path, "wb").close()
    elif kind == "zero-length WAV":
        sf.write(path, np.zeros((0, 2)), 48_000)
    elif kind == "truncated FLAC":  # an unfinished copy: the header promises 2 s
        sf.write(path, tone, 48_000)
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[:len(data) // 2])
    elif kind == "random bytes named .mp3":
        with open(path, "wb") as f:
            f.write(np.random.default_rng(0).bytes(20_000))
    elif kind == "folder named x.wav":
        os.mkdir(path)
    elif kind == "unreadable file":
        sf.write(path, tone, 48_000)
        os.chmod(path, 0)
    try:
        yield types.SimpleNamespace(kind=kind, path=path, phrase=BAD_MUSIC[kind],
                                    as_user=as_user, env=variables)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
