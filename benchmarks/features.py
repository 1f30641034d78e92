"""Time the AMPL feature pipeline against the librosa reference of its parity tests.

Run: ``.venv/bin/python benchmarks/features.py [--runs 200]``. Single-threaded BLAS so the
figures are per core. Ours and the reference take turns in blocks of calls, so background load
hits both alike; figures are medians per call after a warm-up. The reference is the
``librosa_reference`` of ``tests/sensing/test_features.py`` (loaded from that file, so the
benchmark times exactly what the tests compare against), fed float32 audio as a user would,
with its filterbank built once outside the timed call.
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from bgm2pose.sensing import features  # noqa: E402

TESTS = Path(__file__).resolve().parents[1] / "tests" / "sensing" / "test_features.py"
GOAL = 10.0


def load_reference():
    spec = importlib.util.spec_from_file_location("feature_parity_tests", TESTS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def median_seconds(fns: dict, runs: int, warmup: int = 20, block: int = 10) -> dict[str, float]:
    """Median wall time per call of each function.

    The functions take turns in blocks of ``block`` calls: within a block caches are warm (as
    in a steady loop), and load from other processes over time hits all functions alike.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(max(runs // block, 1)):
        for name, fn in fns.items():
            for _ in range(block):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    tests = load_reference()
    rng = np.random.default_rng(0)
    mic, music = tests.music_like_signals(rng)
    batch_mic = np.repeat(mic[None], args.batch, axis=0)
    batch_music = np.repeat(music[None], args.batch, axis=0)
    mel_fb = tests.librosa_mel_filterbank()

    single = median_seconds(
        {
            "ours": lambda: features.window_features(mic, music),
            "librosa": lambda: tests.librosa_reference(mic, music, mel_fb),
        },
        args.runs,
    )
    batched = median_seconds(
        {"ours": lambda: features.window_features(batch_mic, batch_music)},
        max(args.runs // 10, 10),
        warmup=3,
        block=1,
    )

    ms = 1e3
    print(f"{'pipeline':<28}{'ms / window':>12}")
    print(f"{'librosa reference, batch 1':<28}{single['librosa'] * ms:>12.3f}")
    print(f"{'ours, batch 1':<28}{single['ours'] * ms:>12.3f}")
    print(f"{f'ours, batch {args.batch}':<28}{batched['ours'] / args.batch * ms:>12.3f}")
    print(f"features speedup vs librosa: {single['librosa'] / single['ours']:.1f}x (goal >= {GOAL:.0f}x)")


if __name__ == "__main__":
    main()
