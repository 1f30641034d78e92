"""Epochs per minute of `bgm2pose train` (cpu preset) on a data set, and what loading costs
around them.

Run: ``.venv/bin/python benchmarks/train_speed.py DATASET [--epochs 2] [--hop-frames 6]``.
The data set is copied without its caches into a temporary folder, loaded cold (decoding and
features, writing the caches), then loaded again warm, as every later train, evaluate and
benchmark job loads it (with the memory the loaded windows hold: resident pages the load
added); the cpu preset then trains ``--epochs`` (0: none) on every window with a checkpoint
per epoch, as ``bgm2pose train`` does. One torch thread, so the figures are per core. The last
line is the headline: epochs per minute of a warm run end to end (load + epochs) and the share
of it spent loading. Only ``load_windows`` and ``train(windows, index, config, out)`` are used,
so the same script times an older revision (put its package first on PYTHONPATH) for a
before/after comparison; run each twice, since a revision's first run also compiles its
numba feature kernels.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bgm2pose.models.data import CACHE_DIR, load_windows
from bgm2pose.models.train import TrainConfig, train


def resident_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", type=Path, help="folder of session folders")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--hop-frames", type=int, default=6)
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data = shutil.copytree(args.dataset, Path(tmp) / "data", ignore=shutil.ignore_patterns(CACHE_DIR))
        start = time.perf_counter()
        load_windows(data, args.hop_frames, progress=False)
        cold = time.perf_counter() - start
        before, start = resident_mb(), time.perf_counter()
        windows = load_windows(data, args.hop_frames, progress=False)
        warm, held = time.perf_counter() - start, resident_mb() - before
        print(f"{args.dataset}: {len(windows)} windows (hop {args.hop_frames}, {windows.base.nbytes / 2**20:.0f} MB "
              f"of features); cold load {cold:.2f} s; warm load {warm:.3f} s holding {held:.0f} MB", flush=True)
        if not args.epochs:
            return
        start = time.perf_counter()
        train(windows, np.arange(len(windows)), TrainConfig(preset="cpu", epochs=args.epochs, device="cpu"),
              Path(tmp) / "run", progress=False)
        epochs = time.perf_counter() - start
    print(f"{epochs / args.epochs:.1f} s per epoch")
    run = warm + epochs
    print(f"cpu preset: {60 * args.epochs / run:.2f} epochs/min end to end (warm load + {args.epochs} epochs), "
          f"{100 * warm / run:.2f} % of the run loading")


if __name__ == "__main__":
    main()
