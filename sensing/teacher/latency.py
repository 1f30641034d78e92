"""Measuring a camera teacher's latency with claps: the mic hears the hands meet, the camera
sees them meet, and the difference is how late the camera's poses are stamped.

Record a session with ``--teacher camera`` while the person, in view, claps a few times a
second apart (the latency setting the poses were stamped with is added back). In ``mic.flac`` a clap is a sharp onset of the W channel: the
envelope (|W| smoothed over 1 ms) rising above ``ONSET_RATIO`` times its median, at least
``MIN_SPACING_S`` after the last. In ``poses.npy`` it is a minimum of the distance between the
hands below ``MEET_M``, placed between frames by a parabola through the three frames around
it. Each heard clap pairs with the first seen minimum within ``MAX_LATENCY_S`` after it; the
latency is the median of the pairs' differences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bgm2pose.sensing.skeleton import INDEX
from bgm2pose.sensing.teacher import TeacherError

ONSET_RATIO = 30.0
MIN_SPACING_S = 0.3
MEET_M = 0.15  # hands closer than this (joint centres at the wrists) have met
MAX_LATENCY_S = 0.5
MIN_CLAPS = 3


@dataclass(frozen=True)
class LatencyMeasurement:
    latency_s: float  # median of the claps' camera-minus-audio times
    spread_s: float  # median absolute deviation of them
    claps: int  # pairs used
    heard: int  # claps in the audio
    seen: int  # hands meeting in the poses


def heard_claps(w: np.ndarray, sample_rate: int) -> np.ndarray:
    """Onset times (s) of claps in the omni channel ``w``."""
    width = max(1, sample_rate // 1000)
    envelope = np.convolve(np.abs(w), np.ones(width) / width, mode="same")
    loud = envelope > ONSET_RATIO * max(float(np.median(envelope)), 1e-9)
    onsets = np.flatnonzero(loud[1:] & ~loud[:-1]) + 1
    times: list[float] = []
    for n in onsets:
        if not times or n / sample_rate - times[-1] >= MIN_SPACING_S:
            times.append(n / sample_rate)
    return np.array(times)


def seen_claps(poses: np.ndarray, pose_fps: float, offset_s: float = 0.0) -> np.ndarray:
    """Times (s) at which the hands meet in (F, 21, 3) poses (NaN frames are not seen)."""
    d = np.linalg.norm(poses[:, INDEX["LeftHand"]] - poses[:, INDEX["RightHand"]], axis=-1)
    d = np.where(np.isfinite(d), d, np.inf)
    k = np.flatnonzero((d[1:-1] < MEET_M) & (d[1:-1] <= d[:-2]) & (d[1:-1] < d[2:])) + 1
    times: list[float] = []
    for i in k:
        a, b, c = d[i - 1], d[i], d[i + 1]
        curve = a - 2 * b + c
        shift = 0.5 * (a - c) / curve if np.isfinite(curve) and curve > 0 else 0.0
        t = (i + shift) / pose_fps + offset_s
        if not times or t - times[-1] >= MIN_SPACING_S:
            times.append(t)
    return np.array(times)


def measure(heard: np.ndarray, seen: np.ndarray) -> LatencyMeasurement:
    """Pair each heard clap with the first seen one after it (within ``MAX_LATENCY_S``)."""
    later = [seen[(seen >= t) & (seen <= t + MAX_LATENCY_S)] for t in heard]
    delays = np.array([s[0] - t for s, t in zip(later, heard) if len(s)])
    if len(delays) < MIN_CLAPS:
        raise TeacherError(
            f"{len(heard)} claps were heard and {len(seen)} seen, and only {len(delays)} of them "
            f"pair up; record again with the person clapping at least {MIN_CLAPS} times, a "
            "second apart, hands in view")
    latency = float(np.median(delays))
    return LatencyMeasurement(latency, float(np.median(np.abs(delays - latency))), len(delays),
                              len(heard), len(seen))
