"""Teacher poses on the session's 120 fps pose frames, and the frames that cannot be targets.

A teacher's poses come at its own rate (a camera's 30 fps, with jitter and gaps), stamped on
the audio sample clock (``teacher``). A session's poses are 120 fps frames, frame f at sample
``f * frame_samples`` (``recorder``). ``resample`` interpolates each joint linearly between
the two teacher poses around a frame's time. A frame is masked, every joint NaN and confidence
0, when a joint's confidence (the lesser of its two neighbours') is below ``min_confidence``
or when, unless it falls on a teacher pose, no teacher pose lies within ``max_gap_s`` before
or after it (a camera that stalled
or a person who left the view is not interpolated across). Masked frames never become
training targets: ``models.windows`` keeps only windows whose frames are all finite.
"""

from __future__ import annotations

import numpy as np

from bgm2pose.sensing.skeleton import N_JOINTS
from bgm2pose.sensing.teacher import TeacherError, TeacherPoses

MIN_CONFIDENCE = 0.5
MAX_GAP_S = 0.2  # a few camera frames


def check_min_confidence(value: float) -> float:
    if not 0 <= value <= 1:
        raise TeacherError(f"minimum teacher confidence {value} is outside 0..1; MediaPipe's "
                           f"visibilities are probabilities, e.g. {MIN_CONFIDENCE}")
    return value


def resample(poses: TeacherPoses, first_frame: int, n_frames: int, frame_samples: int,
             sample_rate: int, min_confidence: float = MIN_CONFIDENCE,
             max_gap_s: float = MAX_GAP_S) -> tuple[np.ndarray, np.ndarray]:
    """(n_frames, 21, 3) float32 joints, NaN on masked frames, and (n_frames, 21) float32
    confidences of frames ``first_frame ..`` (see the module docstring)."""
    check_min_confidence(min_confidence)
    t = (first_frame + np.arange(n_frames)) * float(frame_samples)
    joints = np.full((n_frames, N_JOINTS, 3), np.nan, np.float32)
    confidence = np.zeros((n_frames, N_JOINTS), np.float32)
    s = poses.sample
    if len(s) < 2:
        return joints, confidence
    # Neighbours: the last pose at or before t and the next one after it.
    hi = np.clip(np.searchsorted(s, t, side="right"), 1, len(s) - 1)
    lo = hi - 1
    gap = max_gap_s * sample_rate
    on = t == s[lo]  # a frame at a teacher pose needs no second one
    near = (s[lo] <= t) & (t <= s[hi]) & (t - s[lo] <= gap) & ((s[hi] - t <= gap) | on)
    span = np.maximum(s[hi] - s[lo], 1e-9)
    w = np.where(on, 0.0, (t - s[lo]) / span)[:, None, None]
    between = (1 - w) * poses.joints[lo] + w * poses.joints[hi]
    conf = np.where(on[:, None], poses.confidence[lo],
                    np.minimum(poses.confidence[lo], poses.confidence[hi]))
    good = near & np.all(conf >= min_confidence, axis=1) & (conf.min(axis=1) > 0)
    joints[good] = between[good]
    confidence[good] = conf[good]
    return joints, confidence
