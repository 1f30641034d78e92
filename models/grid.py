"""The benchmark's job grid on disk and in time: stored results, checkpoints, shards, merging,
the run log and the estimate of how long it takes.

Layout of a benchmark folder ``out``:
- ``runs/<job key>.<digest>.json``: a finished job's result (``protocol.run_job``, plus the
  data fingerprint, the digest, the device and the number of DDP processes). The digest is
  ``protocol.job_digest``, so a file is found again only for the same data, job and budget;
  the job key in front is for people.
- ``runs/<job key>.<digest>.<device>/checkpoint.pt``: the training checkpoint of a job in
  progress; a killed job resumes from it, and it is removed once the result is saved. The
  device is in the name because a checkpoint resumes only with the options it was made with.
- ``log/<start>-<pid>.json``: one file per invocation that ran jobs, rewritten after each job
  it finishes: when it started, its wall seconds up to then, the jobs it ran, its shard and
  workers. The report's wall time is their sum, so a resumed or sharded run counts every part.

Shards (``--shard i/n``) take every n-th job of the plan from i, as ``simulate --shard`` does:
disjoint, together the whole plan, the same on every machine given the same data and options.
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bgm2pose.models.protocol import Job, Plan, job_digest
from bgm2pose.sensing.errors import UserError

RUNS = "runs"
LOG = "log"


class GridError(UserError, ValueError):
    """A shard, merge or results folder the benchmark cannot use."""


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise GridError(f"shard {text!r} is not of the form i/n (e.g. 0/4).") from None
    if not 0 <= i < n:
        raise GridError(f"shard {text!r} needs 0 <= i < n.")
    return i, n


def shard(jobs: list[Job], index: int, count: int) -> list[Job]:
    return jobs[index::count]


def _write_json(path: Path, value: dict) -> None:
    """Through a temporary name, so a killed process never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value) + "\n")
    os.replace(tmp, path)


@dataclass
class Store:
    """The results and checkpoints of one benchmark folder for one plan on one data set."""

    out: Path
    plan: Plan
    data: str  # WindowSet.fingerprint of the data set

    @property
    def runs(self) -> Path:
        return self.out / RUNS

    def name(self, job: Job) -> str:
        return f"{job.key}.{job_digest(job, self.plan.budget, self.data)}"

    def result_path(self, job: Job) -> Path:
        return self.runs / f"{self.name(job)}.json"

    def checkpoints(self, job: Job, device: str) -> Path:
        return self.runs / f"{self.name(job)}.{device}"

    def load(self, job: Job) -> dict | None:
        path = self.result_path(job)
        return json.loads(path.read_text()) if path.is_file() else None

    def save(self, job: Job, result: dict, device: str, world: int) -> dict:
        """Store a finished job's result and drop its checkpoints; returns the stored result."""
        digest = job_digest(job, self.plan.budget, self.data)
        stored = {**result, "data": self.data, "digest": digest, "device": device, "world": world}
        _write_json(self.result_path(job), stored)
        for folder in self.runs.glob(f"{self.name(job)}.*"):
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
        return stored

    def stale(self, jobs: list[Job]) -> int:
        """How many of ``jobs`` have a result only from other data or another budget."""
        return sum(1 for job in jobs if not self.result_path(job).is_file()
                   and any(self.runs.glob(f"{job.key}.*.json")))

    def results(self) -> tuple[list[dict], list[Job]]:
        """(stored results of the plan's jobs, the plan's jobs without one)."""
        found, missing = [], []
        for job in self.plan.jobs:
            result = self.load(job)
            (found.append(result) if result is not None else missing.append(job))
        return found, missing

    def merge(self, sources: list[Path]) -> int:
        """Copy the plan's results found in the benchmark folders ``sources`` into this one;
        returns how many were copied. Only files named by this plan's digests are taken."""
        wanted = {self.result_path(job).name for job in self.plan.jobs}
        copied = 0
        for source in sources:
            if not (source / RUNS).is_dir():
                raise GridError(f"{source} holds no {RUNS} folder; point --merge at the --out folders of the shards.")
            for path in (source / RUNS).glob("*.json"):
                if path.name in wanted and not (self.runs / path.name).is_file():
                    self.runs.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, self.runs / path.name)
                    copied += 1
            for log in (source / LOG).glob("*.json"):
                if not (self.out / LOG / log.name).is_file():
                    (self.out / LOG).mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(log, self.out / LOG / log.name)
        return copied


@dataclass
class RunLog:
    """This invocation's entry in ``out/log`` (see the module docstring)."""

    out: Path
    shard: str
    workers: int
    command: str
    started: float = field(default_factory=time.time)
    jobs: int = 0

    @property
    def path(self) -> Path:
        stamp = datetime.fromtimestamp(self.started, timezone.utc).strftime("%Y%m%dT%H%M%S")
        return self.out / LOG / f"{stamp}-{os.getpid()}.json"

    def job_done(self) -> None:
        self.jobs += 1
        _write_json(self.path, {"started": datetime.fromtimestamp(self.started, timezone.utc).isoformat(),
                                "seconds": round(time.time() - self.started, 1), "jobs": self.jobs,
                                "shard": self.shard, "workers": self.workers, "command": self.command})


def read_log(out: Path) -> list[dict]:
    """Every invocation's entry, oldest first."""
    return [json.loads(p.read_text()) for p in sorted((out / LOG).glob("*.json"))]


def makespan(seconds: list[float], workers: int) -> float:
    """Wall time of jobs of these durations on ``workers`` processes, longest first, each to
    the process that frees up first (how the benchmark hands them out)."""
    free = [0.0] * max(workers, 1)
    for s in sorted(seconds, reverse=True):
        heapq.heapreplace(free, free[0] + s)
    return max(free)


def clock(seconds: float) -> str:
    """h:mm:ss."""
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


@dataclass
class Progress:
    """Jobs done and the time left, the estimates (made at the epoch cap) scaled by how long
    the finished jobs took against theirs."""

    estimates: dict[str, float]  # job key -> estimated seconds, of the jobs to run
    workers: int
    done_before: int  # jobs of the plan finished by earlier invocations
    total: int  # jobs of the plan (of this shard)
    started: float = field(default_factory=time.perf_counter)
    done: int = 0
    spent: float = 0.0  # actual seconds of the finished jobs
    planned: float = 0.0  # their estimates

    def finished(self, key: str, seconds: float) -> str:
        """Record a finished job; the progress part of its line."""
        self.done += 1
        self.spent += seconds
        self.planned += self.estimates.pop(key)
        ratio = self.spent / self.planned if self.planned > 0 else 1.0
        left = makespan([s * ratio for s in self.estimates.values()], self.workers)
        return (f"[{self.done_before + self.done}/{self.total}] elapsed {clock(time.perf_counter() - self.started)}, "
                f"ETA {clock(left)}")
