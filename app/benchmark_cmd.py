"""``bgm2pose benchmark``: the evaluation protocol (``models.protocol``) and its report.

Before it starts it prints the plan: every job with its windows and its estimated time at
the epoch cap, from the training speed measured on this machine, and the wall time on
``--workers`` processes. Jobs run in ``--workers`` processes (one torch thread each), longest
first; a line per finished job gives its MAE, epochs and stop reason, the elapsed time and
the time left. Results and checkpoints live in ``--out`` (``models.grid``): run the same
command again after an interruption and it skips finished jobs and resumes a killed one from
its last epoch.

``--quick``: one fold (the last subject held out), seed 0, the cpu preset. The full protocol:
every subject as a fold, seeds 0 1 2, the paper preset. ``--shard i/n`` runs a deterministic
share of the jobs (several machines); the report is written when one ``--out`` holds every
job's result, or by ``--merge`` from the shards' folders. Under ``torchrun`` every job trains
with DistributedDataParallel over the launched processes, one job after another.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shlex
import signal
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import active_children, get_context
from pathlib import Path

import numpy as np

from bgm2pose.models.data import load_windows
from bgm2pose.models.grid import Progress, RunLog, Store, clock, makespan, parse_shard, shard
from bgm2pose.models.networks import PRESETS
from bgm2pose.models.protocol import (
    Budget, Job, Plan, estimate_seconds, job_sizes, make_plan, measure_speeds, run_job,
)
from bgm2pose.models.report import write_report
from bgm2pose.sensing.errors import UserError

# A plan whose estimate is longer than this is announced as such before it starts.
LONG_HOURS = 3.0
# Plans with more jobs than this print one line per setting and row instead of per job.
LISTED_JOBS = 60

_windows = None


EXAMPLES = """\
the quick grid on this machine (one fold, one seed; 2 workers; run it again to resume):
  bgm2pose benchmark data/sim --quick --out docs/results/benchmark
the full protocol on a GPU (every subject a fold, seeds 0 1 2, paper preset):
  bgm2pose benchmark data/sim --device cuda --workers 2 --out runs/benchmark-full
the same on 4 machines, then the report from their folders:
  bgm2pose benchmark data/sim --device cuda --shard I/4 --out runs/shard-I      (I = 0..3)
  bgm2pose benchmark data/sim --merge runs/shard-0 runs/shard-1 runs/shard-2 runs/shard-3 \\
      --out runs/benchmark-full
each job with DistributedDataParallel over 4 GPUs of one machine:
  torchrun --standalone --nproc_per_node=4 -m bgm2pose.app.cli benchmark data/sim --device cuda
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Raw, so the commands keep their lines; the description is wrapped here instead.
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = textwrap.fill(p.description, 88)
    p.epilog = EXAMPLES
    p.add_argument("data", type=Path, help="folder of session folders (bgm2pose simulate)")
    p.add_argument("--out", type=Path, default=Path("docs/results/benchmark"),
                   help="report folder; also holds every job's result and checkpoints (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="one fold (the last subject held out), seed 0, the cpu preset: every row trained "
                        "to its validation plateau in a few hours on 2 cores")
    p.add_argument("--folds", nargs="*", help="held-out subjects (default: all; quick: the last one)")
    p.add_argument("--seeds", nargs="*", type=int, help="(default: 0 1 2; quick: 0)")
    p.add_argument("--epochs", type=int, default=30,
                   help="the most epochs of any run; a plateau of the validation loss stops sooner "
                        "(default: %(default)s)")
    p.add_argument("--patience", type=int, default=5,
                   help="epochs without a better validation loss before a run stops (default: %(default)s)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="network size (default: paper; quick: cpu)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="per process under torchrun (default: %(default)s)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="parallel training processes; 1 runs the jobs in this process; under torchrun one "
                        "job at a time trains over all its processes (default: %(default)s)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the networks train (default: %(default)s: cuda when torch sees a GPU)")
    p.add_argument("--shard", default="0/1", metavar="I/N",
                   help="run only every N-th job from the I-th, so N machines split the grid; the shards "
                        "share --out or are merged with --merge (default: %(default)s)")
    p.add_argument("--merge", nargs="+", type=Path, metavar="DIR",
                   help="train nothing: copy the results of these shards' --out folders into --out and "
                        "write the report (give the shards' other options)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and its estimate, then stop")


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when the benchmark process dies, so a killed benchmark
    leaves no worker training on to write a checkpoint its resumed run is reading."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _init_worker(data: Path) -> None:
    global _windows
    import torch

    _die_with_parent()
    torch.set_num_threads(1)
    _windows = load_windows(data, progress=False)


def _work(job: Job, budget: Budget, checkpoints: Path, device: str) -> dict:
    return run_job(_windows, job, budget, checkpoints, device)


def _device(name: str) -> str:
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu.")
    return "cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu"


def _world(device: str) -> tuple[int, int]:
    """(rank, processes): under torchrun the process group every job's training shares."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def _plan(args: argparse.Namespace, windows) -> Plan:
    subjects = sorted(set(windows.subject.tolist()))
    folds = args.folds or (subjects[-1:] if args.quick else subjects)
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    if args.epochs < 1 or args.patience < 1 or args.batch_size < 2 or args.workers < 1:
        raise UserError("--epochs, --patience and --workers must be at least 1 and --batch-size at least 2.")
    budget = Budget(preset=args.preset or ("cpu" if args.quick else "paper"), epochs=args.epochs,
                    patience=args.patience, batch_size=args.batch_size)
    return make_plan(windows, folds, seeds, budget)


def _estimates(windows, plan: Plan, jobs: list[Job], device: str) -> dict[str, float]:
    """Each job's seconds at the epoch cap, from the measured speed of its network."""
    speeds = measure_speeds(windows, tuple(dict.fromkeys(job.row for job in jobs)), plan.budget, device)
    print("benchmark: measured ms per window (train step / prediction): "
          + ", ".join(f"{k} {v.train * 1e3:.2f}/{v.predict * 1e3:.2f}" for k, v in speeds.items()), flush=True)
    return {job.key: estimate_seconds(job_sizes(windows, job), speeds.get(job.row.label), plan.budget.epochs)
            for job in jobs}


def _print_plan(windows, plan: Plan, jobs: list[Job], todo: list[Job], estimates: dict[str, float],
                workers: int, finished: list[dict]) -> None:
    b = plan.budget
    print(f"benchmark: {len(jobs)} jobs: settings {', '.join(s.key for s in plan.settings)} x held-out "
          f"{', '.join(plan.folds)} x seeds {', '.join(map(str, plan.seeds))} x rows (ablations in a, b only); "
          f"{len(jobs) - len(todo)} finished earlier, {len(todo)} to run. Budget of every trained row: "
          f"preset {b.preset}, at most {b.epochs} epochs, stop after {b.patience} without a better "
          f"validation loss, batch {b.batch_size}, lr {b.lr:g} -> {b.lr_min:g}.")
    if len(todo) <= LISTED_JOBS:
        for job in todo:
            fit, val, test = job_sizes(windows, job)
            time_ = f"at most {estimates[job.key] / 60:.1f} min" if job.row.method else "no training"
            print(f"  {job.key:<42} fit {fit}, validation {val}, test {test} windows: {time_}")
    total = makespan(list(estimates.values()), workers)
    print(f"benchmark: at the {b.epochs}-epoch cap the jobs to run take {clock(sum(estimates.values()))} of "
          f"training, {clock(total)} of wall time on {workers} workers; runs stopped by a plateau end sooner.")
    epochs = [r["training"]["epochs_run"] for r in finished if r["training"]]
    if epochs and todo:
        typical = float(np.mean(epochs))
        likely = makespan([s * typical / b.epochs for s in estimates.values()], workers)
        print(f"benchmark: if they stop as the {len(epochs)} finished runs did (after {typical:.1f} epochs on "
              f"average), about {clock(likely)}.")
    if total > LONG_HOURS * 3600:
        print(f"benchmark: note: that is more than {LONG_HOURS:g} h at the cap; lower --epochs or --patience to "
              "bound it, or let it run (it resumes after an interruption).")
    sys.stdout.flush()


def _line(result: dict, mean_pose: dict[tuple, float]) -> str:
    text = f"{result['key']}: MAE {result['metrics']['mae']:.3f}"
    reference = mean_pose.get((result["setting"], result["test_subject"], result["seed"]))
    if reference is not None and result["row"] != "mean pose":
        text += f" (mean pose {reference:.3f})"
    training = result["training"]
    if training:
        text += f", {training['epochs_run']} epochs, {training['stop']}"
    return text + f", {result['seconds'] / 60:.1f} min"


def _run_jobs(args, windows, store: Store, jobs: list[Job], todo: list[Job], estimates: dict[str, float],
              device: str, rank: int, world: int) -> None:
    """Run ``todo`` of ``jobs`` (the mean pose first, then the longest first), saving each
    result as it finishes. Under torchrun the trained jobs go in the plan's order: each rank
    measured its own speeds, and every rank must train the same job at the same time."""
    longest = (lambda j: 0.0) if world > 1 else (lambda j: -estimates[j.key])
    order = sorted(todo, key=lambda j: (j.row.method is not None, longest(j)))
    progress = Progress(dict(estimates), 1 if world > 1 else args.workers, len(jobs) - len(todo), len(jobs))
    log = RunLog(args.out, args.shard, args.workers, _command(args))
    mean_pose: dict[tuple, float] = {}

    def finished(job: Job, result: dict) -> None:
        result = store.save(job, result, device, world)
        log.job_done()
        if job.row.method is None:
            mean_pose[(result["setting"], result["test_subject"], result["seed"])] = result["metrics"]["mae"]
        print(f"benchmark {progress.finished(job.key, result['seconds'])}: {_line(result, mean_pose)}", flush=True)

    if args.workers == 1 or world > 1:
        for job in order:
            result = run_job(windows, job, store.plan.budget, store.checkpoints(job, device), device)
            if rank == 0:
                finished(job, result)
        return
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=(args.data,)) as pool:
        futures = {pool.submit(_work, job, store.plan.budget, store.checkpoints(job, device), device): job
                   for job in order}
        try:
            for future in as_completed(futures):
                finished(futures[future], future.result())
        except BaseException:
            # Stop the workers now: leaving the pool would first run every job already handed
            # to it and save none of them, while a killed job resumes from its last epoch.
            for child in active_children():
                child.kill()
            raise


def _command(args: argparse.Namespace) -> str:
    """The command line of these options, for the report and the run log (rebuilt from the
    options, since torchrun and tests do not leave it in sys.argv)."""
    parts = ["bgm2pose", "benchmark", str(args.data), "--out", str(args.out)]
    parts += ["--quick"] if args.quick else []
    for flag, value in (("--folds", args.folds), ("--seeds", args.seeds), ("--merge", args.merge)):
        parts += [flag, *map(str, value)] if value else []
    for flag, value in (("--epochs", args.epochs), ("--patience", args.patience), ("--preset", args.preset),
                        ("--batch-size", args.batch_size), ("--workers", args.workers), ("--device", args.device),
                        ("--shard", args.shard)):
        parts += [flag, str(value)] if value is not None else []
    return " ".join(shlex.quote(part) for part in parts)


def run(args: argparse.Namespace) -> int:
    index, count = parse_shard(args.shard)
    device = _device(args.device)
    rank, world = _world(device)
    windows = load_windows(args.data, progress=rank == 0)
    plan = _plan(args, windows)
    store = Store(args.out, plan, windows.fingerprint())
    if args.merge:
        print(f"benchmark: merged {store.merge(args.merge)} results from {len(args.merge)} folders into {args.out}")
        return _report(args, windows, store, sharded=False)
    import torch

    torch.set_num_threads(1)
    jobs = shard(plan.jobs, index, count)
    loaded = {job.key: store.load(job) for job in jobs}
    finished = [result for result in loaded.values() if result is not None]
    todo = [job for job in jobs if loaded[job.key] is None]
    stale = store.stale(todo)
    if stale and rank == 0:
        print(f"benchmark: {stale} earlier results in {store.runs} were made with other data or another budget; "
              "running those jobs again", flush=True)
    estimates = _estimates(windows, plan, todo, device) if todo else {}
    if rank == 0:
        _print_plan(windows, plan, jobs, todo, estimates, 1 if world > 1 else args.workers, finished)
    if args.dry_run:
        return 0
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # every rank has chosen its jobs before rank 0 saves the first result
    start = time.perf_counter()
    _run_jobs(args, windows, store, jobs, todo, estimates, device, rank, world)
    if rank != 0:
        return 0
    print(f"benchmark: {len(todo)} jobs run in {clock(time.perf_counter() - start)}", flush=True)
    return _report(args, windows, store, sharded=count > 1)


def _report(args: argparse.Namespace, windows, store: Store, sharded: bool) -> int:
    """Write the report if every job of the plan has a result; a shard without them all says
    how the report will come."""
    results, missing = store.results()
    if missing:
        if sharded:
            print(f"benchmark: shard {args.shard} done; {len(results)} of {len(store.plan.jobs)} results are in "
                  f"{store.runs}. The report is written once every shard's results are there (shards sharing "
                  "--out), or with --merge and the shards' folders.")
            return 0
        raise UserError(f"{len(missing)} of the plan's {len(store.plan.jobs)} jobs have no result in {store.runs} "
                        f"(first: {missing[0].key}); run the shards that hold them, then merge again.")
    readme = write_report(args.out, store.plan, results, data=args.data, windows=windows, command=_command(args))
    print(f"benchmark: wrote {readme}")
    return 0
