"""The live estimator: one worker thread from aligned windows to published poses.

Per window (``Aligner.next_window``): the features the model reads (``inputs.WindowFeatures``:
base features, channel features carried from window to window, or both) ->
``PoseModel.predict`` -> output policy -> optional exponential smoothing -> ``PoseFeed``.
Windows the aligner flags (xrun, track change, underflow, pause) are counted, not estimated.

Time base: a window covers recorded samples [end - 28800, end). Its 12 poses sit at 12
evenly spaced times from its first pose frame to its last (120 fps frames, as in
``models.windows``): ``times = start / rate + linspace(0, (28800 - rate / 120) / rate, 12)``
seconds on the recorded clock. The ground truth of the virtual rig is interpolated to the
same times with ``windows.window_poses`` and normalised, so live MAE / PCKh@0.5 are computed
on exactly what training and evaluation compare. The mean-pose predictor's MAE (the model
card's ``mean_pose``, the training poses' average) is pooled over the same windows, so the
two figures can be read side by side as the card's test figures are.

``use_model`` swaps the model while the worker runs (the app's Teach workflow): it takes the
new one between windows, and the live MAE / PCKh restart with it.

Policies: "latest" publishes each window's 12 poses as they are; "average" publishes, at the
window's 12 times, the mean of every recent window's estimate covering that time (each
window's track linearly interpolated to the time). Smoothing ``s`` in [0, 1): the published
track is ``s * previous published (interpolated to the new times, held at its ends) +
(1 - s) * new``. Live MAE/PCKh are of the published poses.

End-to-end latency: the worker samples (recorded ``end``, ``time.monotonic()``) each time it
looks for a window, never touching the audio callback. Sample n is taken to have been
captured at ``t - (end - 1 - n) / rate`` for the earliest such observation with end > n
(samples arrive in real time, so the newest one had just arrived); the device's own input
latency before its callback is not seen. In fast (non-real-time) runs the figure is
meaningless.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np
from bgm2pose.models.inference import PoseModel
from bgm2pose.models.inputs import WindowFeatures
from bgm2pose.models.metrics import mae, pckh
from bgm2pose.models.posefeed import LiveStats, PoseFeed, PoseUpdate
from bgm2pose.sensing.skeleton import normalise
from bgm2pose.models.windows import window_poses
from bgm2pose.sensing.aligner import AlignedWindow, Aligner
from bgm2pose.sensing.backends import AudioBackend
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.features import FRAMES_PER_WINDOW
from bgm2pose.sensing.ring import RingError
from bgm2pose.sensing.sim.render import POSE_FPS

POLICIES = ("latest", "average")
_RECENT = 64  # windows the medians and the rate are taken over
_POLL_S = 0.002  # idle wait between looks for a new window (a 50 ms hop: ~25 looks)


class EstimatorError(UserError, ValueError):
    """An estimator setting that cannot be used."""


def pose_times(start_sample: int, window: int, sample_rate: int) -> np.ndarray:
    """Capture times (s) of a window's 12 poses: its first to its last pose frame."""
    frame = sample_rate / POSE_FPS
    return start_sample / sample_rate + np.linspace(
        0.0, (window - frame) / sample_rate, FRAMES_PER_WINDOW)


def interpolate_track(times: np.ndarray, poses: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Poses (T, 21, 3) given at increasing ``times``, linearly interpolated at ``at``
    (held at the first/last pose outside the track)."""
    i = np.clip(np.searchsorted(times, at, side="right") - 1, 0, len(times) - 2)
    frac = np.clip((at - times[i]) / (times[i + 1] - times[i]), 0.0, 1.0)[:, None, None]
    return (1 - frac) * poses[i] + frac * poses[i + 1]


def overlap_average(tracks: list[tuple[np.ndarray, np.ndarray]], at: np.ndarray) -> np.ndarray:
    """Mean over the (times, poses) tracks covering each time in ``at``; a time no track
    covers (cannot happen for the newest track's own times) keeps the newest estimate."""
    total = np.zeros((len(at),) + tracks[-1][1].shape[1:])
    count = np.zeros(len(at))
    for times, poses in tracks:
        inside = (at >= times[0] - 1e-9) & (at <= times[-1] + 1e-9)
        if inside.any():
            total[inside] += interpolate_track(times, poses, at[inside])
            count[inside] += 1
    newest = interpolate_track(*tracks[-1], at)
    return np.where(count[:, None, None] > 0, total / np.maximum(count, 1)[:, None, None],
                    newest)


class CaptureClock:
    """Wall-clock capture time of recorded samples from (end, monotonic) observations."""

    def __init__(self, sample_rate: int, keep: int = 4096):
        self.sample_rate = sample_rate
        self._obs: deque[tuple[int, float]] = deque(maxlen=keep)

    def observe(self, end: int, t: float) -> None:
        if not self._obs or end > self._obs[-1][0]:
            self._obs.append((end, t))

    def captured(self, n: int) -> float | None:
        """Monotonic time sample ``n`` was captured, or None if no observation covers it."""
        for end, t in self._obs:  # oldest first: the earliest observation that covers n
            if end > n:
                return t - (end - 1 - n) / self.sample_rate
        return None

    def forget_before(self, n: int) -> None:
        """Drop observations that only cover samples before ``n`` (keeps the search short)."""
        while len(self._obs) > 1 and self._obs[1][0] <= n:
            self._obs.popleft()


class Estimator:
    """The worker thread; see the module docstring. ``progress`` is the end sample of the
    last window handled (estimated, flagged or skipped), for pacing a fast virtual rig."""

    def __init__(self, model: PoseModel, backend: AudioBackend, aligner: Aligner,
                 feed: PoseFeed, *, policy: str = "latest", smoothing: float = 0.0,
                 drift_ppm: Callable[[], float | None] | None = None):
        if policy not in POLICIES:
            raise EstimatorError(f"output policy {policy!r} is unknown; use one of "
                                 f"{', '.join(POLICIES)}")
        if not 0.0 <= smoothing < 1.0:
            raise EstimatorError(f"smoothing {smoothing} is outside [0, 1); use 0 for none, "
                                 "e.g. 0.5 for some")
        self.model = model
        self._features = WindowFeatures(model.inputs)
        self._next_model: PoseModel | None = None
        self._swap = threading.Lock()
        self.backend = backend
        self.aligner = aligner
        self.feed = feed
        self.policy = policy
        self.smoothing = smoothing
        self.drift_ppm = drift_ppm
        self.clock = CaptureClock(backend.sample_rate)
        self.progress = 0
        self._progressed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._finish = threading.Event()
        self._tracks: deque[tuple[np.ndarray, np.ndarray]] = deque(
            maxlen=-(-aligner.window // aligner.hop))
        self._published: tuple[np.ndarray, np.ndarray] | None = None
        self._seq = 0
        self._windows = 0
        self._flagged = 0
        self._features_ms: deque[float] = deque(maxlen=_RECENT)
        self._inference_ms: deque[float] = deque(maxlen=_RECENT)
        self._e2e_ms: deque[float] = deque(maxlen=_RECENT)
        self._done_at: deque[float] = deque(maxlen=_RECENT)
        self._restart_accuracy()
        self.error: str | None = None

    def use_model(self, model: PoseModel) -> None:
        """Estimate with ``model`` from the next window on, without stopping (thread-safe).
        The worker swaps between windows, so no window mixes two models; the live accuracy
        figures restart with it, since a sum over both models would describe neither."""
        with self._swap:
            self._next_model = model

    def _take_next_model(self) -> None:
        with self._swap:
            model, self._next_model = self._next_model, None
        if model is None:
            return
        if model.inputs != self.model.inputs:
            self._features = WindowFeatures(model.inputs)
        self.model = model
        self._restart_accuracy()

    def _restart_accuracy(self) -> None:
        """Running sums over published coordinates / joints, for ``self.model``."""
        self._abs_error = 0.0
        self._coords = 0
        self._hits = 0.0
        self._joints = 0
        # The card's mean pose as PoseModel checked it (21 x 3 finite numbers), per joint.
        m = self.model.mean_pose
        self._mean_pose = None if m is None else m.reshape(-1, 3)
        self._mean_pose_error = 0.0  # running sum, over the same coordinates as _abs_error

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise EstimatorError("the estimator is already started; call start() once")
        self._thread = threading.Thread(target=self._run, name="estimator", daemon=True)
        self._thread.start()

    def finish(self, timeout: float = 10.0) -> None:
        """Estimate the windows still complete (the audio has stopped), then stop."""
        self._finish.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.stop()

    def stop(self) -> None:
        """Stop now; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._progressed:
            self._progressed.notify_all()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_for_progress(self, end: int, timeout: float) -> bool:
        """Block until ``progress >= end`` (or stopped, or timeout); True if reached."""
        with self._progressed:
            return self._progressed.wait_for(
                lambda: self.progress >= end or self._stop.is_set(), timeout)

    # -- worker ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                # Whether the audio had ended *before* this look: then the look saw all of it.
                ended = self._finish.is_set() or not self.backend.running
                self.clock.observe(self.backend.recorded.end, time.monotonic())
                window = self.aligner.next_window()
                if window is None:
                    if ended:
                        break
                    time.sleep(_POLL_S)
                    continue
                self._handle(window)
                with self._progressed:
                    self.progress = window.end_sample
                    self._progressed.notify_all()
        except Exception as exc:  # a bug or a broken model: say so in the stats, do not hang
            self.error = f"the estimator stopped: {type(exc).__name__}: {exc}"
        self.feed.update_stats(self.stats())

    def _handle(self, window: AlignedWindow) -> None:
        if window.flags:
            self._flagged += 1
            return
        self._take_next_model()
        t0 = time.perf_counter()
        base = self._features(window.mic, window.music, window.end_sample)
        t1 = time.perf_counter()
        estimate = self.model.predict(base)
        t2 = time.perf_counter()
        start = window.end_sample - self.aligner.window
        times = pose_times(start, self.aligner.window, self.aligner.sample_rate)
        poses = self._apply_policy(times, estimate.astype(np.float64))
        truth = self._truth(start)
        if truth is not None:
            self._abs_error += mae(poses, truth) * poses.size
            self._coords += poses.size
            self._hits += pckh(poses, truth) * poses.shape[0] * poses.shape[1]
            self._joints += poses.shape[0] * poses.shape[1]
            if self._mean_pose is not None:
                self._mean_pose_error += mae(np.broadcast_to(self._mean_pose, truth.shape),
                                             truth) * truth.size
        self._windows += 1
        self._features_ms.append((t1 - t0) * 1e3)
        self._inference_ms.append((t2 - t1) * 1e3)
        captured = self.clock.captured(window.end_sample - 1)
        self.clock.forget_before(window.end_sample)
        published = time.monotonic()
        if captured is not None:
            self._e2e_ms.append((published - captured) * 1e3)
        self._done_at.append(published)
        self._seq += 1
        update = PoseUpdate(seq=self._seq, poses=poses.astype(np.float32), times=times,
                            truth=None if truth is None else truth.astype(np.float32),
                            capture_time=window.capture_time, published=published)
        self.feed.publish(update, self.stats())

    def _apply_policy(self, times: np.ndarray, estimate: np.ndarray) -> np.ndarray:
        self._tracks.append((times, estimate))
        poses = estimate if self.policy == "latest" else overlap_average(list(self._tracks), times)
        if self.smoothing > 0 and self._published is not None:
            previous = interpolate_track(*self._published, times)
            poses = self.smoothing * previous + (1 - self.smoothing) * poses
        self._published = (times, poses)
        return poses

    def _truth(self, start: int) -> np.ndarray | None:
        """Normalised ground truth at the window's 12 pose times (virtual rig), else None."""
        frame = self.aligner.sample_rate // POSE_FPS
        first = start // frame
        per_window = self.aligner.window / frame
        need = int(np.ceil(start / frame - first + per_window))
        try:
            frames = self.backend.ground_truth(first * frame, need * frame)
        except RingError:  # not rendered yet or already forgotten: no figure for this one
            return None
        if frames is None or len(frames) < need:
            return None
        offset = np.array([start / frame - first])
        return normalise(window_poses(frames, offset, per_window)[0])

    # -- statistics -----------------------------------------------------------------------

    def stats(self) -> LiveStats:
        backend = self.backend.stats()
        done = self._done_at
        rate = (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 and done[-1] > done[0] \
            else 0.0
        status = self.error or backend.error or ""
        return LiveStats(
            windows=self._windows, windows_per_s=rate,
            features_ms=_median(self._features_ms), inference_ms=_median(self._inference_ms),
            e2e_ms=_median(self._e2e_ms), xruns=backend.xruns,
            dropped=self.aligner.dropped + self.aligner.unavailable, flagged=self._flagged,
            latency_samples=self.aligner.latency,
            drift_ppm=None if self.drift_ppm is None else self.drift_ppm(),
            mae=self._abs_error / self._coords if self._coords else None,
            pckh=self._hits / self._joints if self._joints else None,
            mean_pose_mae=(self._mean_pose_error / self._coords
                           if self._coords and self._mean_pose is not None else None),
            backend=self.backend.name, status=status)


def _median(values: deque[float]) -> float:
    return statistics.median(values) if values else 0.0
