"""Is pose recoverable from the features at all? Probes on unseen subjects.

Regressors from a window's features (mel pooled 4:1 to keep the problem small) to its
12 x 63 normalised poses, trained leave-one-subject-out, on three inputs:
- ``plain``: the standardised network inputs (X and M) as the network sees them;
- ``excerpt``: the mic channels (log-mel and intensity) minus their mean over the training
  sessions that played the same music excerpt (same track, same position). Every session
  plays its track from the start, so this removes what the music and the static room put
  into a window and leaves what differs between takes: the body (and noise). It needs
  sessions that played the same music, which a live rig never has;
- ``channel``: the channel features (``sensing.channel``), per-channel standardised: the
  transfer function's change from its causal background, which needs no other session and
  does not depend on the music (taps pooled 4:1 like the mel bands).
Two regressors: ridge (linear, closed form) and a small MLP (two hidden layers), the simplest
model that can use a signature that is not linear in the pose, such as an arm entering the
line of sight. Two controls: the mean-pose predictor (the training split's mean pose), and
the same regressor on audio shuffled across windows (pairing destroyed, distribution kept).
If the rig's physics carry pose information, a regressor beats the mean pose and its
shuffled twin does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from bgm2pose.models.metrics import mae, mae_per_axis, pckh
from bgm2pose.sensing.channel import CHANNELS as CHANNEL_CHANNELS
from bgm2pose.sensing.features import CHANNELS, FeatureStats, network_inputs
from bgm2pose.sensing.skeleton import PARTS

MEL_POOL = 4
# (input, regressor) pairs; the MLP runs on the inputs where the music is gone.
PROBES = (("plain", "ridge"), ("excerpt", "ridge"), ("excerpt", "mlp"), ("channel", "ridge"), ("channel", "mlp"))
_MIC = [CHANNELS.index(c) for c in ("W", "X", "Y", "Z", "Ix", "Iy", "Iz")]
_MLP_HIDDEN = 256
_MLP_DROPOUT = 0.3
_MLP_BATCH = 128
MLP_EPOCHS = 40


@dataclass
class ProbeResult:
    probe: str  # input: plain or excerpt
    regressor: str  # ridge or mlp
    subject: str
    n_test: int
    mae_mean_pose: float
    mae_fit: float
    mae_shuffled: float
    pckh_mean_pose: float
    pckh_fit: float
    pckh_shuffled: float
    # Per part: MAE of the x (lateral), y (up), z (depth) coordinates, for the mean pose and
    # the regressor: which directions of movement the audio reveals.
    axes_mean_pose: dict[str, list[float]] = field(default_factory=dict)
    axes_fit: dict[str, list[float]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.probe} {self.regressor}"


def _pool_flat(a: np.ndarray) -> np.ndarray:
    b, c, t, f = a.shape
    return a.reshape(b, c, t, f // MEL_POOL, MEL_POOL).mean(axis=-1).reshape(b, -1).astype(np.float64)


def plain_inputs(base: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Standardised X and M (statistics from the training rows), pooled and flattened."""
    x, m = network_inputs(base, FeatureStats.fit(base[train]))
    return _pool_flat(np.concatenate([x, m], axis=1))


def channel_inputs(channel: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Channel features standardised per channel (statistics from the training rows), pooled
    and flattened."""
    stats = FeatureStats.fit(channel[train], channels=CHANNEL_CHANNELS)
    return _pool_flat((channel - stats.mean[:, None, None]) / stats.std[:, None, None])


def excerpt_inputs(base: np.ndarray, excerpts: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Mic channels minus the training mean of the same music excerpt, per-channel
    standardised, pooled and flattened. Excerpts no training row played fall back to the
    training mean over all excerpts."""
    mic = base[:, _MIC].astype(np.float64)
    keys, inverse = np.unique(excerpts, return_inverse=True)
    sums = np.zeros((len(keys),) + mic.shape[1:])
    np.add.at(sums, inverse[train], mic[train])
    counts = np.bincount(inverse[train], minlength=len(keys)).astype(float)
    means = np.where(counts[:, None, None, None] > 0,
                     sums / np.maximum(counts, 1)[:, None, None, None], mic[train].mean(axis=0))
    resid = mic - means[inverse]
    resid /= np.maximum(resid[train].std(axis=(0, 2, 3), keepdims=True), 1e-6)
    return _pool_flat(resid)


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form ridge on centred data, ``alpha`` relative to the mean feature variance;
    returns (x_mean, weights, y_mean). Solved in whichever of the primal (features x
    features) and dual (rows x rows) forms is smaller: the same weights either way."""
    xm, ym = x.mean(axis=0), y.mean(axis=0)
    xc = x - xm
    n, d = xc.shape
    # Features with no variance at all (an excerpt probe with one training session per
    # excerpt) leave nothing to fit: the floor keeps the solve defined, the weights zero.
    lam = max(alpha * float(np.einsum("ij,ij->", xc, xc)) / d, 1e-12)
    if n < d:
        gram = xc @ xc.T
        gram[np.diag_indices_from(gram)] += lam
        return xm, xc.T @ np.linalg.solve(gram, y - ym), ym
    gram = xc.T @ xc
    gram[np.diag_indices_from(gram)] += lam
    return xm, np.linalg.solve(gram, xc.T @ (y - ym)), ym


def predict_ridge(model: tuple[np.ndarray, np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    xm, w, ym = model
    return (x - xm) @ w + ym


def fit_mlp(x: np.ndarray, y: np.ndarray, *, epochs: int = MLP_EPOCHS,
            seed: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """A two-hidden-layer MLP fitted with an L1 loss on standardised inputs; returns the
    predictor. Seeded: the same data give the same weights."""
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    mu, sd, ym = xt.mean(0), xt.std(0) + 1e-6, yt.mean(0)
    # Initial weights and dropout draw from torch's global generator: seed it, and leave the
    # caller's random state as it was.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = torch.nn.Sequential(
            torch.nn.Linear(x.shape[1], _MLP_HIDDEN), torch.nn.GELU(), torch.nn.Dropout(_MLP_DROPOUT),
            torch.nn.Linear(_MLP_HIDDEN, _MLP_HIDDEN), torch.nn.GELU(),
            torch.nn.Linear(_MLP_HIDDEN, y.shape[1]),
        )
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-2)
        net.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(xt), generator=gen).split(_MLP_BATCH):
                loss = (net((xt[batch] - mu) / sd) - (yt[batch] - ym)).abs().mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
    net.eval()

    def predict(x_new: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return (net((torch.as_tensor(x_new, dtype=torch.float32) - mu) / sd) + ym).double().numpy()
    return predict


def _fit_predict(regressor: str, x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray,
                 perm_tr: np.ndarray, perm_te: np.ndarray, alpha: float, mlp_epochs: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Predictions for x_te of the probe fitted on (x_tr, y_tr), and of the same probe fitted
    with the training audio shuffled (x_tr[perm_tr] against y_tr) for x_te[perm_te]."""
    if regressor == "ridge":
        # x_tr[perm] against y_tr is x_tr against y_tr re-ordered: one solve serves both, and
        # the solve's (features x features) product is most of a probe's time.
        k = y_tr.shape[1]
        xm, w, ym = fit_ridge(x_tr, np.hstack([y_tr, y_tr[np.argsort(perm_tr)]]), alpha)
        return (predict_ridge((xm, w[:, :k], ym[:k]), x_te),
                predict_ridge((xm, w[:, k:], ym[k:]), x_te[perm_te]))
    return (fit_mlp(x_tr, y_tr, epochs=mlp_epochs, seed=seed)(x_te),
            fit_mlp(x_tr[perm_tr], y_tr, epochs=mlp_epochs, seed=seed)(x_te[perm_te]))


def leave_one_subject_out(
    base: np.ndarray, poses: np.ndarray, subjects: np.ndarray, excerpts: np.ndarray, *,
    alpha: float = 10.0, probes: tuple[tuple[str, str], ...] = PROBES,
    mlp_epochs: int = MLP_EPOCHS, seed: int = 0, channel: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[ProbeResult]:
    """base (B, 9, 12, 128), poses (B, 12, 63) normalised, subjects (B,) names, excerpts
    (B,) keys naming the music excerpt of each window (e.g. "jazz-0000@28800"), channel
    (B, 17, 12, 128) channel features (None: the channel probes are left out).
    ``progress(subject)`` after each held-out subject."""
    if channel is None:
        probes = tuple(p for p in probes if p[0] != "channel")
    rng = np.random.default_rng(seed)
    results = []
    y_all = poses.reshape(len(poses), -1).astype(np.float64)
    for subject in sorted(set(subjects)):
        test = subjects == subject
        train = ~test
        y_tr, y_te = y_all[train], poses[test].astype(np.float64)
        mean_pose = np.broadcast_to(y_tr.mean(axis=0).reshape(poses.shape[1:]), y_te.shape)
        inputs = {}
        for probe, regressor in probes:
            if probe not in inputs:
                inputs[probe] = (plain_inputs(base, train) if probe == "plain"
                                 else channel_inputs(channel, train) if probe == "channel"
                                 else excerpt_inputs(base, excerpts, train))
            x = inputs[probe]
            x_tr, x_te = x[train], x[test]
            perm_tr, perm_te = rng.permutation(len(x_tr)), rng.permutation(len(x_te))
            fit, shuffled = _fit_predict(regressor, x_tr, y_tr, x_te, perm_tr, perm_te, alpha,
                                         mlp_epochs, seed)
            fit, shuffled = fit.reshape(y_te.shape), shuffled.reshape(y_te.shape)
            results.append(ProbeResult(
                probe=probe, regressor=regressor, subject=str(subject), n_test=int(test.sum()),
                mae_mean_pose=mae(mean_pose, y_te), mae_fit=mae(fit, y_te),
                mae_shuffled=mae(shuffled, y_te),
                pckh_mean_pose=pckh(mean_pose, y_te), pckh_fit=pckh(fit, y_te),
                pckh_shuffled=pckh(shuffled, y_te),
                axes_mean_pose={part: mae_per_axis(mean_pose, y_te, part).tolist() for part in PARTS},
                axes_fit={part: mae_per_axis(fit, y_te, part).tolist() for part in PARTS},
            ))
        if progress is not None:
            progress(str(subject))
    return results


_FIELDS = ("mae_mean_pose", "mae_fit", "mae_shuffled",
           "pckh_mean_pose", "pckh_fit", "pckh_shuffled")


def summary(results: list[ProbeResult], name: str) -> dict[str, float]:
    """Window-weighted means over the folds of one probe, named "<input> <regressor>"."""
    rows = [r for r in results if r.name == name]
    w = np.array([r.n_test for r in rows], float)
    return {f: float(np.average([getattr(r, f) for r in rows], weights=w)) for f in _FIELDS}


def axes_summary(results: list[ProbeResult], name: str) -> dict[str, np.ndarray]:
    """Per part, the regressor's MAE over the mean pose's for x, y, z (window-weighted)."""
    rows = [r for r in results if r.name == name]
    w = np.array([r.n_test for r in rows], float)
    return {part: np.average([r.axes_fit[part] for r in rows], axis=0, weights=w)
            / np.average([r.axes_mean_pose[part] for r in rows], axis=0, weights=w)
            for part in PARTS}


def comparison_markdown(rows: list[tuple[str, list[ProbeResult]]]) -> str:
    """One row per data set (label, its probes' results): each probe's MAE / mean-pose MAE,
    the same with shuffled audio, and PCKh@0.5."""
    names = list(dict.fromkeys(r.name for _, results in rows for r in results))
    out = ["| data set | " + " | ".join(f"{n}: MAE / mean pose (shuffled) | {n}: PCKh@0.5"
                                       for n in names) + " | PCKh@0.5 mean pose |",
           "|---|" + "---|---|" * len(names) + "---|"]
    for label, results in rows:
        cells = []
        for name in names:
            if not any(r.name == name for r in results):  # e.g. no channel features
                cells += ["-", "-"]
                continue
            s = summary(results, name)
            cells += [f"{s['mae_fit'] / s['mae_mean_pose']:.3f} "
                      f"({s['mae_shuffled'] / s['mae_mean_pose']:.3f})", f"{s['pckh_fit']:.3f}"]
        cells.append(f"{summary(results, names[0])['pckh_mean_pose']:.3f}")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def report_markdown(results: list[ProbeResult], title: str, alpha: float,
                    mlp_epochs: int = MLP_EPOCHS) -> str:
    out = [f"# {title}\n",
           "Probes trained leave-one-subject-out on features with mel pooled "
           f"{MEL_POOL}:1; poses in normalised units (hip-spine = 1). Inputs: `plain` = "
           "standardised network inputs; `excerpt` = mic features minus the training mean of "
           "the same music excerpt; `channel` = the channel features (the transfer function's "
           f"change from its causal background, `sensing.channel`). Regressors: ridge (alpha {alpha:g} x mean feature "
           "variance); " + (f"MLP ({_MLP_HIDDEN}-{_MLP_HIDDEN}, L1 loss, {mlp_epochs} epochs).\n"
                            if mlp_epochs else "MLP not run (`--mlp-epochs 0`).\n")]
    names = list(dict.fromkeys(r.name for r in results))
    out += ["\n## Summary\n", "| probe | MAE / mean pose | shuffled audio: MAE / mean pose "
            "| PCKh@0.5 | PCKh@0.5 mean pose |", "|---|---|---|---|---|"]
    for name in names:
        s = summary(results, name)
        out.append(f"| {name} | {s['mae_fit'] / s['mae_mean_pose']:.3f} | "
                   f"{s['mae_shuffled'] / s['mae_mean_pose']:.3f} | {s['pckh_fit']:.3f} | "
                   f"{s['pckh_mean_pose']:.3f} |")
    for name in names:
        rows = [r for r in results if r.name == name]
        out += [f"\n## Probe `{name}`\n",
                "| held-out subject | windows | MAE mean pose | MAE probe | MAE probe, shuffled "
                "audio | PCKh@0.5 mean pose | PCKh@0.5 probe | PCKh@0.5 shuffled |",
                "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            out.append(f"| {r.subject} | {r.n_test} | " + " | ".join(
                f"{getattr(r, f):.3f}" for f in _FIELDS) + " |")
        s = summary(results, name)
        out.append(f"| **all** | {sum(r.n_test for r in rows)} | " + " | ".join(
            f"{s[f]:.3f}" for f in _FIELDS) + " |")
        out += ["\nWhat the probe recovers, by part and direction (probe MAE / mean-pose MAE; "
                "x = lateral, y = up, z = depth, world axes):\n",
                "| part | x | y | z |", "|---|---|---|---|"]
        out += [f"| {part} | " + " | ".join(f"{v:.3f}" for v in ratios) + " |"
                for part, ratios in axes_summary(results, name).items()]
    return "\n".join(out) + "\n"
