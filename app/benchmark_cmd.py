"""``bgm2pose benchmark``: the evaluation protocol (``models.protocol``) and its report.

Jobs run in ``--workers`` processes (one torch thread each); each finished job is saved as
``<out>/runs/<job>.json``, so an interrupted benchmark continues where it stopped when run
again with the same options. ``--quick`` picks 2 folds, 1 seed and the epochs that fit
``--minutes`` from the measured training speed; the full protocol (every subject as a fold,
seeds 0 1 2, 30 epochs, preset paper) is meant for a GPU machine.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from bgm2pose.models.data import load_windows
from bgm2pose.models.networks import PRESETS
from bgm2pose.models.protocol import (
    ROWS, Budget, estimate_seconds, load_result, make_plan, quick_budget, run_job, save_result, training_speed,
)
from bgm2pose.models.report import write_report

_windows = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", type=Path, help="folder of session folders (bgm2pose simulate)")
    p.add_argument("--out", type=Path, default=Path("docs/results/benchmark"), help="report folder (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="2 folds, 1 seed, epochs that fit --minutes")
    p.add_argument("--minutes", type=float, default=60.0, help="time budget of --quick (default: %(default)s)")
    p.add_argument("--folds", nargs="*", help="held-out subjects (default: all; quick: the last two)")
    p.add_argument("--seeds", nargs="*", type=int, help="(default: 0 1 2; quick: 0)")
    p.add_argument("--epochs", type=int, help="override the epochs (default: 30; quick: from the budget)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="network size (default: paper; quick: cpu)")
    p.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="parallel training processes (default: %(default)s)")


def _init_worker(data: Path) -> None:
    global _windows
    import torch

    torch.set_num_threads(1)
    _windows = load_windows(data, progress=False)


def _work(job, budget):
    return run_job(_windows, job, budget)


def run(args: argparse.Namespace) -> int:
    windows = load_windows(args.data)
    subjects = sorted(set(windows.subject.tolist()))
    folds = args.folds or (subjects[-2:] if args.quick else subjects)
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    budget = Budget(preset=args.preset or ("cpu" if args.quick else "paper"), epochs=args.epochs or 30,
                    batch_size=args.batch_size)
    plan = make_plan(windows, folds, seeds, budget)
    import torch

    torch.set_num_threads(1)
    speeds = training_speed(ROWS, budget)
    if args.quick and args.epochs is None:
        plan.budget = quick_budget(windows, plan, speeds, args.minutes, args.workers)
    estimate = estimate_seconds(windows, plan, speeds, args.workers)
    print(f"benchmark: {len(plan.jobs)} jobs ({len(plan.settings)} settings x {len(folds)} folds x "
          f"{len(seeds)} seeds x rows), budget {plan.budget}; estimated {estimate / 60:.0f} min of training "
          f"on {args.workers} workers (speeds, windows/s: "
          + ", ".join(f"{k} {v:.0f}" for k, v in speeds.items()) + ")", flush=True)

    runs = args.out / "runs"
    data = windows.fingerprint()
    results, todo = [], []
    for job in plan.jobs:
        done = load_result(runs, job, plan.budget, data)
        (results.append(done) if done else todo.append(job))
    stale = sum((runs / f"{job.key}.json").is_file() for job in todo)
    if stale:
        print(f"benchmark: {stale} earlier results in {runs} were made with other data or another "
              "budget; running those jobs again", flush=True)
    start = time.perf_counter()
    with tqdm(total=len(plan.jobs), initial=len(results), desc="benchmark", unit="job") as bar:
        if todo:
            with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                     initargs=(args.data,)) as pool:
                futures = {pool.submit(_work, job, plan.budget): job for job in todo}
                for future in as_completed(futures):
                    result = {**future.result(), "data": data}
                    save_result(runs, result)
                    results.append(result)
                    bar.set_postfix_str(f"{result['key']} MAE {result['metrics']['mae']:.3f}")
                    bar.update()
    minutes = (time.perf_counter() - start) / 60
    command = "bgm2pose benchmark " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else ""
    header = (f"# Benchmark: the BGM2Pose protocol on {args.data.name}\n\nCommand: `{command}`\n\n"
              f"Data: {windows.describe()}. Training time of this run: {minutes:.1f} min "
              f"({len(todo)} of {len(plan.jobs)} jobs run now, {args.workers} workers).")
    readme = write_report(args.out, plan, results, header)
    print(readme.read_text())
    print(f"benchmark: wrote {readme}")
    return 0
