"""Pairs the recorded ring with the reference ring into aligned windows (worker thread).

Time base (as in ``session``): recorded sample n was captured while reference sample
``(n - latency) * clock_ratio`` was being played. ``latency`` is in samples and may be
fractional; the pairing rounds to the nearest sample (half up), since fractional latency is
refined elsewhere. ``clock_ratio`` is for split devices whose clocks differ (reference samples
per recorded sample); a window's reference samples are contiguous, placed so that the window's
centre pairs exactly as the formula says, which keeps the in-window drift error at half of
what anchoring at the window's start would give.

Windows end on the hop grid: a window covers recorded samples [end - window, end) with
``end`` a multiple of ``hop``. ``next_window`` returns the newest complete window not yet
returned; a window is complete once both its recorded and its reference samples are written.
If the worker fell behind, the windows in between are skipped and counted in ``dropped``.

A window whose reference samples can never exist (before the start of playback, or already
overwritten in the reference ring) or whose recorded samples were overwritten during the read
is not returned: ``next_window`` returns None and counts it in ``unavailable``. Events that
fall inside a window (in either ring's ``EventLog``) are returned as its ``flags``: such
windows are delivered, marked, for the consumer to discard or down-weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.ring import RingError, SampleRing

SAMPLE_RATE = 48_000
WINDOW = 28_800  # 0.6 s
HOP = 2_400  # 50 ms


class AlignerError(UserError, ValueError):
    """Aligner settings that cannot be used (window, hop, latency, clock ratio)."""


@dataclass
class AlignedWindow:
    mic: np.ndarray  # (recorded channels, window) float32, recorded samples [end - window, end)
    music: np.ndarray  # (reference channels, window) float32, from reference_start
    end_sample: int  # recorded index one past the window's last sample
    capture_time: float  # end_sample / sample_rate, seconds on the recorded clock
    reference_start: int  # reference index of music[:, 0]
    flags: set[str] = field(default_factory=set)  # e.g. {"xrun"}, {"track_change"}


class Aligner:
    def __init__(self, recorded: SampleRing, reference: SampleRing, latency: float,
                 window: int = WINDOW, hop: int = HOP, sample_rate: int = SAMPLE_RATE,
                 clock_ratio: float = 1.0):
        if window < 1 or hop < 1:
            raise AlignerError(f"window and hop must be positive, got {window} and {hop}")
        if window > recorded.capacity or window > reference.capacity:
            raise AlignerError(
                f"a {window}-sample window does not fit rings of {recorded.capacity} and "
                f"{reference.capacity} samples; make the rings longer than the window"
            )
        self.recorded = recorded
        self.reference = reference
        self.window = window
        self.hop = hop
        self.sample_rate = sample_rate
        self.latency = 0.0
        self.clock_ratio = 1.0
        self.set_latency(latency)
        self.set_clock_ratio(clock_ratio)
        # The first window ends on the first grid point at or after `window`.
        self._first_end = -(-window // hop) * hop
        # Windows that completed before the aligner existed are neither returned nor dropped.
        self._last_end = max(self._first_end - hop, recorded.end // hop * hop)
        self.emitted = 0
        self.dropped = 0
        self.unavailable = 0

    def set_latency(self, latency: float) -> None:
        """Update the latency in samples (any thread; used from the next window on)."""
        if not math.isfinite(latency):
            raise AlignerError(f"latency must be a finite number of samples, got {latency}")
        self.latency = float(latency)

    def set_clock_ratio(self, ratio: float) -> None:
        """Update the reference-per-recorded sample ratio (any thread)."""
        if not (math.isfinite(ratio) and ratio > 0):
            raise AlignerError(f"clock ratio must be a positive number, got {ratio}")
        self.clock_ratio = float(ratio)

    def _reference_start(self, start: int, latency: float, ratio: float) -> int:
        """Reference index paired with recorded index ``start`` for a window starting there."""
        centre = start + self.window / 2
        shift = (centre - latency) * ratio - centre
        return start + math.floor(shift + 0.5)

    def next_window(self) -> AlignedWindow | None:
        """The newest complete window not yet returned, or None (nothing new, or unavailable)."""
        latency, ratio = self.latency, self.clock_ratio  # one consistent pair per window
        end = self._newest_complete_end(latency, ratio)
        if end <= self._last_end:
            return None
        skipped = (end - self._last_end) // self.hop - 1
        self.dropped += skipped
        self._last_end = end
        start = end - self.window
        ref_start = self._reference_start(start, latency, ratio)
        if ref_start < self.reference.oldest or start < self.recorded.oldest:
            self.unavailable += 1
            return None
        try:
            mic = self.recorded.read(start, self.window,
                                     np.empty((self.recorded.channels, self.window), np.float32))
            music = self.reference.read(ref_start, self.window,
                                        np.empty((self.reference.channels, self.window),
                                                 np.float32))
        except RingError:  # overwritten while being copied: the worker is far behind
            self.unavailable += 1
            return None
        flags = {e.kind.flag for e in self.recorded.events.marks_between(start, end)}
        flags |= {e.kind.flag for e in
                  self.reference.events.marks_between(ref_start, ref_start + self.window)}
        self.emitted += 1
        return AlignedWindow(mic=mic, music=music, end_sample=end,
                             capture_time=end / self.sample_rate, reference_start=ref_start,
                             flags=flags)

    def _newest_complete_end(self, latency: float, ratio: float) -> int:
        """Largest grid end whose recorded and reference samples are all written (or 0)."""
        recorded_end, reference_end = self.recorded.end, self.reference.end
        end = recorded_end // self.hop * self.hop
        # Invert the pairing for a first guess at the reference limit, then settle it exactly
        # (the rounding can move it by a hop at most).
        half = self.window / 2
        limit = (reference_end - half) / ratio + latency + half
        if limit < end:
            end = max(0, math.floor(limit) // self.hop * self.hop + self.hop)
        while end >= self._first_end and (
                self._reference_start(end - self.window, latency, ratio) + self.window
                > reference_end):
            end -= self.hop
        return end if end >= self._first_end else 0
