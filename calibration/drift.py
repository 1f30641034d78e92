"""Online latency and clock-drift tracking from the music itself (GCC-PHAT), fed to the aligner.

Model (the aligner's time base plus the sound's flight): recorded W sample n holds the music
played at reference sample ``m(n) = (n - latency) * clock_ratio - flight``, where ``flight``
(reference samples) is the acoustic path the GCC peak follows (the direct sound of the
speakers, which share it closely enough on a rig built around the mic).

Every ``interval`` seconds ``update`` takes the newest ``chunk`` of recorded W in Hann frames
and, for each frame, the reference (left + right) where the current model pairs it, shifted
by the model's fractional part in the frequency domain. From the frames' summed cross- and
auto-spectra comes the response reference -> W over ``sweep.BAND`` (as the sweep measurement
gets it, so the music's spectrum is divided out and the direct path's peak is unbiased; a
PHAT weighting would whiten the room's phase as well and shift the peak by tenths of a
sample). Its direct-path peak (``peaks``) is the model's error at the chunk's centre, which
gives one observed point (n, m). A chunk whose peak does not stand out of the response
(pause, silence, no mic) gives none.

From the points:
- ``track_clock`` (split devices): a line fitted to the last ``history`` seconds of points
  gives ``clock_ratio`` (its slope) and, at the newest point, ``latency``; a run of points
  off the line by more than JUMP samples (lost samples, a device restart) starts a new fit;
- otherwise the clock ratio stays the aligner's and ``latency`` is the median of the last
  MEDIAN_POINTS points (a latency jump is followed within a few updates).
``flight`` is ``flight_samples`` when given (split devices: each run's stream start moves
the latency, so it must be absolute; a profile's ``flight_samples``), otherwise it is
anchored at the first point so that it reproduces ``initial_latency`` (one device: the
profile's latency holds, the tracker follows changes from there).
``latency`` and ``clock_ratio`` go to the aligner (``set_latency``/``set_clock_ratio``) after
each point; ``drift_ppm`` is (clock_ratio - 1) * 1e6 when tracking the clock, else None.
"""

from __future__ import annotations

import math
import threading
from collections import deque

import numpy as np
import scipy.fft as sfft

from bgm2pose.calibration.peaks import first_strong_peak, subsample_peak
from bgm2pose.calibration.sweep import band_weights
from bgm2pose.sensing.aligner import Aligner
from bgm2pose.sensing.ring import RingError, SampleRing

FRAME = 8192
SEARCH = FRAME // 4  # lags searched either side of the model's pairing
MIN_PEAK_RATIO = 6.0  # correlation peak over its RMS: below it the chunk is not trusted
JUMP = 2.0  # samples off the fitted line that start a new fit after JUMP_POINTS such points
JUMP_POINTS = 3
MEDIAN_POINTS = 5
MIN_FIT_SECONDS = 2.0  # span of points before the clock ratio is estimated
RATIO_TOLERANCE = 2e-6  # points observed with a model ratio this close are trusted for fits


class DriftTracker:
    def __init__(self, recorded: SampleRing, reference: SampleRing, aligner: Aligner, *,
                 initial_latency: float, track_clock: bool, flight_samples: float | None = None,
                 sample_rate: int = 48_000, interval: float = 0.5, chunk: float = 2.0,
                 history: float = 120.0):
        self.recorded = recorded
        self.reference = reference
        self.aligner = aligner
        self.track_clock = track_clock
        self.sample_rate = sample_rate
        self.interval = interval
        self.chunk = int(chunk * sample_rate)
        self.history = history * sample_rate
        self.latency = float(initial_latency)
        self.clock_ratio = aligner.clock_ratio
        self.flight = flight_samples
        self.points: deque[tuple[float, float, float]] = deque()  # (n, m, model ratio)
        self.updates = 0  # points accepted
        self.rejected = 0  # chunks without a clear peak
        self._initial = float(initial_latency)
        self._last_end = -math.inf
        self._off_line = 0
        self._window = np.hanning(FRAME + 2)[1:-1].astype(np.float32)
        self._weights = band_weights(2 * FRAME, sample_rate)
        self._freqs = sfft.rfftfreq(2 * FRAME)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def drift_ppm(self) -> float | None:
        return (self.clock_ratio - 1) * 1e6 if self.track_clock else None

    # -- thread ---------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="drift-tracker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval / 2):
            self.update()

    # -- estimation -----------------------------------------------------------------------

    def update(self) -> bool:
        """Process the newest chunk if ``interval`` has passed on the recorded clock; True
        if it gave a point (and the aligner was updated)."""
        end = self.recorded.end
        if end < self.chunk or end - self._last_end < self.interval * self.sample_rate:
            return False
        self._last_end = end
        point = self._observe(end - self.chunk, end, self.latency, self.clock_ratio)
        if point is None:
            self.rejected += 1
            return False
        self._add(*point, self.clock_ratio)
        self.aligner.set_latency(self.latency)
        if self.track_clock:
            self.aligner.set_clock_ratio(self.clock_ratio)
        self.updates += 1
        return True

    def _observe(self, start: int, stop: int, latency: float, ratio: float
                 ) -> tuple[float, float] | None:
        """(n, m) at the chunk's centre, or None when the response has no clear peak."""
        size = 2 * FRAME
        flight = self.flight or 0.0
        cross = np.zeros(size // 2 + 1, np.complex128)
        power = np.zeros(size // 2 + 1)
        starts = range(start, stop - FRAME + 1, FRAME // 2)
        for s in starts:
            # The model's m - n at the frame's centre: the pairing drifts within a frame, so
            # the response's lag is the error there.
            middle = s + FRAME // 2
            offset = (middle - latency) * ratio - middle - flight
            whole = math.floor(offset)
            try:
                rec = self.recorded.read(s, FRAME)[0]
                ref = self.reference.read(s + whole, FRAME)
            except RingError:
                continue
            x = sfft.rfft(rec * self._window, size)
            y = sfft.rfft((ref[0] + ref[1]) * self._window, size)
            # Shift by the model's fractional part, so all frames share one lag origin.
            cross += np.conj(y) * x * np.exp(-2j * np.pi * self._freqs * (offset - whole))
            power += np.abs(y) ** 2
        if not power.any():
            return None
        band = self._weights > 0.5
        h = sfft.irfft(cross / (power + 1e-3 * power[band].mean()) * self._weights, size)
        # Lags -SEARCH .. SEARCH: the response's peak lag is the model's error.
        h = np.concatenate([h[-SEARCH:], h[:SEARCH + 1]])
        k = first_strong_peak(h)
        if abs(h[k]) < MIN_PEAK_RATIO * np.sqrt(np.mean(h ** 2)):
            return None
        lag = subsample_peak(h, k) - SEARCH
        centre = (starts[0] + starts[-1]) / 2 + FRAME // 2
        return centre, (centre - latency) * ratio - flight - lag

    def _add(self, n: float, m: float, model_ratio: float) -> None:
        if self.flight is None:  # anchor: the first point reproduces the initial latency
            self.flight = (n - self._initial) * self.clock_ratio - m
        points = self.points
        if self.track_clock and len(points) >= 2:
            slope, intercept = self._fit()
            if abs(m - (intercept + slope * n)) > JUMP:
                self._off_line += 1
                if self._off_line >= JUMP_POINTS:  # the line moved: start a new one
                    recent = list(points)[-(JUMP_POINTS - 1):]
                    points.clear()
                    points.extend(recent)
                    self._off_line = 0
            else:
                self._off_line = 0
        points.append((n, m, model_ratio))
        while points and n - points[0][0] > self.history:
            points.popleft()
        if self.track_clock:
            if points[-1][0] - points[0][0] >= MIN_FIT_SECONDS * self.sample_rate:
                slope, intercept = self._fit()
                self.clock_ratio = float(slope)
                m = intercept + slope * n
            self.latency = n - (m + self.flight) / self.clock_ratio
        else:
            recent = list(points)[-MEDIAN_POINTS:]
            self.latency = float(np.median([pn - (pm + self.flight) / self.clock_ratio
                                            for pn, pm, _ in recent]))

    def _fit(self) -> tuple[float, float]:
        """(slope, intercept) of m = intercept + slope * n over the points; only those
        observed with a model ratio close to the current one when they span long enough
        (a chunk observed with a ratio off by r smears over r * chunk samples)."""
        n, m, model = np.array(self.points).T
        close = np.abs(model - self.clock_ratio) < RATIO_TOLERANCE
        if close.sum() >= 2 and np.ptp(n[close]) >= MIN_FIT_SECONDS * self.sample_rate:
            n, m = n[close], m[close]
        n0 = n.mean()
        slope = float(np.sum((n - n0) * (m - m.mean())) / np.sum((n - n0) ** 2))
        return slope, float(m.mean() - slope * n0)
