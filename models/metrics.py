"""Pose metrics of REFERENCE.md, in normalised units (hip-spine distance = 1).

Inputs are predicted and ground-truth poses of the same shape, (..., 63) or (..., 21, 3);
every leading axis (batch, time, ...) is pooled, so the figures do not depend on how frames
are grouped.

- RMSE and MAE: over all coordinates (x, y, z of every joint) of all frames.
- PCKh@t: the fraction of joints whose 3D error is strictly less than t * |Neck - Head| of
  the ground-truth frame. ``pckh(pred, gt, k)`` uses t = k * 0.5, so k = 1 is PCKh@0.5;
  results are keyed by t ("pckh@0.5", "pckh@1.0", ...). A ground-truth frame whose head
  has zero length passes no joint.
- Per part: the same over the joints of ``skeleton.PARTS`` (all, arm, leg, body), keyed
  "<part>/<metric>", e.g. "arm/mae".
"""

from __future__ import annotations

import numpy as np

from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.skeleton import INDEX, PARTS, SkeletonError, as_joints

PCKH_KS: tuple[int, ...] = (1, 2, 3, 4)


class MetricsError(UserError, ValueError):
    """Predicted and ground-truth poses that cannot be compared."""


def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 (..., 21, 3), checked to have the same shape."""
    try:
        p, g = as_joints(pred), as_joints(gt)
    except SkeletonError as exc:
        raise MetricsError(f"cannot compare poses: {exc}") from exc
    if p.shape != g.shape:
        raise MetricsError(
            f"predicted poses {np.shape(pred)} and ground truth {np.shape(gt)} hold different "
            "numbers of frames; pass arrays of the same shape"
        )
    return p.astype(np.float64, copy=False), g.astype(np.float64, copy=False)


def _joints(part: str | None) -> list[int] | slice:
    return slice(None) if part is None else list(PARTS[part])


def rmse(pred: np.ndarray, gt: np.ndarray, part: str | None = None) -> float:
    """Root mean squared error over all coordinates (of ``part``'s joints if given)."""
    p, g = _pair(pred, gt)
    j = _joints(part)
    return float(np.sqrt(np.mean((p[..., j, :] - g[..., j, :]) ** 2)))


def mae(pred: np.ndarray, gt: np.ndarray, part: str | None = None) -> float:
    """Mean absolute error over all coordinates (of ``part``'s joints if given)."""
    p, g = _pair(pred, gt)
    j = _joints(part)
    return float(np.mean(np.abs(p[..., j, :] - g[..., j, :])))


def mae_per_axis(pred: np.ndarray, gt: np.ndarray, part: str | None = None) -> np.ndarray:
    """(3,) mean absolute error of the x, y (up) and z coordinates separately: which
    directions of movement a predictor recovers."""
    p, g = _pair(pred, gt)
    j = _joints(part)
    return np.abs(p[..., j, :] - g[..., j, :]).reshape(-1, 3).mean(axis=0)


def pckh(pred: np.ndarray, gt: np.ndarray, k: float = 1, part: str | None = None) -> float:
    """Fraction of joints with 3D error < k * 0.5 * |Neck - Head| of the ground-truth frame."""
    p, g = _pair(pred, gt)
    j = _joints(part)
    head = np.linalg.norm(g[..., INDEX["Neck"], :] - g[..., INDEX["Head"], :], axis=-1)
    err = np.linalg.norm(p[..., j, :] - g[..., j, :], axis=-1)
    return float(np.mean(err < k * 0.5 * head[..., None]))


def _key(k: float) -> str:
    t = k * 0.5
    return f"pckh@{t:.1f}" if round(t, 1) == t else f"pckh@{t:g}"


def pck_curve(
    pred: np.ndarray, gt: np.ndarray, ks: tuple[float, ...] = PCKH_KS
) -> dict[str, float]:
    """PCKh at thresholds k * 0.5 for each k, keyed "pckh@0.5", "pckh@1.0", ..."""
    return {_key(k): pckh(pred, gt, k) for k in ks}


def evaluate(pred: np.ndarray, gt: np.ndarray, parts: bool = True) -> dict[str, float]:
    """RMSE, MAE and the PCKh curve overall; with ``parts``, RMSE, MAE and PCKh@0.5 for each
    part as "<part>/rmse", "<part>/mae", "<part>/pckh@0.5"."""
    p, g = _pair(pred, gt)
    out = {"rmse": rmse(p, g), "mae": mae(p, g), **pck_curve(p, g)}
    if parts:
        for name in PARTS:
            out[f"{name}/rmse"] = rmse(p, g, name)
            out[f"{name}/mae"] = mae(p, g, name)
            out[f"{name}/{_key(1)}"] = pckh(p, g, 1, name)
    return out
