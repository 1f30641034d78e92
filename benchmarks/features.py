"""Time the AMPL feature pipeline against the librosa reference of its parity tests.

Run: ``.venv/bin/python benchmarks/features.py [--runs 200]``. Single-threaded BLAS so the
figures are per core. Ours and the reference take turns in blocks of calls, so background load
hits both alike; figures are medians per call after a warm-up (which also covers numba's
compile or cache load). The reference is the ``librosa_reference`` of
``tests/sensing/test_features.py`` (loaded from that file, so the benchmark times exactly what
the tests compare against), fed float32 audio as a user would, with its filterbank built once
outside the timed call. Minor page faults per call show whether a pipeline's scratch memory
goes back to the OS between calls (a real-time hazard in the live engine). "live" is what the
live engine pays per 50 ms hop: ``FeatureStream`` on the next window of a long signal, which
computes the one frame it adds; the headline.
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from bgm2pose.sensing import features  # noqa: E402

TESTS = Path(__file__).resolve().parents[1] / "tests" / "sensing" / "test_features.py"
GOAL_MS = 1.0  # per window: 2% of the 50 ms hop the live engine computes one in
HOP_MS = 50.0


def load_reference():
    spec = importlib.util.spec_from_file_location("feature_parity_tests", TESTS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Timing:
    """Per-call figures of one function: median wall and thread-CPU seconds, mean page faults."""

    wall: float
    cpu: float
    faults: float


def time_calls(fns: dict, runs: int, warmup: int = 20, block: int = 10) -> dict[str, Timing]:
    """Time each function, taking turns in blocks of ``block`` calls.

    Within a block caches are warm (as in a steady loop), and load from other processes over
    time hits all functions alike. Wall time is what the live engine sees; thread CPU time
    leaves out time the scheduler gave to other processes, which on a busy machine inflates
    long calls (librosa's span scheduler ticks) more than short ones.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    wall = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    faults = dict.fromkeys(fns, 0)
    for _ in range(max(runs // block, 1)):
        for name, fn in fns.items():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(block):
                start, start_cpu = time.perf_counter(), time.thread_time()
                fn()
                cpu[name].append(time.thread_time() - start_cpu)
                wall[name].append(time.perf_counter() - start)
            faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return {
        name: Timing(
            float(np.median(wall[name])), float(np.median(cpu[name])), faults[name] / len(wall[name])
        )
        for name in fns
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    tests = load_reference()
    rng = np.random.default_rng(0)
    mic, music = tests.music_like_signals(rng)
    # The live engine's case: the next window one hop on, every call (enough for all calls).
    hops = 2 * (args.runs + 40) + features.FRAMES_PER_WINDOW
    long_mic, long_music = tests.music_like_signals(rng, hops * features.HOP)
    stream, ends = features.FeatureStream(), iter(range(features.WINDOW_SAMPLES, hops * features.HOP + 1,
                                                        features.HOP))

    def live():
        end = next(ends)
        cut = slice(end - features.WINDOW_SAMPLES, end)
        return stream.window(long_mic[:, cut], long_music[:, cut], end)
    batch_mic = np.repeat(mic[None], args.batch, axis=0)
    batch_music = np.repeat(music[None], args.batch, axis=0)
    mel_fb = tests.librosa_mel_filterbank()

    single = time_calls(
        {
            "ours": lambda: features.window_features(mic, music),
            "live": live,
            "librosa": lambda: tests.librosa_reference(mic, music, mel_fb),
        },
        args.runs,
    )
    batched = time_calls(
        {"ours": lambda: features.window_features(batch_mic, batch_music)},
        max(args.runs // 10, 10),
        warmup=3,
        block=1,
    )["ours"]

    ms = 1e3
    rows = [
        ("librosa reference, batch 1", single["librosa"], 1),
        ("ours, batch 1", single["ours"], 1),
        ("ours live, one hop on", single["live"], 1),
        (f"ours, batch {args.batch}", batched, args.batch),
    ]
    print(f"{'pipeline':<28}{'wall ms':>10}{'CPU ms':>10}{'faults/call':>13}  (per window)")
    for name, t, n in rows:
        print(f"{name:<28}{t.wall / n * ms:>10.3f}{t.cpu / n * ms:>10.3f}{t.faults:>13.1f}")
    wall = single["librosa"].wall / single["ours"].wall
    cpu = single["librosa"].cpu / single["ours"].cpu
    print(f"speedup vs librosa: {wall:.1f}x wall, {cpu:.1f}x CPU")
    ours, live_ms = single["ours"].wall * ms, single["live"].wall * ms
    print(f"a whole window's features take {ours / HOP_MS:.1%} of the {HOP_MS:.0f} ms hop, a "
          f"live window's {live_ms / HOP_MS:.1%}")
    print(f"features per live window (one new frame per hop), ms: {live_ms:.3f} "
          f"(goal <= {GOAL_MS:.1f})")

if __name__ == "__main__":
    main()
