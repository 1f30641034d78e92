"""Is pose recoverable from the features at all? A linear probe on unseen subjects.

Ridge regression from a window's features (mel pooled 4:1 to keep the problem small) to its
12 x 63 normalised poses, trained leave-one-subject-out, with two inputs:
- ``plain``: the standardised network inputs (X and M) as the network sees them;
- ``excerpt``: the mic channels (log-mel and intensity) minus their mean over the training
  sessions that played the same music excerpt (same track, same position). Every session
  plays its track from the start, so this removes what the music and the static room put
  into a window and leaves what differs between takes: the body (and noise).
Two controls: the mean-pose predictor (the training split's mean pose), and the same ridge
on audio shuffled across windows (pairing destroyed, distribution kept). If the rig's
physics carry pose information, ridge beats the mean pose and the shuffled ridge does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bgm2pose.models.metrics import mae, pckh
from bgm2pose.sensing.features import CHANNELS, FeatureStats, network_inputs

MEL_POOL = 4
PROBES = ("plain", "excerpt")
_MIC = [CHANNELS.index(c) for c in ("W", "X", "Y", "Z", "Ix", "Iy", "Iz")]


@dataclass
class ProbeResult:
    probe: str
    subject: str
    n_test: int
    mae_mean_pose: float
    mae_ridge: float
    mae_ridge_shuffled: float
    pckh_mean_pose: float
    pckh_ridge: float
    pckh_ridge_shuffled: float


def _pool_flat(a: np.ndarray) -> np.ndarray:
    b, c, t, f = a.shape
    return a.reshape(b, c, t, f // MEL_POOL, MEL_POOL).mean(axis=-1).reshape(b, -1).astype(np.float64)


def plain_inputs(base: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Standardised X and M (statistics from the training rows), pooled and flattened."""
    x, m = network_inputs(base, FeatureStats.fit(base[train]))
    return _pool_flat(np.concatenate([x, m], axis=1))


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
    returns (x_mean, weights, y_mean)."""
    xm, ym = x.mean(axis=0), y.mean(axis=0)
    xc = x - xm
    gram = xc.T @ xc
    gram[np.diag_indices_from(gram)] += alpha * np.trace(gram) / len(gram)
    w = np.linalg.solve(gram, xc.T @ (y - ym))
    return xm, w, ym


def predict_ridge(model: tuple[np.ndarray, np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    xm, w, ym = model
    return (x - xm) @ w + ym


def leave_one_subject_out(
    base: np.ndarray, poses: np.ndarray, subjects: np.ndarray, excerpts: np.ndarray, *,
    alpha: float = 10.0, probes: tuple[str, ...] = PROBES, seed: int = 0,
) -> list[ProbeResult]:
    """base (B, 9, 12, 128), poses (B, 12, 63) normalised, subjects (B,) names, excerpts
    (B,) keys naming the music excerpt of each window (e.g. "jazz-0000@28800")."""
    rng = np.random.default_rng(seed)
    results = []
    y_all = poses.reshape(len(poses), -1).astype(np.float64)
    for subject in sorted(set(subjects)):
        test = subjects == subject
        train = ~test
        y_tr, y_te = y_all[train], poses[test].astype(np.float64)
        mean_pose = np.broadcast_to(y_tr.mean(axis=0).reshape(poses.shape[1:]), y_te.shape)
        for probe in probes:
            x = plain_inputs(base, train) if probe == "plain" else excerpt_inputs(base, excerpts, train)
            x_tr, x_te = x[train], x[test]
            ridge = predict_ridge(fit_ridge(x_tr, y_tr, alpha), x_te).reshape(y_te.shape)
            shuffled = predict_ridge(
                fit_ridge(x_tr[rng.permutation(len(x_tr))], y_tr, alpha),
                x_te[rng.permutation(len(x_te))],
            ).reshape(y_te.shape)
            results.append(ProbeResult(
                probe=probe, subject=str(subject), n_test=int(test.sum()),
                mae_mean_pose=mae(mean_pose, y_te), mae_ridge=mae(ridge, y_te),
                mae_ridge_shuffled=mae(shuffled, y_te),
                pckh_mean_pose=pckh(mean_pose, y_te), pckh_ridge=pckh(ridge, y_te),
                pckh_ridge_shuffled=pckh(shuffled, y_te),
            ))
    return results


_FIELDS = ("mae_mean_pose", "mae_ridge", "mae_ridge_shuffled",
           "pckh_mean_pose", "pckh_ridge", "pckh_ridge_shuffled")


def summary(results: list[ProbeResult], probe: str) -> dict[str, float]:
    """Window-weighted means over the folds of one probe."""
    rows = [r for r in results if r.probe == probe]
    w = np.array([r.n_test for r in rows], float)
    return {f: float(np.average([getattr(r, f) for r in rows], weights=w)) for f in _FIELDS}


def report_markdown(results: list[ProbeResult], title: str, alpha: float) -> str:
    out = [f"# {title}\n",
           f"Linear probe: ridge (alpha {alpha:g} x mean feature variance, mel pooled "
           f"{MEL_POOL}:1) trained leave-one-subject-out; poses in normalised units "
           "(hip-spine = 1). `plain` = standardised network inputs; `excerpt` = mic features "
           "minus the training mean of the same music excerpt.\n"]
    for probe in sorted({r.probe for r in results}):
        rows = [r for r in results if r.probe == probe]
        out += [f"\n## Probe `{probe}`\n",
                "| held-out subject | windows | MAE mean pose | MAE ridge | MAE ridge, shuffled "
                "audio | PCKh@0.5 mean pose | PCKh@0.5 ridge | PCKh@0.5 shuffled |",
                "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            out.append(f"| {r.subject} | {r.n_test} | " + " | ".join(
                f"{getattr(r, f):.3f}" for f in _FIELDS) + " |")
        s = summary(results, probe)
        out.append(f"| **all** | {sum(r.n_test for r in rows)} | " + " | ".join(
            f"{s[f]:.3f}" for f in _FIELDS) + " |")
        out.append(f"\nMAE ratio to the mean pose: ridge {s['mae_ridge'] / s['mae_mean_pose']:.3f}, "
                   f"shuffled audio {s['mae_ridge_shuffled'] / s['mae_mean_pose']:.3f}")
    return "\n".join(out) + "\n"
