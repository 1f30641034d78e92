"""onnxruntime batch-1 latency of the exported BGM2Pose, presets paper and cpu, 1 and 2 threads.

Untrained weights (latency does not depend on them), exported with ``export_onnx`` into a
temporary folder; median over ``--runs`` calls of ``PoseModel.predict`` on one window after
warm-up. The goal: a window every 50 ms hop on one core, so the cpu preset must stay well
under 50 ms at 1 thread. Last line: ``<figure>: <value> (goal <goal>)``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bgm2pose.models.baselines import build_model
from bgm2pose.models.export import export_onnx
from bgm2pose.models.inference import PoseModel
from bgm2pose.models.networks import preset
from bgm2pose.sensing.features import FeatureStats

GOAL_MS = 25.0  # half the 50 ms hop, leaving the rest for features and the GUI


def median_ms(model: PoseModel, base: np.ndarray, runs: int) -> float:
    for _ in range(5):
        model.predict(base)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        model.predict(base)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    torch.manual_seed(0)
    stats = FeatureStats(mean=np.full(9, -50.0), std=np.full(9, 10.0))
    base = np.random.default_rng(0).standard_normal((9, 12, 128)).astype(np.float32) * 10 - 50
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("paper", "cpu"):
            path = Path(tmp) / f"{name}.onnx"
            export_onnx(build_model("bgm2pose", preset(name)), stats, path, {})
            for threads in (1, 2):
                ms = median_ms(PoseModel(path, threads=threads), base, args.runs)
                results[(name, threads)] = ms
                print(f"{name:5s} preset, {threads} thread(s): {ms:7.2f} ms per window (median of {args.runs})")
    print(f"paper/cpu ratio at 1 thread: {results[('paper', 1)] / results[('cpu', 1)]:.1f}")
    print(f"cpu preset batch-1 latency, 1 thread: {results[('cpu', 1)]:.2f} ms (goal < {GOAL_MS:g} ms)")


if __name__ == "__main__":
    main()
