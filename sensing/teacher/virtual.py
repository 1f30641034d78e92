"""The virtual rig's ground truth as a teacher, with a camera's flaws: noise, latency, frame rate.

``truth(start_sample, n)`` is ``AudioBackend.ground_truth``: the 120 fps poses whose time lies
in recorded samples [start_sample, start_sample + n), pose frame f at sample f * rate / 120.
The teacher sees every ``120 / fps``-th of them. A camera pipeline reports a pose ``latency_s``
after it was true and stamps it with its arrival less the latency it was told
(``correction_s``, the camera latency setting): so the pose of truth frame f is stamped at
f * rate / 120 + (latency_s - correction_s) * rate, true when the setting is right. Noise is
Gaussian on every coordinate, ``noise_cm`` the RMS 3D error of a joint, drawn per frame from
(seed, frame) so asking twice for a frame gives the same pose. Every joint is seen
(confidence 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from bgm2pose.sensing.skeleton import N_JOINTS
from bgm2pose.sensing.teacher import PoseTeacher, TeacherError, TeacherPoses

TRUTH_FPS = 120


class VirtualTeacher(PoseTeacher):
    name = "virtual"

    def __init__(self, truth: Callable[[int, int], np.ndarray | None], sample_rate: int = 48_000,
                 noise_cm: float = 2.0, latency_s: float = 0.0, correction_s: float = 0.0,
                 fps: int = 30, seed: int = 0):
        if sample_rate % TRUTH_FPS:
            raise TeacherError(f"sample rate {sample_rate} Hz is not a whole number of samples "
                               f"per {TRUTH_FPS} fps pose frame; use 48000 Hz")
        if not (isinstance(fps, int) and fps > 0 and TRUTH_FPS % fps == 0):
            raise TeacherError(f"teacher frame rate {fps} fps does not divide the rig's "
                               f"{TRUTH_FPS} fps; use one of 10, 15, 20, 24, 30, 40, 60, 120")
        if not 0 <= noise_cm <= 50:
            raise TeacherError(f"teacher noise {noise_cm} cm is outside 0..50 cm; a camera "
                               "teacher errs by a few cm, so use e.g. 3")
        for name, value in (("latency", latency_s), ("latency setting", correction_s)):
            if not 0 <= value <= 2:
                raise TeacherError(f"teacher {name} {value} s is outside 0..2 s; a camera "
                                   "reports a pose after it happened, typically 0.05-0.2 s")
        self.truth = truth
        self.sample_rate = sample_rate
        self.noise_cm = noise_cm
        self.latency_s = latency_s
        self.correction_s = correction_s
        # Poses of a time are all known this long after it (the recorder waits for them).
        self.lag_s = max(0.0, latency_s - correction_s)
        self.step = TRUTH_FPS // fps  # truth frames per teacher frame
        self.seed = seed
        self._frame_samples = sample_rate // TRUTH_FPS

    def poses(self, start_sample: int, stop_sample: int) -> TeacherPoses:
        period = self.step * self._frame_samples
        delay = (self.latency_s - self.correction_s) * self.sample_rate
        first = max(0, math.ceil((start_sample - delay) / period))
        stop = max(first, math.ceil((stop_sample - delay) / period))
        if stop == first:
            return TeacherPoses.empty()
        truth = self.truth(first * period, (stop - first - 1) * period + 1)
        if truth is None:  # a rig without a person: nothing to see
            return TeacherPoses.empty()
        joints = np.array(truth[:: self.step], np.float64)
        sigma = self.noise_cm / 100 / math.sqrt(3)
        for i, k in enumerate(range(first, stop)):
            joints[i] += np.random.default_rng([self.seed, k]).normal(0.0, sigma, (N_JOINTS, 3))
        frames = np.arange(first, stop)
        return TeacherPoses(frames * period + delay, joints, np.ones((len(frames), N_JOINTS)))

    def describe(self) -> dict:
        return {"name": self.name, "noise_cm": self.noise_cm, "latency_s": self.latency_s,
                "latency_setting_s": self.correction_s,
                "fps": TRUTH_FPS // self.step, "seed": self.seed}
