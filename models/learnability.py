"""Is pose recoverable from the features at all? A linear probe on unseen subjects.

Ridge regression from a window's standardised network inputs (mel pooled 4:1 to keep the
problem small) to its 12 x 63 normalised poses, trained leave-one-subject-out. Two
controls: the mean-pose predictor (the training split's mean pose), and the same ridge on
audio shuffled across windows (pairing destroyed, distribution kept). If the rig's physics
carry pose information, ridge beats the mean pose clearly and the shuffled ridge does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bgm2pose.models.metrics import mae, pckh
from bgm2pose.sensing.features import FeatureStats, network_inputs

MEL_POOL = 4


@dataclass
class ProbeResult:
    subject: str
    n_test: int
    mae_mean_pose: float
    mae_ridge: float
    mae_ridge_shuffled: float
    pckh_mean_pose: float
    pckh_ridge: float
    pckh_ridge_shuffled: float


def probe_inputs(base: np.ndarray, stats: FeatureStats) -> np.ndarray:
    """(B, 9, 12, 128) base features -> (B, D) standardised, mel-pooled, flattened."""
    x, m = network_inputs(base, stats)
    both = np.concatenate([x, m], axis=1)
    b, c, t, f = both.shape
    pooled = both.reshape(b, c, t, f // MEL_POOL, MEL_POOL).mean(axis=-1)
    return pooled.reshape(b, -1).astype(np.float64)


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form ridge on centred data; returns (x_mean, weights, y_mean)."""
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
    base: np.ndarray, poses: np.ndarray, subjects: np.ndarray, *, alpha: float = 0.1, seed: int = 0,
) -> list[ProbeResult]:
    """base (B, 9, 12, 128), poses (B, 12, 63) normalised, subjects (B,) names."""
    rng = np.random.default_rng(seed)
    results = []
    y_all = poses.reshape(len(poses), -1).astype(np.float64)
    for subject in sorted(set(subjects)):
        test = subjects == subject
        train = ~test
        stats = FeatureStats.fit(base[train])
        x_tr, x_te = probe_inputs(base[train], stats), probe_inputs(base[test], stats)
        y_tr, y_te = y_all[train], y_all[test]
        as_poses = poses.shape[1:]
        y_te = y_te.reshape(-1, *as_poses)
        mean_pose = np.broadcast_to(y_tr.mean(axis=0).reshape(as_poses), y_te.shape)
        ridge = predict_ridge(fit_ridge(x_tr, y_tr, alpha), x_te).reshape(y_te.shape)
        shuffled = predict_ridge(
            fit_ridge(x_tr[rng.permutation(len(x_tr))], y_tr, alpha),
            x_te[rng.permutation(len(x_te))],
        ).reshape(y_te.shape)
        results.append(ProbeResult(
            subject=str(subject), n_test=int(test.sum()),
            mae_mean_pose=mae(mean_pose, y_te), mae_ridge=mae(ridge, y_te),
            mae_ridge_shuffled=mae(shuffled, y_te),
            pckh_mean_pose=pckh(mean_pose, y_te), pckh_ridge=pckh(ridge, y_te),
            pckh_ridge_shuffled=pckh(shuffled, y_te),
        ))
    return results


def report_markdown(results: list[ProbeResult], title: str) -> str:
    rows = ["| held-out subject | windows | MAE mean pose | MAE ridge | MAE ridge, shuffled audio "
            "| PCKh@0.5 mean pose | PCKh@0.5 ridge | PCKh@0.5 shuffled |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        rows.append(f"| {r.subject} | {r.n_test} | {r.mae_mean_pose:.3f} | {r.mae_ridge:.3f} | "
                    f"{r.mae_ridge_shuffled:.3f} | {r.pckh_mean_pose:.3f} | {r.pckh_ridge:.3f} | "
                    f"{r.pckh_ridge_shuffled:.3f} |")
    w = np.array([r.n_test for r in results], float)

    def avg(field: str) -> float:
        return float(np.average([getattr(r, field) for r in results], weights=w))

    rows.append(f"| **all** | {int(w.sum())} | {avg('mae_mean_pose'):.3f} | {avg('mae_ridge'):.3f} | "
                f"{avg('mae_ridge_shuffled'):.3f} | {avg('pckh_mean_pose'):.3f} | "
                f"{avg('pckh_ridge'):.3f} | {avg('pckh_ridge_shuffled'):.3f} |")
    ratio = avg("mae_ridge") / avg("mae_mean_pose")
    return (f"# {title}\n\nLinear probe (ridge on standardised features, mel pooled {MEL_POOL}:1) "
            "trained leave-one-subject-out; poses in normalised units (hip-spine = 1).\n\n"
            + "\n".join(rows)
            + f"\n\nMAE ratio ridge / mean pose: {ratio:.3f}; shuffled audio / mean pose: "
            f"{avg('mae_ridge_shuffled') / avg('mae_mean_pose'):.3f}\n")
