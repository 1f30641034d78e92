"""The virtual room as a JACK client when its JACK server dies under it: one sentence naming
the cause and the fix, and a clean non-zero exit (PortAudio, which pyroomacoustics' import of
sounddevice starts in the room's process, used to abort it with SIGABRT instead)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_the_room_ends_with_one_sentence_when_its_jack_server_dies(own_jack_server, tmp_path):
    name, server = own_jack_server
    # As a user runs it: the room on the default server, which PortAudio also joins.
    env = dict(os.environ, JACK_DEFAULT_SERVER=name, OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1")
    with open(tmp_path / "stderr", "w+") as stderr:
        room = subprocess.Popen([sys.executable, "-m", "bgm2pose.app.cli", "virtual-room"],
                                stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        try:
            ready = json.loads(room.stdout.readline() or "{}")
            assert ready.get("event") == "ready", stderr.seek(0) or stderr.read()
            server.terminate()
            stopped = json.loads(room.stdout.readline() or "{}")
            code = room.wait(timeout=60)
        finally:
            if room.poll() is None:
                room.kill()
                room.wait()
            room.stdout.close()
        stderr.seek(0)
        err = stderr.read()
    assert code == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("bgm2pose virtual-room: the default JACK server shut down"), err
    assert "jackd" in last  # the fix: start the server again
    assert "Traceback" not in err and "Assertion" not in err
    assert stopped.get("event") == "stopped" and stopped["error"]
