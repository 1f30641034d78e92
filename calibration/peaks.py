"""Peaks of band-limited signals (impulse responses): the direct path's, to a sub-sample.

The signal between samples is its band-limited (sinc) interpolation from the ``radius``
samples on either side of the peak, Hann-tapered so that the far samples' sinc tails do not
bias the estimate. The peak is where that interpolant's derivative is zero, found by Newton
steps from the best of a fine grid; a signal symmetric about its peak (a zero-phase pulse)
gives the peak without bias at any fractional position.
"""

from __future__ import annotations

import numpy as np

RADIUS = 48
GRID = 16  # coarse search points per sample before the Newton steps


def _derivatives(segment: np.ndarray, offsets: np.ndarray, t: np.ndarray):
    """Value, first and second derivative of sum_k segment[k] sinc(t - offsets[k])."""
    x = t[:, None] - offsets[None, :]
    px = np.pi * x
    small = np.abs(x) < 1e-6
    safe = np.where(small, 1.0, px)
    s, c = np.sin(safe), np.cos(safe)
    f = np.where(small, 1.0, s / safe)
    d1 = np.where(small, 0.0, np.pi * (c / safe - s / safe ** 2))
    d2 = np.where(small, -np.pi ** 2 / 3,
                  np.pi ** 2 * (-s / safe - 2 * c / safe ** 2 + 2 * s / safe ** 3))
    return f @ segment, d1 @ segment, d2 @ segment


def subsample_peak(signal: np.ndarray, index: int, radius: int = RADIUS) -> float:
    """Position (in samples of ``signal``) of the extremum next to sample ``index`` (a local
    maximum of |signal|); its sign is the sign of ``signal[index]``."""
    signal = np.asarray(signal, np.float64)
    lo, hi = max(0, index - radius), min(signal.size, index + radius + 1)
    offsets = np.arange(lo, hi) - index
    taper = 0.5 + 0.5 * np.cos(np.pi * offsets / (radius + 1))
    segment = signal[lo:hi] * taper * np.sign(signal[index] or 1.0)
    grid = np.linspace(-1, 1, 2 * GRID + 1)
    t = grid[np.argmax(_derivatives(segment, offsets, grid)[0])]
    for _ in range(6):
        _, d1, d2 = _derivatives(segment, offsets, np.array([t]))
        if d2[0] >= 0:  # not a maximum here: keep the grid's best
            break
        step = float(np.clip(-d1[0] / d2[0], -0.25, 0.25))
        t += step
        if abs(step) < 1e-6:
            break
    return index + float(t)


def first_strong_peak(signal: np.ndarray, fraction: float = 0.3, lobe: int = 8) -> int:
    """Index of the first lobe of |signal| reaching ``fraction`` of its largest value: the
    direct path of an impulse response, since nothing arrives before it while a reflection
    may be as strong (the pulse's own side lobes stay below 0.3)."""
    mag = np.abs(np.asarray(signal))
    first = int(np.argmax(mag >= fraction * mag.max()))
    return first + int(np.argmax(mag[first:first + lobe]))
