"""The hand-over point between the live estimator and whoever shows or forwards its poses.

One thread (the estimator) publishes a ``PoseUpdate`` with its ``LiveStats``; any number of
readers (the GUI timer, ``bgm2pose run``) take the latest pair or the recent history. The
lock is held only to swap references, never while computing, so readers never wait long.

Conventions: poses are (12, 21, 3) float32 normalised per frame (hips origin, hip-spine
length 1); ``times`` and ``capture_time`` are seconds on the recorded clock (recorded sample
index / 48000); ``published`` is ``time.monotonic()``.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

HISTORY = 256  # updates kept for history(): ~13 s at a 50 ms hop


@dataclass(frozen=True)
class LiveStats:
    windows: int  # windows estimated so far
    windows_per_s: float
    features_ms: float  # median of recent windows
    inference_ms: float  # median of recent windows
    e2e_ms: float  # median: capture of a window's last sample -> its poses published
    xruns: int  # backend device-side losses
    dropped: int  # windows the worker skipped (fell behind) + unavailable
    flagged: int  # windows marked (xrun, track change) and not used
    latency_samples: float  # latency the aligner uses now
    drift_ppm: float | None  # clock drift estimate (split devices), None if not tracked
    mae: float | None  # virtual rig only: running MAE vs ground truth (normalised units)
    pckh: float | None  # virtual rig only: running PCKh@0.5
    # virtual rig only, with a model card that has "mean_pose": the mean-pose predictor's
    # running MAE on the same windows as ``mae``, the figure the model has to beat
    mean_pose_mae: float | None
    backend: str  # backend name
    status: str  # "" or a one-line problem (device gone, ...)

    def mae_text(self) -> str | None:
        """"MAE 0.561 (mean pose 0.654)": the live MAE with the mean-pose predictor's on the
        same windows beside it, the bar it must beat; None without ground truth."""
        if self.mae is None:
            return None
        bar = "" if self.mean_pose_mae is None else f" (mean pose {self.mean_pose_mae:.3f})"
        return f"MAE {self.mae:.3f}{bar}"


@dataclass(frozen=True)
class PoseUpdate:
    seq: int  # increases by 1 per publish
    poses: np.ndarray  # (12, 21, 3) float32 normalised estimate (after policy/smoothing)
    times: np.ndarray  # (12,) float64 capture time in seconds (recorded clock) of each pose
    truth: np.ndarray | None  # (12, 21, 3) normalised ground truth (virtual rig), else None
    capture_time: float  # seconds, recorded clock, of the window's last sample
    published: float  # time.monotonic() at publish


class PoseFeed:
    """Latest update + stats and a bounded history; thread-safe, single publisher."""

    def __init__(self, history: int = HISTORY) -> None:
        self._lock = threading.Lock()
        self._latest: PoseUpdate | None = None
        self._stats: LiveStats | None = None
        self._history: deque[PoseUpdate] = deque(maxlen=history)

    def publish(self, update: PoseUpdate, stats: LiveStats) -> None:
        with self._lock:
            self._latest = update
            self._stats = stats
            self._history.append(update)

    def update_stats(self, stats: LiveStats) -> None:
        """Replace the stats without a new pose (e.g. a status line when the device is gone)."""
        with self._lock:
            self._stats = stats

    def latest(self) -> tuple[PoseUpdate | None, LiveStats | None]:
        with self._lock:
            return self._latest, self._stats

    def history(self, n: int) -> list[PoseUpdate]:
        """The last ``n`` updates (at most the kept history), oldest first."""
        with self._lock:
            items = list(self._history)
        return items[-n:] if n > 0 else []
