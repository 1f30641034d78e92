"""Memory of playing a long music file: `bgm2pose run` with a 1-hour track against a 1-minute one.

Run: ``.venv/bin/python benchmarks/playlist_memory.py [--seconds 30] [--keep]``. Writes two
44.1 kHz stereo FLAC files (a slowly gliding two-tone chord, so FLAC keeps the hour small) into
a temporary folder under /tmp, then runs ``bgm2pose run --backend virtual --fast --tracks F
--seconds S --quiet`` once with each: the same work, only the track's length differs, and the
player decodes and resamples (44.1 -> 48 kHz) the track as it plays. Peak resident memory of
each run is read from the kernel's accounting of the finished child (``wait4``). The files are
deleted afterwards unless ``--keep``.

Last line ``<figure>: <value> (goal ...)``: how much more the 1-hour track's run peaked at.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 44_100
GOAL_MB = 50.0
BIN = Path(sys.executable).with_name("bgm2pose")


def write_track(path: Path, minutes: float) -> None:
    """A two-tone chord whose pitch glides a little every second, written a second at a time."""
    second = np.arange(RATE) / RATE
    with sf.SoundFile(path, "w", RATE, 2, subtype="PCM_16") as f:
        for k in range(round(minutes * 60)):
            glide = 20 * np.sin(k / 30)
            f.write(0.3 * np.stack([np.sin(2 * np.pi * (220 + glide) * second),
                                    np.sin(2 * np.pi * (330 + glide) * second)], axis=1))


def peak_rss_mb(track: Path, seconds: float) -> tuple[float, float, str]:
    """(peak resident MB, wall seconds, the run's last stderr line) of one run."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [str(BIN), "run", "--backend", "virtual", "--fast", "--quiet", "--seconds",
             str(seconds), "--tracks", str(track)],
            stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        lines = err.read().strip().splitlines()
    if proc.returncode != 0:
        sys.exit(f"bgm2pose run failed on {track.name} (exit {proc.returncode}): "
                 f"{lines[-1] if lines else ''}")
    return usage.ru_maxrss / 1024, time.monotonic() - start, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="captured audio per run")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bgm2pose-playlist-memory-", dir="/tmp"))
    try:
        tracks = {}
        for name, minutes in (("1-minute", 1.0), ("1-hour", 60.0)):
            tracks[name] = folder / f"{name}.flac"
            start = time.monotonic()
            write_track(tracks[name], minutes)
            print(f"wrote {tracks[name]} ({tracks[name].stat().st_size / 1e6:.0f} MB) in "
                  f"{time.monotonic() - start:.0f} s", flush=True)
        peaks = {}
        for name, track in tracks.items():
            peaks[name], wall, _ = peak_rss_mb(track, args.seconds)
            print(f"{name} track: peak RSS {peaks[name]:.0f} MB ({args.seconds:.0f} s of audio "
                  f"in {wall:.0f} s)", flush=True)
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder)
    extra = peaks["1-hour"] - peaks["1-minute"]
    print(f"peak memory of a 1-hour track over a 1-minute one, MB: {extra:.1f} "
          f"(goal <= {GOAL_MB:.0f})")


if __name__ == "__main__":
    main()
