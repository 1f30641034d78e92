"""Long run of the live engine on the virtual rig: memory stays flat, no window is dropped.

Run: ``.venv/bin/python benchmarks/long_run.py [--minutes 3] [--realtime] [--model M.onnx]``.
By default the rig runs as fast as the estimator allows (``LiveOptions.realtime=False``: never
more than a hop ahead, so every window must be estimated); ``--realtime`` paces it by the
clock as a device would, where a loaded machine may make the worker skip windows (counted).
Resident memory (``/proc/self/statm``) is sampled every 10 s of audio; the figure is its
growth from the end of the first minute (warm-up: rings filled, caches, allocator pools) to
the end. Without ``--model`` the cpu preset is exported untrained (as in ``live.py``).

Checks printed: windows estimated + flagged == windows the audio holds, none dropped, and the
growth of resident memory after the first minute; last line ``<figure>: <value> (goal ...)``.
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bgm2pose.app.live_engine import LiveEngine, LiveOptions  # noqa: E402
from untrained import untrained_model  # noqa: E402

FS = 48_000
HOP = 2_400
WINDOW = 28_800
GROWTH_GOAL_MB = 5.0
SAMPLE_EVERY_S = 10.0
WARM_UP_S = 60.0


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--realtime", action="store_true")
    parser.add_argument("--model", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or untrained_model(Path(tmp))
        engine = LiveEngine(LiveOptions(model=model, realtime=args.realtime))
        target = int(args.minutes * 60 * FS)
        samples: list[tuple[float, float]] = []  # (audio seconds, RSS MB)
        t0 = time.monotonic()
        engine.start()
        try:
            next_sample = 0.0
            while engine.running and engine.backend.recorded.end < target:
                time.sleep(0.2)
                audio_s = engine.backend.recorded.end / FS
                if audio_s >= next_sample:
                    samples.append((audio_s, rss_mb()))
                    next_sample += SAMPLE_EVERY_S
                    stats = engine.feed.latest()[1]
                    if stats is not None:
                        print(f"\r{audio_s:6.0f} s audio  RSS {samples[-1][1]:7.1f} MB  "
                              f"windows {stats.windows}  dropped {stats.dropped}  "
                              f"flagged {stats.flagged}", end="", file=sys.stderr, flush=True)
        finally:
            engine.stop()
        print(file=sys.stderr)
        samples.append((engine.backend.recorded.end / FS, rss_mb()))
    stats = engine.feed.latest()[1]
    end = engine.backend.recorded.end
    expected = (end // HOP * HOP - WINDOW) // HOP + 1
    handled = stats.windows + stats.flagged
    after = [mb for s, mb in samples if s >= WARM_UP_S] or [samples[-1][1]]
    growth = after[-1] - after[0]
    print(f"{end / FS:.0f} s of audio in {time.monotonic() - t0:.0f} s wall "
          f"({'real time' if args.realtime else 'paced by the estimator'})")
    print(f"windows: {stats.windows} estimated + {stats.flagged} flagged = {handled} of "
          f"{expected}; dropped {stats.dropped}; xruns {stats.xruns}; status "
          f"{stats.status or 'ok'}")
    print("RSS (MB) every 10 s of audio: " + " ".join(f"{mb:.0f}" for _, mb in samples))
    complete = stats.dropped == 0 and handled == expected
    print(f"RSS growth after the first minute: {growth:+.1f} MB (goal < {GROWTH_GOAL_MB:.0f} MB "
          f"and no window dropped: {'yes' if complete else 'NO'})")
    return 0 if growth < GROWTH_GOAL_MB and complete else 1


if __name__ == "__main__":
    sys.exit(main())
