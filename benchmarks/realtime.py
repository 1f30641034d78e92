"""Xruns of the duplex path under load: who makes a JACK cycle late while the machine is busy.

Run: ``.venv/bin/python benchmarks/realtime.py [--minutes 10] [--busy 2] [--model M.onnx]
[--log jackd.log]``.
One run: a JACK server (dummy driver, 48 kHz, period 512, as the tests start it), the virtual
room as its own process on the cheap test rig (``{"body_paths": "direct"}``, subject S1), and
``bgm2pose run --backend duplex`` through it with the estimator (the demo model unless
``--model``), for MINUTES, while BUSY ``nice -n 19`` busy loops occupy the machine.

Who was late: read from jackd's log (``sensing.jack_log``). bgm2pose's stream is the client
``PortAudio`` (the room shuts PortAudio down, so it is the only one), the room the client
``room``. Printed beside them: the duplex backend's own xrun count (the
device flags it saw, whoever caused them), the run's summary (windows, flagged, feature and
inference medians) and the room's late blocks and CPU. Last line: the xruns jackd blames on
bgm2pose, scaled to 10 minutes (goal 0).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bgm2pose.app.xvfb import stop_process
from bgm2pose.sensing.jack_log import PORTAUDIO, late_clients

RATE, PERIOD = 48_000, 512
SERVER = "bgm2pose-realtime"


def start_jackd(log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        proc = subprocess.Popen(["jackd", "-n", SERVER, "-d", "dummy", "-r", str(RATE),
                                 "-p", str(PERIOD)], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    subprocess.run(["jack_wait", "-s", SERVER, "-w", "-t", "10"], check=True,
                   capture_output=True, timeout=20)
    if proc.poll() is not None:
        raise SystemExit(f"jackd did not start (another {SERVER!r} running?); its log:\n"
                         f"{log.read_text()}")
    return proc


def room_line(proc: subprocess.Popen, timeout: float) -> dict:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        raise SystemExit("the virtual room printed no status line; is jackd running?")
    return json.loads(line)


def summary_rows(stderr: str) -> dict[str, str]:
    return dict(re.split(r"\s{2,}", line.strip(), maxsplit=1)
                for line in stderr.splitlines() if re.search(r"\S\s{2,}\S", line))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--busy", type=int, default=2, help="nice -n 19 busy loops")
    parser.add_argument("--model", type=Path, help="exported model (default: the demo model)")
    parser.add_argument("--log", type=Path, help="keep jackd's log here, to read the blame")
    args = parser.parse_args()
    env = dict(os.environ, JACK_DEFAULT_SERVER=SERVER, OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rig = tmp / "rig.json"
        rig.write_text(json.dumps({"body_paths": "direct"}))
        jackd = start_jackd(tmp / "jackd.log")
        busy: list[subprocess.Popen] = []
        room = None
        try:
            room = subprocess.Popen([sys.executable, "-m", "bgm2pose.sensing.virtual_room",
                                     "--server", SERVER, "--rig", str(rig)],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    text=True, env=env)
            ready = room_line(room, 120)
            busy = [subprocess.Popen(["nice", "-n", "19", "sh", "-c", "while :; do :; done"])
                    for _ in range(args.busy)]
            latency = ready["delay_samples"] + 2 * ready["period"]
            command = [sys.executable, "-m", "bgm2pose.app.cli", "run", "--quiet",
                       "--backend", "duplex", "--device", "room", "--convention", "internal",
                       "--latency", str(latency), "--seconds", str(args.minutes * 60)]
            if args.model is not None:
                command += ["--model", str(args.model)]
            t0 = time.monotonic()
            run = subprocess.run(command, capture_output=True, text=True, env=env,
                                 timeout=args.minutes * 60 * 2 + 120)
            wall = time.monotonic() - t0
        finally:
            for proc in busy:
                stop_process(proc)
            stopped = {}
            if room is not None and room.poll() is None:
                room.send_signal(signal.SIGINT)
                stopped = room_line(room, 30)
                room.wait(timeout=30)
            stop_process(jackd)
        log = (tmp / "jackd.log").read_text()
    if args.log is not None:
        args.log.write_text(log)
    rows = summary_rows(run.stderr)
    if run.returncode != 0 or "xruns" not in rows:
        print(run.stderr, file=sys.stderr)
        print(f"bgm2pose run failed (exit {run.returncode})")
        return 1
    late = late_clients(log)
    minutes = int(re.search(r"\((\d+) samples\)", rows["captured audio"]).group(1)) / RATE / 60
    ours = late.get(PORTAUDIO, 0)
    print(f"{minutes:.1f} min of audio in {wall / 60:.1f} min wall, {args.busy} nice -n 19 "
          f"busy loops, room on the direct-path rig (CPU {stopped.get('cpu_load', 0):.2f} "
          f"core, late blocks {stopped.get('late_blocks')})")
    print("run: " + ", ".join(f"{k} {rows[k]}" for k in (
        "windows estimated", "windows dropped", "windows flagged", "features (median)",
        "inference (median)", "end to end (median)") if k in rows))
    print(f"duplex backend's xruns (device flags, any cause): {rows['xruns']}")
    print("jackd's late client per xrun: " + (", ".join(
        f"{client} {n}" for client, n in late.most_common()) or "none"))
    print(f"xruns caused by bgm2pose per 10 min under load: {ours * 10 / minutes:.0f} (goal 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
