"""Pose teachers: sensors that label the audio with 3D poses while the rig is taught (issue 15).

A teacher watches the person while the music plays and reports ``TeacherPoses``: poses in the
project's 21 joints (``models.skeleton``; metres, y up) with a confidence per joint, each
stamped with the audio sample clock, i.e. the recorded ring's sample index at which the pose
was true. ``PoseTeacher.poses(start, stop)`` gives those stamped in [start, stop).

Teachers: ``camera.CameraTeacher`` (MediaPipe Pose on a camera or a video file; the optional
``[camera]`` extra) and ``virtual.VirtualTeacher`` (the virtual rig's ground truth with
chosen noise and latency, for tests and the demo).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from bgm2pose.sensing.skeleton import N_JOINTS
from bgm2pose.sensing.errors import UserError


class TeacherError(UserError, RuntimeError):
    """A teacher that cannot be used (not installed, no camera, a bad setting)."""


@dataclass(frozen=True)
class TeacherPoses:
    """``sample[i]``: audio sample clock at which pose i was true (non-decreasing, may be
    fractional); ``joints[i]``: (21, 3) metres, y up; ``confidence[i]``: (21,) in [0, 1],
    0 for a joint the teacher did not see (its coordinates then mean nothing)."""

    sample: np.ndarray  # (F,) float64
    joints: np.ndarray  # (F, 21, 3) float32
    confidence: np.ndarray  # (F, 21) float32

    def __post_init__(self) -> None:
        sample = np.asarray(self.sample, np.float64)
        joints = np.asarray(self.joints, np.float32)
        confidence = np.asarray(self.confidence, np.float32)
        n = len(sample)
        if sample.shape != (n,) or joints.shape != (n, N_JOINTS, 3) or confidence.shape != (n, N_JOINTS):
            raise ValueError(f"teacher poses of shapes {sample.shape}, {joints.shape} and "
                             f"{confidence.shape} are not (F,), (F, 21, 3) and (F, 21)")
        if np.any(np.diff(sample) < 0) or not np.all(np.isfinite(sample)):
            raise ValueError("teacher pose stamps must be finite and in capture order")
        if np.any((confidence < 0) | (confidence > 1)) or not np.all(np.isfinite(confidence)):
            raise ValueError("teacher confidences must lie in [0, 1]")
        if not np.all(np.isfinite(joints[confidence > 0])):
            raise ValueError("a joint the teacher saw (confidence > 0) has NaN or inf coordinates")
        object.__setattr__(self, "sample", sample)
        object.__setattr__(self, "joints", joints)
        object.__setattr__(self, "confidence", confidence)

    def __len__(self) -> int:
        return len(self.sample)

    @classmethod
    def empty(cls) -> TeacherPoses:
        return cls(np.zeros(0), np.zeros((0, N_JOINTS, 3)), np.zeros((0, N_JOINTS)))


class PoseTeacher(ABC):
    """A source of ``TeacherPoses``; ``start`` before asking, ``stop`` when done."""

    name: str
    # Every pose stamped before (clock now - lag_s) is known: how long a recorder waits.
    lag_s: float

    def start(self) -> None:
        """Begin watching (a camera opens here)."""

    def stop(self) -> None:
        """Stop watching and release the device; safe to call twice."""

    @abstractmethod
    def poses(self, start_sample: int, stop_sample: int) -> TeacherPoses:
        """The poses stamped in audio samples [start_sample, stop_sample) known so far."""

    @abstractmethod
    def describe(self) -> dict:
        """The teacher and its settings, for the session's provenance."""

    def __enter__(self) -> PoseTeacher:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
