"""Training of BGM2Pose and the baselines (REFERENCE.md, "Network" and "Baselines").

- Loss: ``losses.total_loss`` with ``losses.loss_weights(method, config)``: MSE(pose) +
  100 x MSE(velocity) + CLIP (logit scale 1/0.07) for BGM2Pose with CPE.
- Optimiser: Adam, learning rate annealed per step on a cosine from ``lr`` to ``lr_min``
  over the epochs of the cap. Batches from ``data.ExcerptBatchSampler``: shared-excerpt groups (BGM
  hard negatives) when the CLIP term is on, plain random batches otherwise.
- Stopping: ``epochs`` is the cap. With validation windows (``val_index``, taken from the
  training subjects by ``data.validation_split``, never from the test), every epoch ends
  with the validation loss (pose MSE, eval mode) of the model that would be kept if training
  stopped there; a loss at least ``MIN_IMPROVEMENT`` (relative) below the best so far is the
  new best, and ``patience`` epochs without one stop the run ("plateau"). Reaching the cap
  stops it too ("cap"); without validation windows every run ends at the cap. The cosine
  schedule is planned over the cap, so a run that stops early took the same steps up to its
  stop as one with a larger patience.
- The model that is kept is the average of the weights (and batch-norm statistics) of the
  ``average_last`` epoch snapshots ending at the best epoch (at the last one without
  validation), as the public code averages its last 3 epochs: the weights kept are exactly
  those the best validation loss was measured on.
- Record (``TrainResult.record``, the checkpoint's ``record``): epochs run, cap, patience,
  stop reason, best epoch, wall seconds (summed over resumed parts) and the per-epoch
  history with the train loss terms and ``val_pose`` (the validation loss, comparable with
  the train ``pose`` term), for metrics.json and the model card.
- Inputs: the network sees ``graph.NetworkInputs`` of the raw features its ``NetConfig.inputs``
  names (``models.inputs``: the paper's base features, the channel features or both), with the
  standardisation fitted on the training windows only.
- Checkpoint ``<out>/checkpoint.pt`` after every epoch (rank 0): a plain dict of tensors,
  numbers, strings and lists, loadable with ``torch.load(weights_only=True)``; ``resume``
  continues from it (best weights and stopping state included, so a resumed run ends where
  an uninterrupted one does; resuming a finished run only loads it). ``kept`` holds the
  weights kept so far (the final ones once ``record["stop"]`` is set).
- Distributed: when launched by ``torchrun`` (``WORLD_SIZE`` > 1) it runs
  DistributedDataParallel, gloo on CPU and nccl on CUDA; each rank takes every
  ``world``-th batch of the same epoch plan, so ``batch_size`` is per process. Otherwise one
  plain process.
- Seeds: ``seed`` fixes the initial weights (identical on every rank), dropout and the
  batch order.
- Subject discriminator (Shibata only, ``subject_discriminator``): ``n_subjects`` is the
  number of training subjects. Per batch, alternating as in a GAN: the pose step's loss adds
  the confusion term of the discriminator's logits on the encoder features and steps the
  encoder and decoder only; then the discriminator takes its own Adam step (same learning
  rate schedule) on the detached features. Under DDP the whole ``TrainStep`` is wrapped and
  every parameter gets a gradient in the pose step (the discriminator's through the confusion
  term, then discarded), so no unused-parameter search is needed; the discriminator's own step
  runs outside the wrapped forward, so its gradients are averaged over the ranks by hand.
  Rank 0 computes the validation loss and broadcasts it, so every rank stops at once.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from bgm2pose.models.baselines import METHODS, build_model
from bgm2pose.models.data import ExcerptBatchSampler, WindowSet, fit_stats, model_features
from bgm2pose.models.graph import NetworkInputs
from bgm2pose.models.inputs import input_channels, inputs_of
from bgm2pose.models.losses import LossWeights, discriminator_loss, loss_weights, total_loss
from bgm2pose.models.networks import NetConfig, preset
from bgm2pose.models.start import Start, load_start
from bgm2pose.sensing.errors import UserError, require_file
from bgm2pose.sensing.features import FeatureStats

CHECKPOINT = "checkpoint.pt"
# 2: early stopping (best weights, stopping state and the run's record in the checkpoint).
CHECKPOINT_FORMAT = 2
# A validation loss must beat the best by this fraction to count as progress, so float noise
# on a flat curve does not reset the patience.
MIN_IMPROVEMENT = 1e-3
# Per-batch loss terms, as TrainStep returns them (before the features).
TERMS = ("loss", "pose", "velocity", "clip", "confusion")


class TrainError(UserError, ValueError):
    """A training request that cannot run (bad option, device or checkpoint)."""


@dataclass
class TrainConfig:
    method: str = "bgm2pose"
    preset: str = "cpu"
    switches: dict = field(default_factory=dict)  # NetConfig overrides, e.g. {"use_fa": False}
    epochs: int = 30  # the cap; with validation windows a plateau may stop the run earlier
    patience: int = 5  # epochs without a better validation loss before stopping
    batch_size: int = 64
    lr: float = 3e-3
    lr_min: float = 1e-3
    seed: int = 0
    average_last: int = 3
    hard_negatives: bool | None = None  # None: on exactly when the CLIP term is
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    subject_discriminator: bool = False  # Shibata's adversarial subject discriminator

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise TrainError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}.")
        if self.epochs < 1 or self.patience < 1 or self.batch_size < 2 or self.average_last < 1:
            raise TrainError("epochs, patience and average_last must be at least 1 and batch_size at least 2.")
        if not 0 < self.lr_min <= self.lr:
            raise TrainError(f"learning rates must satisfy 0 < lr_min <= lr; got {self.lr_min} and {self.lr}.")
        if self.device not in ("auto", "cpu", "cuda"):
            raise TrainError(f"device {self.device!r} is unknown; choose auto, cpu or cuda.")
        if self.subject_discriminator and self.method != "shibata":
            raise TrainError(f"the subject discriminator belongs to the Shibata baseline, not {self.method}; "
                             "use it with --method shibata.")
        if "n_subjects" in self.switches:
            # A discriminator sized by hand would add the confusion term but never be trained.
            raise TrainError("n_subjects is set from the training subjects; ask for subject_discriminator "
                             "instead of the switch.")

    def net_config(self) -> NetConfig:
        return preset(self.preset, **self.switches)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return cls(**{k: v for k, v in d.items() if k in {f.name for f in fields(cls)}})


@dataclass
class TrainResult:
    model: nn.Module  # the kept (averaged) network, eval mode, on the CPU
    stats: FeatureStats
    config: TrainConfig
    net_config: NetConfig
    mean_pose: np.ndarray  # (63,) training mean pose: the mean-pose predictor
    history: list[dict]  # per epoch: mean loss terms over the epoch's batches, lr, val_pose
    record: dict  # see the module docstring; history included


class TrainStep(nn.Module):
    """Base features and true poses -> the loss terms of ``TERMS`` and the encoder features
    the subject discriminator's own step needs (None without one), as one module so
    DistributedDataParallel sees the whole pose computation (CPE embeddings and confusion
    term included) in its forward."""

    def __init__(self, network: nn.Module, stats: FeatureStats, weights: LossWeights, mean_pose: np.ndarray):
        super().__init__()
        self.inputs = NetworkInputs(stats)
        self.network = network
        self.weights = weights
        self.register_buffer("mean_pose", torch.from_numpy(mean_pose.astype(np.float32)))

    def forward(self, inputs: torch.Tensor, poses: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        network_inputs = self.inputs(inputs)
        features = subject_logits = audio_emb = None
        if self.weights.confusion:
            # Not detached: the confusion term trains the encoder to hide the subject.
            pred, features = self.network.forward_features(*network_inputs)
            subject_logits = self.network.discriminator(features)
        else:
            pred, audio_emb = self.network.forward_train(*network_inputs)
        # The pose encoder sees poses relative to the training mean pose: raw normalised poses
        # share a large offset (y is height, hips near 10) that swamps what tells them apart.
        pose_emb = self.network.pose_embedding(poses - self.mean_pose) if self.weights.clip else None
        t = total_loss(pred, poses, self.weights, audio_emb, pose_emb, subject_logits)
        return t.total, t.pose, t.velocity, t.clip, t.confusion, features


class SubjectDiscriminator:
    """The discriminator's own optimiser and step, which alternates with the pose step."""

    def __init__(self, network: nn.Module, subjects: np.ndarray, config: TrainConfig, total_steps: int,
                 world: int):
        self.network = network
        self.subjects = torch.from_numpy(subjects)  # subject index per training position
        self.parameters = list(network.subject_head.parameters())
        self.optimiser = torch.optim.Adam(self.parameters, lr=config.lr)
        self.schedule = _cosine(self.optimiser, config, total_steps)
        self.world = world

    def step(self, features: torch.Tensor, batch: np.ndarray) -> dict[str, float]:
        """One step on a batch's encoder features; its loss and accuracy."""
        subjects = self.subjects[torch.from_numpy(batch)].to(features.device)
        # Detached, so this loss trains the discriminator only and never helps the encoder
        # reveal the subject.
        logits = self.network.discriminator(features.detach())
        loss = discriminator_loss(logits, subjects)
        # set_to_none also drops the gradients the confusion term left here in the pose step.
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if self.world > 1:
            _average_gradients(self.parameters, self.world)
        self.optimiser.step()
        self.schedule.step()
        accuracy = (logits.detach().argmax(dim=1) == subjects).float().mean()
        return {"discriminator": float(loss.detach()), "discriminator_accuracy": float(accuracy)}

    def state_dict(self) -> dict:
        return {"optimiser": self.optimiser.state_dict(), "schedule": self.schedule.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimiser.load_state_dict(state["optimiser"])
        self.schedule.load_state_dict(state["schedule"])


def _cosine(optimiser: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=total_steps, eta_min=config.lr_min)


def _average_gradients(parameters: list[nn.Parameter], world: int) -> None:
    for p in parameters:
        dist.all_reduce(p.grad)
        p.grad.div_(world)


def _subject_index(subjects: np.ndarray) -> np.ndarray:
    """Each training window's subject as an index into the sorted subject names."""
    names, index = np.unique(subjects, return_inverse=True)
    if len(names) < 2:
        raise TrainError(f"the subject discriminator needs training windows of at least two subjects; "
                         f"these are all {names[0]}'s.")
    return index.astype(np.int64)


def _pose_parameters(step: TrainStep, discriminator: SubjectDiscriminator | None) -> list[nn.Parameter]:
    """Everything but the discriminator, which must not learn from the loss it is confused by."""
    excluded = {id(p) for p in discriminator.parameters} if discriminator is not None else set()
    return [p for p in step.parameters() if id(p) not in excluded]


def _pose_step(model: nn.Module, optimiser, schedule, base: torch.Tensor, poses: torch.Tensor,
               epoch: int) -> tuple[dict[str, float], torch.Tensor | None]:
    """One optimiser step of the pose loss; its terms and the encoder features (or None)."""
    *terms, features = model(base, poses)
    optimiser.zero_grad(set_to_none=True)
    terms[0].backward()
    optimiser.step()
    schedule.step()
    values = {name: float(t.detach()) for name, t in zip(TERMS, terms)}
    if not math.isfinite(values["loss"]):
        raise TrainError(f"the loss became {values['loss']} in epoch {epoch + 1}; lower --lr or "
                         "check the data for broken windows.")
    return values, features


def _summary(config: TrainConfig, epoch: int, record: dict[str, float]) -> str:
    line = (f"{config.method} epoch {epoch + 1}/{config.epochs}: loss {record['loss']:.4f} "
            f"(pose {record['pose']:.4f}, velocity {record['velocity']:.5f}, clip {record['clip']:.3f}")
    if "discriminator" in record:
        line += (f", confusion {record['confusion']:.4f}); discriminator {record['discriminator']:.3f} "
                 f"(accuracy {record['discriminator_accuracy']:.2f}")
    line += ")"
    if "val_pose" in record:
        line += f"; validation pose {record['val_pose']:.4f}"
    return line


def _start_at_mean_pose(network: nn.Module, mean_pose: np.ndarray) -> None:
    """Set the output layer's bias to the training mean pose. Normalised poses sit far from 0
    (y is height above the lowest joint, hips near 10), so a head starting at 0 would spend its
    first epochs learning the offset, and the 100x velocity term cannot help with that."""
    # Shibata's discriminator is no pose head, even with exactly 63 training subjects.
    discriminator = getattr(network, "subject_head", None)
    skip = {id(m) for m in discriminator.modules()} if discriminator is not None else set()
    heads = [m for m in network.modules() if id(m) not in skip
             and isinstance(getattr(m, "bias", None), torch.Tensor) and m.bias.shape == (63,)]
    if len(heads) != 1:
        raise TrainError(f"{type(network).__name__} has {len(heads)} layers with 63 outputs; expected one pose head.")
    with torch.no_grad():
        heads[0].bias.copy_(torch.from_numpy(mean_pose.astype(np.float32)))


def _device(name: str, local_rank: int) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu.")
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world); joins the process group when torchrun launched several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def average_states(states: list[dict]) -> dict:
    """Element-wise mean of floating tensors; other entries (counters) from the last state."""
    out = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            out[key] = torch.stack([s[key] for s in states]).mean(dim=0)
        else:
            out[key] = last.clone()
    return out


def _average_buffers(network: nn.Module, world: int) -> None:
    """Make batch-norm statistics the mean over ranks: DDP syncs gradients, but each rank's
    last forward updated its running statistics with its own batch."""
    with torch.no_grad():
        for buffer in network.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer.div_(world)


def _cpu_state(module: nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    require_file(path, "checkpoint", "train one with 'bgm2pose train'.", TrainError)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise TrainError(f"{path} is not a readable checkpoint ({type(exc).__name__}); "
                         "point at the checkpoint.pt that 'bgm2pose train' wrote.") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(f"{path} is not a bgm2pose checkpoint of format {CHECKPOINT_FORMAT}; "
                         "retrain with this version.")
    return ckpt


def model_from_checkpoint(ckpt: dict) -> tuple[nn.Module, FeatureStats, TrainConfig]:
    """The kept network (the best so far if training has not finished), eval mode."""
    config = TrainConfig.from_dict(ckpt["train_config"])
    net_config = NetConfig.from_dict(ckpt["net_config"])
    net = build_model(config.method, net_config)
    net.load_state_dict(ckpt["kept"])
    return net.eval(), FeatureStats.from_dict(ckpt["stats"], input_channels(net_config.inputs)), config


@dataclass
class _Stopping:
    """Where a run stands against early stopping; saved in the checkpoint to resume it."""

    best_loss: float = math.inf
    best_epoch: int = 0  # 1-based; 0 before the first epoch
    stop: str | None = None  # "plateau" or "cap" once the run is finished
    seconds: float = 0.0  # wall time up to the last checkpoint, summed over resumed parts


def _record(config: TrainConfig, history: list[dict], stopping: _Stopping, validation: dict | None,
            start: Start | None = None) -> dict:
    """What metrics.json and a model card's "training" section say of a run (with the model a
    fine-tuning started from, and what that one was trained on)."""
    return {"epochs_run": len(history), "max_epochs": config.epochs,
            "patience": config.patience if validation else None, "stop": stopping.stop,
            "best_epoch": stopping.best_epoch, "wall_seconds": round(stopping.seconds, 1),
            "validation": validation, "init": None if start is None else start.source,
            "history": history}


def train(
    windows: WindowSet,
    train_index: np.ndarray,
    config: TrainConfig,
    out: Path | None = None,
    *,
    val_index: np.ndarray = (),
    resume: bool = False,
    progress: bool = True,
    start: Start | None = None,
) -> TrainResult:
    """Train ``config.method`` on ``windows[train_index]``, stopping early on the loss of
    ``windows[val_index]`` when given; see the module docstring."""
    started = time.perf_counter()
    train_index = np.asarray(train_index)
    val_index = np.asarray(val_index, dtype=np.int64)
    if np.isin(val_index, train_index).any():
        raise TrainError("some validation windows are also training windows; take them out of the training split.")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(config.device, local_rank)
    rank, world = _distributed(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    net_config = config.net_config() if start is None else start.net_config
    subjects = _subject_index(windows.subject[train_index]) if config.subject_discriminator else None
    if subjects is not None:
        net_config = replace(net_config, n_subjects=int(subjects.max()) + 1)
    weights = loss_weights(config.method, net_config)
    hard = config.hard_negatives if config.hard_negatives is not None else bool(weights.clip)
    # A fine-tuned network keeps the standardisation it learned with.
    stats = fit_stats(windows, train_index, net_config.inputs) if start is None else start.stats
    # Everything the run learned from or chose its stop on, so a model card never calls the
    # validation subject unseen.
    data = windows.describe(np.concatenate([train_index, val_index]))
    validation = windows.describe(val_index) if len(val_index) else None

    torch.manual_seed(config.seed)
    network = build_model(config.method, net_config)
    mean_pose = windows.poses[train_index].mean(axis=(0, 1))
    if start is None:
        _start_at_mean_pose(network, mean_pose)
    else:
        fresh = load_start(network, start)
        if progress and rank == 0 and fresh:
            print(f"train: {fresh} training-only entries of the network start fresh (not in "
                  f"{Path(start.source['path']).name})")
    step = TrainStep(network, stats, weights, mean_pose).to(device)
    sampler = ExcerptBatchSampler(windows.excerpt[train_index], config.batch_size, hard_negatives=hard,
                                  seed=config.seed, rank=rank, world=world)
    total_steps = config.epochs * len(sampler)
    discriminator = (SubjectDiscriminator(network, subjects, config, total_steps, world)
                     if subjects is not None else None)
    optimiser = torch.optim.Adam(_pose_parameters(step, discriminator), lr=config.lr)
    schedule = _cosine(optimiser, config, total_steps)
    snapshots: deque[dict] = deque(maxlen=config.average_last)
    history: list[dict] = []
    stopping = _Stopping()
    kept: dict | None = None  # the averaged weights of the best epoch so far
    first_epoch = 0
    ckpt_path = Path(out) / CHECKPOINT if out is not None else None
    if resume and ckpt_path is not None and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path)
        # Compared as configs, so a checkpoint from before a field was added still resumes.
        if TrainConfig.from_dict(ckpt["train_config"]) != config:
            raise TrainError(f"{ckpt_path} was trained with other options; resume with the same "
                             "options or choose a new --out folder.")
        if ckpt["data"] != data or ckpt["record"]["validation"] != validation:
            raise TrainError(f"{ckpt_path} was trained on other training or validation windows; resume "
                             "with the same data and split or choose a new --out folder.")
        network.load_state_dict(ckpt["model"])
        optimiser.load_state_dict(ckpt["optimiser"])
        schedule.load_state_dict(ckpt["schedule"])
        if discriminator is not None:
            discriminator.load_state_dict(ckpt["discriminator"])
        snapshots.extend(ckpt["snapshots"])
        history = list(ckpt["history"])
        stopping = _Stopping(**ckpt["stopping"])
        kept = ckpt["kept"]
        first_epoch = int(ckpt["epoch"]) + 1
    # A copy to validate candidate weights on without touching the training module's state.
    evaluator = copy.deepcopy(network) if validation else None
    model = nn.parallel.DistributedDataParallel(step) if world > 1 else step
    resumed_seconds = stopping.seconds

    show = progress and rank == 0
    epochs_bar = tqdm(total=config.epochs, initial=first_epoch, desc=config.method, unit="epoch", disable=not show)
    for epoch in range(first_epoch, config.epochs if stopping.stop is None else first_epoch):
        # Dropout draws from the global generator: reseed per epoch so a resumed run repeats them.
        torch.manual_seed(config.seed * 1_000_003 + epoch * 1_009 + rank)
        sampler.set_epoch(epoch)
        model.train()
        sums: dict[str, float] = {}
        bar = tqdm(sampler, desc=f"epoch {epoch + 1}", unit="batch", disable=not show, leave=False)
        for batch in bar:
            rows = train_index[batch]
            inputs = torch.from_numpy(model_features(windows, rows, net_config.inputs)).to(device)
            values, features = _pose_step(model, optimiser, schedule, inputs,
                                          torch.from_numpy(windows.poses[rows]).to(device), epoch)
            if discriminator is not None:
                values |= discriminator.step(features, batch)
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + value
            bar.set_postfix({name: f"{values[name]:.4f}" for name in ("loss", "discriminator") if name in values})
        mean = {name: total / max(len(sampler), 1) for name, total in sums.items()}
        record = {"epoch": epoch + 1, **mean, "lr": float(schedule.get_last_lr()[0])}
        if world > 1:
            _average_buffers(network, world)
        snapshots.append(_cpu_state(network))
        candidate = average_states(list(snapshots))
        if evaluator is not None:
            record["val_pose"] = _validation_loss(evaluator, candidate, stats, windows, val_index, device, rank, world)
            if record["val_pose"] < stopping.best_loss * (1 - MIN_IMPROVEMENT):
                stopping.best_loss, stopping.best_epoch, kept = record["val_pose"], epoch + 1, candidate
        else:
            stopping.best_epoch, kept = epoch + 1, candidate
        history.append(record)
        if epoch + 1 - stopping.best_epoch >= config.patience:
            stopping.stop = "plateau"
        elif epoch + 1 == config.epochs:
            stopping.stop = "cap"
        stopping.seconds = resumed_seconds + time.perf_counter() - started
        if show:
            tqdm.write(_summary(config, epoch, record))
            epochs_bar.set_postfix_str(_postfix(record, stopping))
            epochs_bar.update()
        if ckpt_path is not None and rank == 0:
            _save(ckpt_path, {
                "format": CHECKPOINT_FORMAT,
                "train_config": config.to_dict(),
                "net_config": net_config.to_dict(),
                "stats": stats.to_dict(),
                "data": data,
                "mean_pose": torch.from_numpy(mean_pose.astype(np.float32)),  # the mean-pose predictor
                "epoch": epoch,
                "model": _cpu_state(network),
                "optimiser": optimiser.state_dict(),
                "schedule": schedule.state_dict(),
                "snapshots": list(snapshots),
                "history": history,
                "stopping": asdict(stopping),
                "kept": kept,
                "record": _record(config, history, stopping, validation, start),
                "discriminator": discriminator.state_dict() if discriminator is not None else None,
            })
        if stopping.stop:
            break
    epochs_bar.close()

    network.load_state_dict(kept)
    return TrainResult(network.cpu().eval(), stats, config, net_config, mean_pose, history,
                       _record(config, history, stopping, validation, start))


def _validation_loss(evaluator: nn.Module, state: dict, stats: FeatureStats, windows: WindowSet,
                     index: np.ndarray, device: torch.device, rank: int, world: int) -> float:
    """Pose MSE of the weights ``state`` on ``windows[index]``; rank 0 computes it and every
    rank receives it, so all stop at the same epoch."""
    loss = torch.zeros((), dtype=torch.float64, device=device)
    if rank == 0:
        evaluator.load_state_dict(state)
        pred = predict(evaluator, stats, model_features(windows, index, inputs_of(stats.channels)))
        loss += float(np.mean(np.square(pred - windows.poses[index], dtype=np.float64)))
    if world > 1:
        dist.broadcast(loss, 0)
    return float(loss)


def _postfix(record: dict, stopping: _Stopping) -> str:
    text = f"train loss {record['loss']:.4f}, pose {record['pose']:.4f}"
    if "val_pose" in record:
        text += f"; val pose {record['val_pose']:.4f} (best {stopping.best_loss:.4f} at {stopping.best_epoch})"
    return text


def _save(path: Path, ckpt: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def predict(network: nn.Module, stats: FeatureStats, features: np.ndarray, batch: int = 256) -> np.ndarray:
    """Poses (N, 12, 63) of features (N, C, 12, 128) (``data.model_features``, the channels of
    ``stats``) with a torch network in eval mode."""
    network.eval()
    inputs = NetworkInputs(stats)
    device = next(network.parameters()).device
    inputs.to(device)
    out = [network(*inputs(torch.from_numpy(features[i : i + batch]).to(device))).cpu().numpy()
           for i in range(0, len(features), batch)]
    return np.concatenate(out) if out else np.zeros((0, 12, 63), np.float32)
