"""Live audio displays fed from the sample rings on the GUI timer: scrolling spectrograms of the
played and recorded audio, and a level meter per mic channel.

``RingTap`` follows a ``SampleRing`` from the GUI thread: each ``take()`` returns the samples
written since the last one (channels-first), at most ``max_samples`` of the newest, skipping
what was overwritten; it never blocks the audio callback (reads are lock-free copies).

Spectrogram columns: one per ``HOP`` = 2400 samples (50 ms, the pose hop), a Hann window of
``N_FFT`` samples ending at the column's last sample, magnitude in dB re full scale (a full-scale
sine reads about 0 dB). Levels are RMS dBFS of the newest 50 ms per channel.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtWidgets

from bgm2pose.sensing.ring import RingError, SampleRing

N_FFT = 2048
HOP = 2400
COLUMNS = 200  # 10 s of history
FLOOR_DB = -100.0
MIC_LABELS = ("W", "X", "Y", "Z")


class RingTap:
    def __init__(self, ring: SampleRing, max_samples: int):
        self.ring = ring
        self.max_samples = max_samples
        self.next = ring.end

    def take(self) -> np.ndarray:
        """New samples (channels, n) since the previous call; n may be 0."""
        end = self.ring.end
        start = max(self.next, end - self.max_samples, self.ring.oldest)
        self.next = end
        if end <= start:
            return np.zeros((self.ring.channels, 0), self.ring.dtype)
        try:
            return self.ring.read(start, end - start)
        except RingError:  # overwritten while copying: a display can drop one update
            return np.zeros((self.ring.channels, 0), self.ring.dtype)


def spectrum_db(frames: np.ndarray) -> np.ndarray:
    """(cols, N_FFT) time frames -> (cols, N_FFT // 2 + 1) Hann-windowed magnitude, dBFS."""
    window = np.hanning(N_FFT)
    spec = np.abs(np.fft.rfft(frames * window, axis=-1)) * (2 / window.sum())
    return np.maximum(20 * np.log10(spec + 1e-12), FLOOR_DB)


def level_dbfs(block: np.ndarray) -> np.ndarray:
    """RMS level in dBFS per channel of a (channels, n) block; FLOOR_DB when empty or silent."""
    if block.shape[-1] == 0:
        return np.full(block.shape[0], FLOOR_DB)
    rms = np.sqrt(np.mean(np.square(block, dtype=np.float64), axis=-1))
    return np.maximum(20 * np.log10(rms + 1e-12), FLOOR_DB)


class SpectrogramView(pg.PlotWidget):
    """A scrolling spectrogram of one ring (its channels mixed to mono)."""

    def __init__(self, title: str, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent, title=title)
        self.tap: RingTap | None = None
        self._pending = np.zeros(0, np.float32)  # samples not yet in a column
        self._skip = 0  # samples to come that fall between two columns
        self._image = np.full((COLUMNS, N_FFT // 2 + 1), FLOOR_DB, np.float32)
        self.item = pg.ImageItem(self._image, levels=(-90, -10))
        self.item.setColorMap(pg.colormap.get("inferno"))
        # Columns are 50 ms wide and bins 48000 / N_FFT Hz tall: axes in seconds and kHz.
        self.item.setRect(-COLUMNS * HOP / 48_000, 0, COLUMNS * HOP / 48_000, 24.0)
        self.addItem(self.item)
        self.setLabel("bottom", "s")
        self.setLabel("left", "kHz")
        self.setMouseEnabled(False, False)
        self.hideButtons()
        self.setMinimumHeight(110)

    def follow(self, ring: SampleRing | None) -> None:
        self.tap = None if ring is None else RingTap(ring, N_FFT + COLUMNS * HOP)
        self._pending = np.zeros(0, np.float32)
        self._skip = 0

    def refresh(self) -> None:
        if self.tap is None:
            return
        mono = self.tap.take().mean(axis=0)
        skip = min(self._skip, len(mono))
        self._skip -= skip
        audio = np.concatenate([self._pending, mono[skip:]])
        if len(audio) < N_FFT:
            self._pending = audio
            return
        n_cols = (len(audio) - N_FFT) // HOP + 1
        starts = HOP * np.arange(n_cols)
        cols = spectrum_db(audio[starts[-COLUMNS:, None] + np.arange(N_FFT)])
        # The next column's window starts one hop after this one's; the hop being longer
        # than the window, that may lie in samples still to come.
        following = n_cols * HOP
        self._pending = audio[following:]
        self._skip = max(0, following - len(audio))
        self._image = np.roll(self._image, -len(cols), axis=0)
        self._image[-len(cols):] = cols
        self.item.setImage(self._image, autoLevels=False)


class LevelMeters(QtWidgets.QWidget):
    """One horizontal bar per mic channel: RMS of the newest 50 ms, -60..0 dBFS."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.tap: RingTap | None = None
        self.bars: list[QtWidgets.QProgressBar] = []
        layout = QtWidgets.QGridLayout(self)
        layout.addWidget(QtWidgets.QLabel("<b>Mic level</b>"), 0, 0, 1, 2)
        for i, name in enumerate(MIC_LABELS, start=1):
            bar = QtWidgets.QProgressBar()
            bar.setRange(-60, 0)
            bar.setValue(-60)
            bar.setFormat("-∞ dBFS")
            layout.addWidget(QtWidgets.QLabel(name), i, 0)
            layout.addWidget(bar, i, 1)
            self.bars.append(bar)

    def follow(self, ring: SampleRing | None) -> None:
        self.tap = None if ring is None else RingTap(ring, HOP)

    def refresh(self) -> None:
        if self.tap is None:
            return
        block = self.tap.take()
        if block.shape[1] == 0:
            return
        for bar, db in zip(self.bars, level_dbfs(block[:len(self.bars)])):
            bar.setValue(int(np.clip(db, -60, 0)))
            bar.setFormat(f"{db:.0f} dBFS" if db > FLOOR_DB else "-∞ dBFS")
