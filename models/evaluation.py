"""A model's test metrics next to the mean-pose predictor's, as a dict and as markdown.

The mean-pose predictor answers every frame with the training split's mean pose (63 values,
averaged over windows and frames); a model that does not beat it has learned nothing about
the person from the audio. Metrics are those of ``metrics.evaluate`` (normalised units).
"""

from __future__ import annotations

import numpy as np

from bgm2pose.models.metrics import evaluate
from bgm2pose.sensing.skeleton import PARTS


def mean_pose_prediction(mean_pose: np.ndarray, n: int) -> np.ndarray:
    """(n, 12, 63): the mean pose in every frame of n windows."""
    return np.broadcast_to(np.asarray(mean_pose, np.float32).reshape(1, 1, 63), (n, 12, 63))


def compare(pred: np.ndarray, truth: np.ndarray, mean_pose: np.ndarray) -> dict[str, dict[str, float]]:
    """{"model": metrics, "mean_pose": metrics} for predictions and truth (N, 12, 63)."""
    truth = np.asarray(truth).reshape(len(truth), 12, 63)
    return {"model": evaluate(np.asarray(pred).reshape(truth.shape), truth),
            "mean_pose": evaluate(mean_pose_prediction(mean_pose, len(truth)), truth)}


def markdown(results: dict[str, dict[str, float]]) -> str:
    """Overall and per-part table of ``compare``'s results, one row per predictor."""
    names = list(results)
    lines = ["| predictor | RMSE | MAE | " + " | ".join(k.upper().replace("PCKH", "PCKh") for k in
                                                   results[names[0]] if k.startswith("pckh")) + " |"]
    lines.append("|---" * (len(lines[0].split("|")) - 2) + "|")
    for name in names:
        r = results[name]
        pck = [f"{v:.3f}" for k, v in r.items() if k.startswith("pckh")]
        lines.append(f"| {name} | {r['rmse']:.3f} | {r['mae']:.3f} | " + " | ".join(pck) + " |")
    lines += ["", "| predictor | part | RMSE | MAE | PCKh@0.5 |", "|---|---|---|---|---|"]
    for name in names:
        for part in PARTS:
            r = results[name]
            lines.append(f"| {name} | {part} | {r[f'{part}/rmse']:.3f} | {r[f'{part}/mae']:.3f} | "
                         f"{r[f'{part}/pckh@0.5']:.3f} |")
    return "\n".join(lines) + "\n"
