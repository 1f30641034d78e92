"""The paper's evaluation protocol (REFERENCE.md, "Protocol") on a data set of sessions.

Settings, derived from the data set's tracks: the *main* genre is the one with the most
tracks (ambient in AMPL and in the default simulated set), tracks sorted by name.
- (a) single-music: train and test on the first main-genre track.
- (b) cross-music: train on the other main-genre tracks and every other-genre track, test on
  the last main-genre track (needs 2 main-genre tracks).
- (c) cross-genre: train on the main-genre tracks, test on the other genres' tracks.
Every setting is leave-one-subject-out: a fold trains on all subjects but one and tests on
that one. Rows: the four methods, the BGM2Pose ablations (settings (a) and (b), as the paper
reports them) and two controls: the mean-pose predictor (training mean pose) and BGM2Pose
trained and tested on audio shuffled across windows (pairing of sound and pose destroyed,
feature distribution kept). Every trained row gets the same windows, epochs, batch size,
learning rates and seeds: one ``Budget``.

``--quick`` (``quick_plan``): 2 folds x 1 seed, and epochs chosen from the measured training
speed so the whole run fits ``minutes`` on ``workers`` processes; if even one epoch would
not fit, each job trains on the same random fraction of its training windows.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from bgm2pose.models.baselines import build_model
from bgm2pose.models.data import DataError, WindowSet, model_features
from bgm2pose.models.evaluation import mean_pose_prediction
from bgm2pose.models.losses import loss_weights
from bgm2pose.models.metrics import evaluate
from bgm2pose.models.networks import preset
from bgm2pose.models.train import TrainConfig, TrainStep, predict, train
from bgm2pose.sensing.features import FeatureStats

SETTING_NAMES = {"a": "single-music", "b": "cross-music", "c": "cross-genre"}
QUALITATIVE_WINDOWS = 3


@dataclass(frozen=True)
class Row:
    label: str
    method: str | None  # None: the mean-pose predictor
    switches: tuple[tuple[str, object], ...] = ()
    hard_negatives: bool | None = None
    shuffled: bool = False
    group: str = "method"  # "method" | "ablation" | "control"


ROWS: tuple[Row, ...] = (
    Row("Jiang", "jiang"),
    Row("Ginosar", "ginosar"),
    Row("Shibata", "shibata"),
    Row("BGM2Pose", "bgm2pose"),
    # The same network reading the channel estimate (sensing.channel) instead of, or beside,
    # the paper's features.
    Row("BGM2Pose, channel input", "bgm2pose", (("inputs", "channel"),)),
    Row("BGM2Pose, both inputs", "bgm2pose", (("inputs", "both"),)),
    Row("w/o CPE", "bgm2pose", (("use_cpe", False),), group="ablation"),
    Row("w/o hard negatives", "bgm2pose", hard_negatives=False, group="ablation"),
    Row("w/o FA", "bgm2pose", (("use_fa", False),), group="ablation"),
    Row("w/o music conditioning", "bgm2pose", (("music_conditioning", False),), group="ablation"),
    Row("mean pose", None, group="control"),
    Row("BGM2Pose, shuffled audio", "bgm2pose", shuffled=True, group="control"),
)
ROW_BY_LABEL = {r.label: r for r in ROWS}
ABLATION_SETTINGS = ("a", "b")


@dataclass(frozen=True)
class Setting:
    key: str
    train_tracks: tuple[str, ...]
    test_tracks: tuple[str, ...]

    @property
    def name(self) -> str:
        return SETTING_NAMES[self.key]


@dataclass(frozen=True)
class Budget:
    preset: str = "cpu"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    lr_min: float = 1e-3
    train_fraction: float = 1.0  # of each job's training windows, the same for every row


@dataclass(frozen=True)
class Job:
    setting: Setting
    test_subject: str
    seed: int
    row: Row

    @property
    def key(self) -> str:
        label = self.row.label.lower().replace("/", "").replace(",", "").replace(" ", "-")
        return f"{self.setting.key}_{self.test_subject}_s{self.seed}_{label}"


@dataclass
class Plan:
    settings: list[Setting]
    folds: list[str]
    seeds: list[int]
    budget: Budget
    jobs: list[Job] = field(default_factory=list)

    def describe(self) -> dict:
        return {"settings": {s.key: {"name": s.name, "train": list(s.train_tracks), "test": list(s.test_tracks)}
                             for s in self.settings},
                "folds": self.folds, "seeds": self.seeds, "budget": asdict(self.budget), "jobs": len(self.jobs)}


def protocol_settings(windows: WindowSet) -> list[Setting]:
    """The settings the data set's tracks allow; see the module docstring."""
    tracks = sorted(set(windows.track.tolist()))
    by_genre: dict[str, list[str]] = {}
    for t in tracks:
        by_genre.setdefault(str(windows.genre[windows.track == t][0]), []).append(t)
    main = max(sorted(by_genre), key=lambda g: len(by_genre[g]))
    mains = by_genre[main]
    others = [t for g, ts in sorted(by_genre.items()) if g != main for t in ts]
    out = [Setting("a", (mains[0],), (mains[0],))]
    if len(mains) >= 2:
        out.append(Setting("b", tuple(mains[:-1] + others), (mains[-1],)))
    if others:
        out.append(Setting("c", tuple(mains), tuple(others)))
    return out


def make_plan(windows: WindowSet, folds: list[str], seeds: list[int], budget: Budget,
              rows: tuple[Row, ...] = ROWS) -> Plan:
    subjects = sorted(set(windows.subject.tolist()))
    if len(subjects) < 2:
        raise DataError("leave-one-subject-out needs sessions of at least two subjects; simulate more.")
    unknown = sorted(set(folds) - set(subjects))
    if unknown:
        raise DataError(f"fold subjects {unknown} are not in the data set; it has {subjects}.")
    settings = protocol_settings(windows)
    jobs = [Job(s, f, seed, r) for s in settings for f in folds for seed in seeds for r in rows
            if r.group != "ablation" or s.key in ABLATION_SETTINGS]
    return Plan(settings, list(folds), list(seeds), budget, jobs)


def split(windows: WindowSet, job: Job, fraction: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices of a job: other subjects on the training tracks, the held-out
    subject on the test tracks; ``fraction`` keeps a seeded random share of the training
    windows, the same share for every row of a (setting, fold, seed)."""
    s = job.setting
    train = np.flatnonzero((windows.subject != job.test_subject) & np.isin(windows.track, s.train_tracks))
    test = np.flatnonzero((windows.subject == job.test_subject) & np.isin(windows.track, s.test_tracks))
    if fraction < 1.0:
        rng = np.random.default_rng(job.seed)
        train = np.sort(rng.choice(train, max(2, int(round(fraction * len(train)))), replace=False))
    if not len(train) or not len(test):
        raise DataError(f"setting ({s.key}) with {job.test_subject} held out has {len(train)} training and "
                        f"{len(test)} test windows; the data set lacks sessions for it.")
    return train, test


def _shuffled(windows: WindowSet, train: np.ndarray, test: np.ndarray, seed: int) -> tuple[WindowSet, np.ndarray, np.ndarray]:
    """A copy of the job's windows with features (base and channel alike) permuted within train
    and within test."""
    rng = np.random.default_rng(seed + 7919)
    sub = windows.subset(np.concatenate([train, test]))
    n = len(train)
    order = np.concatenate([rng.permutation(n), n + rng.permutation(len(test))])
    sub.base, sub.channel = sub.base[order], sub.channel[order]
    return sub, np.arange(n), np.arange(n, len(sub))


def train_config(row: Row, budget: Budget, seed: int) -> TrainConfig:
    return TrainConfig(method=row.method, preset=budget.preset, switches=dict(row.switches), epochs=budget.epochs,
                       batch_size=budget.batch_size, lr=budget.lr, lr_min=budget.lr_min, seed=seed,
                       hard_negatives=row.hard_negatives, device="cpu")


def run_job(windows: WindowSet, job: Job, budget: Budget) -> dict:
    """Train and test one job; returns its metrics (and a few predictions for figures)."""
    start = time.perf_counter()
    train_index, test_index = split(windows, job, budget.train_fraction)
    truth = windows.poses[test_index]
    mean_pose = windows.poses[train_index].mean(axis=(0, 1))
    history: list[dict] = []
    if job.row.method is None:
        pred = mean_pose_prediction(mean_pose, len(test_index))
    else:
        data, tr, te = (_shuffled(windows, train_index, test_index, job.seed) if job.row.shuffled
                        else (windows, train_index, test_index))
        result = train(data, tr, train_config(job.row, budget, job.seed), progress=False)
        pred = predict(result.model, result.stats, model_features(data, te, result.net_config.inputs))
        history = result.history
    show = np.linspace(0, len(test_index) - 1, QUALITATIVE_WINDOWS).round().astype(int)
    return {
        "key": job.key, "setting": job.setting.key, "test_subject": job.test_subject, "seed": job.seed,
        "row": job.row.label, "budget": asdict(budget), "train_windows": int(len(train_index)),
        "test_windows": int(len(test_index)), "metrics": evaluate(pred, truth),
        "final_loss": history[-1]["loss"] if history else None, "seconds": time.perf_counter() - start,
        "examples": {"pred": np.asarray(pred)[show].tolist(), "truth": truth[show].tolist()},
    }


def training_speed(rows: tuple[Row, ...], budget: Budget, batches: int = 2) -> dict[str, float]:
    """Measured training windows per second of each row's network on this machine (one thread)."""
    speeds: dict[str, float] = {}
    stats = FeatureStats(mean=np.full(9, -50.0), std=np.full(9, 10.0))
    base = torch.randn(budget.batch_size, 9, 12, 128) * 10 - 50
    poses = torch.randn(budget.batch_size, 12, 63)
    for row in rows:
        if row.method is None:
            continue
        net_config = preset(budget.preset, **dict(row.switches))
        step = TrainStep(build_model(row.method, net_config), stats, loss_weights(row.method, net_config),
                         np.zeros(63, np.float32)).train()
        optimiser = torch.optim.Adam(step.parameters())
        times = []
        for _ in range(batches + 1):
            t = time.perf_counter()
            optimiser.zero_grad()
            step(base, poses)[0].backward()
            optimiser.step()
            times.append(time.perf_counter() - t)
        speeds[row.label] = budget.batch_size / float(np.median(times[1:]))
    return speeds


def estimate_seconds(windows: WindowSet, plan: Plan, speeds: dict[str, float], workers: int) -> float:
    """Wall time of the plan's training with ``workers`` parallel processes."""
    total = 0.0
    for job in plan.jobs:
        if job.row.method is None:
            continue
        train_index, _ = split(windows, job, plan.budget.train_fraction)
        total += plan.budget.epochs * len(train_index) / speeds[job.row.label]
    return total / max(workers, 1)


def quick_budget(windows: WindowSet, plan: Plan, speeds: dict[str, float], minutes: float, workers: int,
                 max_epochs: int = 30) -> Budget:
    """The plan's budget with epochs (and, if need be, a training fraction) that fit ``minutes``;
    10 % of the time is kept for loading, testing and the report."""
    one_epoch = estimate_seconds(windows, Plan(plan.settings, plan.folds, plan.seeds,
                                               Budget(**{**asdict(plan.budget), "epochs": 1, "train_fraction": 1.0}),
                                               plan.jobs), speeds, workers)
    available = 0.9 * minutes * 60
    epochs = min(max_epochs, int(available // one_epoch))
    if epochs >= 1:
        return Budget(**{**asdict(plan.budget), "epochs": epochs, "train_fraction": 1.0})
    return Budget(**{**asdict(plan.budget), "epochs": 1, "train_fraction": math.floor(100 * available / one_epoch) / 100})


def aggregate(results: list[dict]) -> dict[tuple[str, str], dict[str, tuple[float, float, int]]]:
    """{(setting, row label): {metric: (mean, std over folds and seeds, runs)}}."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["setting"], r["row"]), []).append(r["metrics"])
    out = {}
    for key, metrics in groups.items():
        out[key] = {m: (float(np.mean([x[m] for x in metrics])), float(np.std([x[m] for x in metrics])), len(metrics))
                    for m in metrics[0]}
    return out


def save_result(folder: Path, result: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{result['key']}.json").write_text(json.dumps(result) + "\n")


def load_result(folder: Path, job: Job, budget: Budget, data: str) -> dict | None:
    """A finished job's result from an earlier run with the same budget on the same data
    (``WindowSet.fingerprint``), else None."""
    path = folder / f"{job.key}.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    return result if result.get("budget") == asdict(budget) and result.get("data") == data else None

