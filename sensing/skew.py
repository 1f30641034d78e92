"""A streaming fractional delay and clock-rate change: how a recording device's clock and
latency see a signal (used by the virtual rig to inject both against a known truth).

``StreamSkew(delay, ratio)`` turns an input stream x (input clock) into the output stream
    y[n] = x((n - delay) * ratio)
with x(t) the band-limited interpolation of x (windowed sinc, ``HALF_TAPS`` taps each side,
Kaiser window) and x = 0 before its first sample. ``ratio`` is input samples per output
sample: an output clock running slow by 80 ppm has ratio 1 + 80e-6. This is the aligner's
time base (``aligner``): output sample n pairs with input sample (n - delay) * ratio.

Streaming: ``process`` takes the next input block and returns every output sample that is
now computable and due, i.e. whose interpolation taps have all arrived and whose index is
below ``received / ratio`` (an output device cannot record ahead of the clock it shares with
the input). So the output count per call varies, like a real recorder's against a player's.

The kernel is tabulated (``OVERSAMPLE`` points per sample, linear interpolation between
them), which keeps the interpolation error near 1e-6 at a fraction of the cost of
evaluating sinc and Bessel functions per tap.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from bgm2pose.sensing.errors import UserError

HALF_TAPS = 32
OVERSAMPLE = 1024
KAISER_BETA = 8.0


class SkewError(UserError, ValueError):
    """A delay or clock ratio that cannot be applied."""


def _kernel_table() -> np.ndarray:
    x = np.arange(-HALF_TAPS * OVERSAMPLE, HALF_TAPS * OVERSAMPLE + 2) / OVERSAMPLE
    window = np.i0(KAISER_BETA * np.sqrt(np.clip(1 - (x / HALF_TAPS) ** 2, 0, 1)))
    return (np.sinc(x) * window / np.i0(KAISER_BETA)).astype(np.float64)


_TABLE = _kernel_table()


@numba.njit(cache=True, nogil=True)
def _interpolate(history, first_index, out, out_start, delay, ratio, table, half, over):
    """out[:, k] = x((out_start + k - delay) * ratio); history[:, i] is x[first_index + i]."""
    channels, count = out.shape
    size = history.shape[1]
    for k in range(count):
        t = (out_start + k - delay) * ratio
        base = math.floor(t)
        frac = t - base
        for c in range(channels):
            out[c, k] = 0.0
        for j in range(-half + 1, half + 1):
            i = base + j - first_index
            if i < 0 or i >= size:
                continue  # before the stream's first sample: silence
            pos = (j - frac + half) * over
            p = int(pos)
            w = table[p] + (pos - p) * (table[p + 1] - table[p])
            for c in range(channels):
                out[c, k] += w * history[c, i]


class StreamSkew:
    """See the module docstring."""

    def __init__(self, channels: int, delay: float, ratio: float = 1.0):
        if not (math.isfinite(delay) and delay >= 0):
            raise SkewError(f"delay {delay} is not a non-negative number of samples; "
                            "pass e.g. 480.5")
        if not (math.isfinite(ratio) and 0.5 < ratio < 2.0):
            raise SkewError(f"clock ratio {ratio} is outside (0.5, 2); pass e.g. 1 + 80e-6")
        self.channels = channels
        self.delay = float(delay)
        self.ratio = float(ratio)
        self.received = 0  # input samples so far
        self.emitted = 0  # output samples so far
        # An integer delay at equal clocks is an exact shift: no interpolation filter.
        self._exact = ratio == 1.0 and float(delay).is_integer()
        self._history = np.zeros((channels, 0), np.float32)
        self._first = 0  # input index of _history[:, 0]

    def process(self, x: np.ndarray) -> np.ndarray:
        """The output (channels, m) float32 that the input block x (channels, n) completes."""
        x = np.asarray(x, np.float32)
        self._history = np.concatenate([self._history, x], axis=1)
        self.received += x.shape[1]
        end = self._due()
        out = np.zeros((self.channels, max(0, end - self.emitted)), np.float32)
        if out.shape[1]:
            if self._exact:
                self._shift(out)
            else:
                _interpolate(self._history, self._first, out, self.emitted, self.delay,
                             self.ratio, _TABLE, HALF_TAPS, OVERSAMPLE)
            self.emitted = end
        self._trim()
        return out

    def _due(self) -> int:
        """One past the last output sample that can and may be produced now."""
        clock = math.floor(self.received / self.ratio)
        if self._exact:
            return clock
        # The newest output n whose last tap floor(t) + HALF_TAPS has arrived.
        ready = math.floor((self.received - HALF_TAPS - 1) / self.ratio + self.delay)
        return max(self.emitted, min(clock, ready + 1))

    def _shift(self, out: np.ndarray) -> None:
        src = np.arange(self.emitted, self.emitted + out.shape[1]) - int(self.delay) - self._first
        valid = src >= 0
        out[:, valid] = self._history[:, src[valid]]

    def _trim(self) -> None:
        """Drop input the next output samples no longer need."""
        keep_from = math.floor((self.emitted - self.delay) * self.ratio) - HALF_TAPS - 1
        drop = min(max(0, keep_from - self._first), self._history.shape[1])
        if drop:
            self._history = self._history[:, drop:]
            self._first += drop
