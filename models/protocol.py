"""The paper's evaluation protocol (REFERENCE.md, "Protocol") on a data set of sessions.

Settings, derived from the data set's tracks: the *main* genre is the one with the most
tracks (ambient in AMPL and in the default simulated set), tracks sorted by name.
- (a) single-music: train and test on the first main-genre track.
- (b) cross-music: train on the other main-genre tracks and every other-genre track, test on
  the last main-genre track (needs 2 main-genre tracks).
- (c) cross-genre: train on the main-genre tracks, test on the other genres' tracks.
Every setting is leave-one-subject-out: a fold trains on all subjects but one and tests on
that one. Rows: the four methods (and BGM2Pose on the channel inputs), the BGM2Pose ablations
(settings (a) and (b), as the paper reports them) and two controls, ``CONTROLS``.

Every trained row gets the same ``Budget``: it trains until the pose loss on a validation
subject stops improving (``Budget.patience`` epochs without a better one) or at the epoch
cap, with the same batch size, learning rates and seeds. The validation subject is the last
training subject in sorted order (``data.validation_split``): never the test subject, the
same for every row of a fold. The training windows the rows fit on are the training
subjects' windows on the training tracks without the validation subject's.

A job's result is keyed by ``job_digest``: a hash of the data's content, the job (setting,
held-out subject, seed, row) and the budget, so results from shards, machines or an
interrupted run are recognised and merged, and results of other data or another budget never
are.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from bgm2pose.models.baselines import build_model
from bgm2pose.models.data import DataError, WindowSet, fit_stats, model_features, validation_split
from bgm2pose.models.evaluation import mean_pose_prediction
from bgm2pose.models.losses import loss_weights
from bgm2pose.models.metrics import evaluate
from bgm2pose.models.networks import preset
from bgm2pose.models.train import TrainConfig, TrainStep, predict, train

SETTING_NAMES = {"a": "single-music", "b": "cross-music", "c": "cross-genre"}
QUALITATIVE_WINDOWS = 3
# Part of every job digest: bump it when what a job computes changes (its split, its
# training or its metrics), so results of the old way are never mixed into a report.
RESULT_VERSION = 2
# The loss terms of each epoch a result keeps for its learning curve.
CURVE_TERMS = ("epoch", "loss", "pose", "val_pose")


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
# What each control is, exactly as run_job computes it; the report quotes these.
CONTROLS = {
    "mean pose": "the training-set mean pose: the mean of every frame of the windows the trained rows fit on "
                 "(the training subjects but the validation subject, on the training tracks), predicted for "
                 "every test frame. It is also where every trained network's pose head starts.",
    "BGM2Pose, shuffled audio": "BGM2Pose trained *and* evaluated on shuffled audio: each window's features "
                                "(base and channel) are replaced by those of another window of the same part, "
                                "permuted across all training windows (fit and validation alike) and, "
                                "separately, across the test windows; poses, labels and the feature "
                                "distribution are unchanged, the pairing of sound and pose is destroyed. "
                                "Early stopping watches the shuffled validation windows.",
}


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
    epochs: int = 30  # the cap; a validation plateau stops a run sooner
    patience: int = 5
    batch_size: int = 64
    lr: float = 3e-3
    lr_min: float = 1e-3


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


def job_digest(job: Job, budget: Budget, data: str) -> str:
    """The content hash a job's result is stored under (see the module docstring)."""
    spec = [RESULT_VERSION, data, asdict(budget), asdict(job.setting), job.test_subject, job.seed, asdict(job.row)]
    return hashlib.blake2b(json.dumps(spec, sort_keys=True).encode(), digest_size=8).hexdigest()


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
    if len(subjects) < 3:
        raise DataError(f"the protocol needs sessions of at least three subjects (one to test, one to validate "
                        f"on, one to train on); this data set has {subjects}. Simulate more.")
    unknown = sorted(set(folds) - set(subjects))
    if unknown:
        raise DataError(f"fold subjects {unknown} are not in the data set; it has {subjects}.")
    settings = protocol_settings(windows)
    if windows.channel.shape[1] == 0:
        # An AMPL release holds the paper's features only: no row can read the channel's.
        rows = tuple(r for r in rows if dict(r.switches).get("inputs", "paper") == "paper")
    jobs = [Job(s, f, seed, r) for s in settings for f in folds for seed in seeds for r in rows
            if r.group != "ablation" or s.key in ABLATION_SETTINGS]
    return Plan(settings, list(folds), list(seeds), budget, jobs)


def split(windows: WindowSet, job: Job) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices of a job: other subjects on the training tracks, the held-out
    subject on the test tracks."""
    s = job.setting
    train = np.flatnonzero((windows.subject != job.test_subject) & np.isin(windows.track, s.train_tracks))
    test = np.flatnonzero((windows.subject == job.test_subject) & np.isin(windows.track, s.test_tracks))
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


def job_windows(windows: WindowSet, job: Job) -> tuple[WindowSet, np.ndarray, np.ndarray, np.ndarray]:
    """(windows, fit, validation, test) of a job: the shuffled control's own copy, else the data set."""
    train_index, test_index = split(windows, job)
    data = windows
    if job.row.shuffled:
        data, train_index, test_index = _shuffled(windows, train_index, test_index, job.seed)
    fit, val = validation_split(data, train_index)
    return data, fit, val, test_index


def train_config(row: Row, budget: Budget, seed: int, device: str = "cpu") -> TrainConfig:
    return TrainConfig(method=row.method, preset=budget.preset, switches=dict(row.switches), epochs=budget.epochs,
                       patience=budget.patience, batch_size=budget.batch_size, lr=budget.lr, lr_min=budget.lr_min,
                       seed=seed, hard_negatives=row.hard_negatives, device=device)


def _training(record: dict) -> dict:
    """What a result keeps of a run's record: the stop and a learning curve per epoch."""
    return {**{k: record[k] for k in ("epochs_run", "max_epochs", "patience", "stop", "best_epoch", "wall_seconds")},
            "history": [{k: h[k] for k in CURVE_TERMS if k in h} for h in record["history"]]}


def run_job(windows: WindowSet, job: Job, budget: Budget, checkpoints: Path | None = None,
            device: str = "cpu") -> dict:
    """Train and test one job; returns its result (metrics, the training record, a few
    predictions for figures). With ``checkpoints`` the training resumes from, and saves to,
    that folder, so a job killed mid-way continues where it stopped."""
    start = time.perf_counter()
    data, fit, val, test = job_windows(windows, job)
    truth = data.poses[test]
    training = None
    if job.row.method is None:
        pred = mean_pose_prediction(data.poses[fit].mean(axis=(0, 1)), len(test))
    else:
        result = train(data, fit, train_config(job.row, budget, job.seed, device), checkpoints, val_index=val,
                       resume=checkpoints is not None, progress=False)
        pred = predict(result.model, result.stats, model_features(data, test, result.net_config.inputs))
        training = _training(result.record)
    show = np.linspace(0, len(test) - 1, QUALITATIVE_WINDOWS).round().astype(int)
    return {
        "key": job.key, "setting": job.setting.key, "test_subject": job.test_subject, "seed": job.seed,
        "row": job.row.label, "budget": asdict(budget), "train_windows": int(len(fit)),
        "validation": data.describe(val), "test_windows": int(len(test)), "metrics": evaluate(pred, truth),
        "training": training, "seconds": time.perf_counter() - start,
        "examples": {"pred": np.asarray(pred)[show].tolist(), "truth": truth[show].tolist()},
    }


@dataclass(frozen=True)
class Speed:
    """Measured seconds per window of one network on this machine: a training step's and a
    prediction's (the validation pass and the test)."""

    train: float
    predict: float


def _timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after one warm-up call."""
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times[1:]))


def _network_speed(windows: WindowSet, row: Row, budget: Budget, sample: np.ndarray, device: str) -> Speed:
    net_config = preset(budget.preset, **dict(row.switches))
    stats = fit_stats(windows, sample, net_config.inputs)
    features = model_features(windows, sample, net_config.inputs)
    poses = windows.poses[sample]
    step = TrainStep(build_model(row.method, net_config), stats, loss_weights(row.method, net_config),
                     poses.mean(axis=(0, 1))).to(device).train()
    optimiser = torch.optim.Adam(step.parameters())
    inputs, targets = torch.from_numpy(features).to(device), torch.from_numpy(poses).to(device)

    def train_step():
        optimiser.zero_grad()
        step(inputs, targets)[0].backward()
        optimiser.step()

    seconds = _timed(train_step, 2)
    predicted = _timed(lambda: predict(step.network, stats, features), 2)
    return Speed(train=seconds / len(sample), predict=predicted / len(sample))


def measure_speeds(windows: WindowSet, rows: tuple[Row, ...], budget: Budget, device: str = "cpu") -> dict[str, Speed]:
    """Each trained row's ``Speed`` (one batch of the data set's own windows; rows sharing a
    network are measured once)."""
    sample = np.arange(min(budget.batch_size, len(windows)))
    by_network: dict[tuple, Speed] = {}
    speeds = {}
    for row in rows:
        if row.method is None:
            continue
        network = (row.method, row.switches)
        if network not in by_network:
            by_network[network] = _network_speed(windows, row, budget, sample, device)
        speeds[row.label] = by_network[network]
    return speeds


def job_sizes(windows: WindowSet, job: Job) -> tuple[int, int, int]:
    """(fit, validation, test) window counts of a job."""
    train_index, test_index = split(windows, job)
    fit, val = validation_split(windows, train_index)
    return len(fit), len(val), len(test_index)


def estimate_seconds(sizes: tuple[int, int, int], speed: Speed | None, epochs: float) -> float:
    """Seconds of a job training ``epochs`` epochs (0 for the mean pose)."""
    if speed is None:
        return 0.0
    fit, val, test = sizes
    return epochs * (fit * speed.train + val * speed.predict) + test * speed.predict


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
