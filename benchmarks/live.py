"""Cost of the live estimator per window, its CPU share of one core and its end-to-end latency.

Run: ``.venv/bin/python benchmarks/live.py [--seconds 30] [--model M.onnx | --inputs channel]
[--hop 2400]``. Without ``--model`` the ``cpu`` preset reading ``--inputs`` is exported untrained
to a temporary folder (the cost of a network does not depend on its weights). The live engine runs on the virtual rig in
real time; the rig's rendering stands in for the audio device and is *not* the engine's
cost, so CPU is read per thread (Linux ``/proc/self/task``): the estimator's worker (features,
inference, policy, metrics, polling) and the player's decoder are the engine. Figures:

- per window: features and inference as thread-CPU medians of calls on a window of the
  run's own audio after it (so load from other processes does not count), and "other" (the
  worker's CPU per window over the run less those two: aligner reads, policy, metrics,
  publishing, polling); the worker's wall-time medians from ``LiveStats`` beside them;
- CPU share of one core: engine threads' CPU seconds / wall seconds over the run;
- end to end: median time from the capture of a window's last sample to its poses'
  publication (``LiveStats.e2e_ms``).

Goals with the cpu preset on this machine: < 30% of one core and < 80 ms end to end.
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from bgm2pose.app.live_engine import LiveEngine, LiveOptions  # noqa: E402
from bgm2pose.models.inputs import INPUTS, WindowFeatures  # noqa: E402
from bgm2pose.sensing.features import WINDOW_SAMPLES  # noqa: E402
from untrained import untrained_model  # noqa: E402

CPU_GOAL = 0.30
E2E_GOAL_MS = 80.0
_FEATURE_CALLS = 100


def thread_cpu(native_id: int) -> float:
    """CPU seconds (user + system) a thread of this process has used."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_ms(fn, runs: int = 100) -> float:
    """Median thread-CPU milliseconds of a call (after a few warm-up calls)."""
    for _ in range(5):
        fn()
    times = []
    for _ in range(runs):
        start = time.thread_time()
        fn()
        times.append(time.thread_time() - start)
    return float(np.median(times)) * 1e3


def measure(model: Path, seconds: float, hop: int) -> dict[str, float]:
    engine = LiveEngine(LiveOptions(model=model, hop=hop, realtime=True))
    engine.start()
    threads = [engine.estimator._thread.native_id, engine.player._thread.native_id]
    rig = engine.backend._thread.native_id
    time.sleep(2.0)  # settle: first windows, page faults, caches
    cpu0 = sum(thread_cpu(t) for t in threads)
    rig0 = thread_cpu(rig)
    windows0 = engine.feed.latest()[1].windows
    t0 = time.monotonic()
    time.sleep(seconds)
    cpu = sum(thread_cpu(t) for t in threads) - cpu0
    rig_cpu = thread_cpu(rig) - rig0
    wall = time.monotonic() - t0
    stats = engine.feed.latest()[1]
    engine.stop()
    windows = stats.windows - windows0
    per_window_ms = cpu / max(windows, 1) * 1e3
    # The features the model reads, window after window as the estimator computes them (the
    # channel estimate carries its state from one window to the next): the last seconds of the
    # run's own audio, hop by hop.
    span = WINDOW_SAMPLES + (_FEATURE_CALLS + 1) * hop
    end = engine.backend.recorded.end
    mic = engine.backend.recorded.read(end - span, span)
    music = engine.player.reference.read(end - span, span)
    features = WindowFeatures(engine.model.inputs)
    ends = iter(range(WINDOW_SAMPLES, span + 1, hop))

    def next_window() -> np.ndarray:
        e = next(ends)
        return features(mic[:, e - WINDOW_SAMPLES : e], music[:, e - WINDOW_SAMPLES : e], e)

    base = next_window()
    features_ms = cpu_ms(next_window, runs=_FEATURE_CALLS - 5)
    inference_ms = cpu_ms(lambda: engine.model.predict(base))
    return {
        "windows": windows, "wall_s": wall, "features_ms": features_ms,
        "inference_ms": inference_ms, "features_wall_ms": stats.features_ms,
        "inference_wall_ms": stats.inference_ms,
        "other_ms": per_window_ms - features_ms - inference_ms,
        "per_window_ms": per_window_ms, "cpu_share": cpu / wall, "rig_share": rig_cpu / wall,
        "e2e_ms": stats.e2e_ms, "dropped": stats.dropped, "flagged": stats.flagged,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--hop", type=int, default=2400)
    parser.add_argument("--inputs", choices=INPUTS, default="paper",
                        help="what the untrained model reads when no --model is given")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or untrained_model(Path(tmp), args.inputs)
        r = measure(model, args.seconds, args.hop)
    print(f"model {model.name if args.model else f'cpu preset (untrained, {args.inputs} inputs)'}, hop {args.hop} "
          f"samples, {r['windows']} windows in {r['wall_s']:.1f} s, "
          f"dropped {r['dropped']}, flagged {r['flagged']}")
    print(f"per window (CPU): features {r['features_ms']:.2f} ms, inference "
          f"{r['inference_ms']:.2f} ms, other {r['other_ms']:.2f} ms; worker total "
          f"{r['per_window_ms']:.2f} ms")
    print(f"per window (wall, median in the run): features {r['features_wall_ms']:.2f} ms, "
          f"inference {r['inference_wall_ms']:.2f} ms")
    print(f"virtual rig rendering (not the engine's cost): {r['rig_share']:.0%} of one core")
    print(f"end-to-end latency (median): {r['e2e_ms']:.1f} ms (goal < {E2E_GOAL_MS:.0f} ms)")
    print(f"CPU share of one core at hop {args.hop / 48:.0f} ms: {r['cpu_share']:.1%} "
          f"(goal < {CPU_GOAL:.0%})")


if __name__ == "__main__":
    main()
