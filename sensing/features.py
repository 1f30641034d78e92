"""AMPL features: log-mel spectra and mel-projected sound-intensity directions.

Conventions (REFERENCE.md, "Features"):

- Audio is channels-first float at 48 kHz. Microphone: internal B-format ``(..., 4, N)`` in the
  order W, X, Y, Z; played music: ``(..., 2, N)`` in the order left, right. Any leading batch
  dimensions are allowed and must match between the two.
- STFT per channel with n_fft = hop = 2400 (50 ms), periodic Hann window, no centring. Frames
  never overlap, so frame ``k`` only depends on samples ``[2400 k, 2400 (k + 1))``: a long
  recording is framed once and every window is a slice of 12 consecutive frames.
- Mel filterbank: 128 bands, Slaney mel scale and Slaney area normalisation, 0 .. 24 kHz
  (identical to ``librosa.filters.mel(sr=48000, n_fft=2400, n_mels=128)``).
- Base feature channels, in :data:`CHANNELS` order, each ``(frames, 128 mel bands)``:
  log-mel power in dB, ``10 log10(max(mel_power, 1e-10))``, for W, X, Y, Z, music left and
  music right; then the intensity vector ``Re(conj(W) [X, Y, Z])`` normalised per
  time-frequency bin to unit length and projected with the same filterbank (no log).
  Silent bins (intensity of zero length) contribute 0, never NaN: lengths are floored at
  1e-20, far below anything real audio produces. The public code
  orders the music channels right, left; this project uses left, right everywhere.
- Network inputs (:func:`network_inputs`) standardise each base channel with statistics fitted
  on a training split (:class:`FeatureStats`) and then form the recorded-minus-music
  differences the model sees.

Outputs are float32; everything up to the mel projection runs in float64: float32 rounding in
the FFT is relative to the whole frame, so in music with ~70 dB between a frame's loudest and
quietest bins the quiet bins' intensity directions drift by up to 2e-5 (log-mel by 6e-4 dB),
beyond the parity tolerance. The FFT is scipy's, one call over every frame and channel of a
chunk; a small numba kernel then forms powers and unit intensities bin by bin and sums each
mel band over the few bins it covers (its triangle), where a dense projection would multiply
65 times more zeros than weights. A whole window costs about 1 ms against the 50 ms hop
(``benchmarks/features.py``), most of it the FFT; live, ``FeatureStream`` computes only the
frame each hop adds. A hand-written FFT once did the same in about half the time, which the
hop never needed, for some 250 lines of code.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import cache

import numba
import numpy as np
import scipy.fft

from bgm2pose.sensing.errors import UserError

SAMPLE_RATE = 48_000
N_FFT = 2400
HOP = 2400
N_MELS = 128
FRAMES_PER_WINDOW = 12
WINDOW_SAMPLES = 28_800
N_BINS = N_FFT // 2 + 1
CHANNELS = ("W", "X", "Y", "Z", "music_left", "music_right", "Ix", "Iy", "Iz")

_N_MIC = 4
_N_MUSIC = 2
_N_LOG = _N_MIC + _N_MUSIC
_POWER_FLOOR = 1e-10
# Intensity lengths below this are treated as silence. Far under any real audio: even 24-bit
# quantisation noise gives about 1e-12 per bin.
_INTENSITY_FLOOR = 1e-20
# Standard deviations below this (a constant channel) would blow standardised inputs up.
_STD_FLOOR = 1e-6
# Frames transformed per FFT call: a window's. Longer chunks save nothing measurable per frame,
# and from 24 frames on their spectra (115 kB a frame) are mapped anew by every call, each page
# a fault (2 200 a call for a batch of 64 windows, none at 12).
_CHUNK_FRAMES = FRAMES_PER_WINDOW


class FeatureError(UserError, ValueError):
    """Audio or feature arrays with a shape, length or content the pipeline cannot use."""


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3.0)
    log_step = np.log(6.4) / 27.0
    logarithmic = 15.0 + np.log(np.maximum(hz, 1e-300) / 1000.0) / log_step
    return np.where(hz >= 1000.0, logarithmic, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(mel >= 15.0, 1000.0 * np.exp(log_step * (mel - 15.0)), mel * (200.0 / 3.0))


@cache
def _filterbank() -> np.ndarray:
    # Triangles between consecutive mel-spaced edge frequencies, built in float64 and scaled to
    # unit area in Hz (Slaney normalisation: 2 / bandwidth) before the cast to float32.
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    bins_hz = np.linspace(0.0, SAMPLE_RATE / 2, N_BINS)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins_hz - lower) / (centre - lower)
    falling = (upper - bins_hz) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (upper - lower))
    fb = weights.astype(np.float32)
    fb.flags.writeable = False
    return fb


def mel_filterbank() -> np.ndarray:
    """The (128, 1201) float32 Slaney mel filterbank (cached, read-only)."""
    return _filterbank()


@cache
def _filterbank_bands() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The filterbank without its zeros: each band's weights cover one contiguous run of bins.

    Returns ``(first_bin, offsets, weights)``: band ``m`` weighs bins ``first_bin[m] + j`` by
    ``weights[offsets[m] + j]`` for ``j < offsets[m + 1] - offsets[m]``, about 2 400 weights
    instead of 154 000. The weights are the float32 filterbank's, widened to float64.
    """
    fb = _filterbank()
    nonzero = fb != 0
    first = nonzero.argmax(axis=1)
    stop = N_BINS - nonzero[:, ::-1].argmax(axis=1)
    offsets = np.concatenate([[0], np.cumsum(stop - first)])
    weights = np.concatenate([fb[m, first[m] : stop[m]] for m in range(N_MELS)]).astype(np.float64)
    return first.astype(np.int64), offsets.astype(np.int64), weights


@cache
def _hann() -> np.ndarray:
    """Periodic ("fftbins") Hann, librosa's default, in float64 like the FFT (windowing in
    float32 alone already costs 1e-4 of intensity parity)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)


_thread_local = threading.local()


def _frames_buffer(shape: tuple[int, ...]) -> np.ndarray:
    """This thread's float64 buffer for windowed frames, kept across calls.

    A fresh one per call would be mapped anew each time (glibc hands large freed blocks back to
    the OS), a page fault every 4 kB: measured, the faults cost three times the computation.
    """
    size = math.prod(shape)
    buffer = getattr(_thread_local, "frames", None)
    if buffer is None or buffer.size < size:
        buffer = _thread_local.frames = np.empty(size)
    return buffer[:size].reshape(shape)


def _check_audio(mic: np.ndarray, music: np.ndarray) -> None:
    for name, audio, channels in (("mic", mic, _N_MIC), ("music", music, _N_MUSIC)):
        if audio.dtype.kind != "f":
            raise FeatureError(
                f"{name} audio has dtype {audio.dtype}; convert it to floating point "
                "(e.g. int16 PCM / 32768) first."
            )
        if audio.ndim < 2 or audio.shape[-2] != channels:
            raise FeatureError(
                f"{name} audio has shape {audio.shape}; expected (..., {channels}, samples) "
                "with channels first."
            )
    if mic.shape[:-2] != music.shape[:-2] or mic.shape[-1] != music.shape[-1]:
        raise FeatureError(
            f"mic {mic.shape} and music {music.shape} must have the same batch dimensions and "
            "the same number of samples."
        )
    n = mic.shape[-1]
    if n == 0 or n % HOP:
        raise FeatureError(
            f"audio has {n} samples, which is not a positive multiple of the {HOP}-sample "
            "frame; trim or pad it to whole frames."
        )



# numpy's error model: division by zero gives inf instead of a per-element check that blocks
# vectorisation; reassociation lets LLVM vectorise the banded sums.
@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract", "reassoc"})
def _mel_project(spectra, band_first, band_offsets, band_weights, out):
    """Spectra (G, 6, T, 1201) -> mel power (floored) of the six channels and the mel-projected
    unit intensity, ``out`` (G, 9, T, 128)."""
    linear = np.empty((len(CHANNELS), N_BINS))
    for g in range(spectra.shape[0]):
        for t in range(spectra.shape[2]):
            for k in range(N_BINS):
                w = spectra[g, 0, t, k]
                for c in range(_N_LOG):
                    s = spectra[g, c, t, k]
                    linear[c, k] = s.real * s.real + s.imag * s.imag
                length2 = 0.0
                for c in range(1, _N_MIC):
                    s = spectra[g, c, t, k]
                    i = w.real * s.real + w.imag * s.imag  # Re(conj(W) s)
                    linear[_N_LOG - 1 + c, k] = i
                    length2 += i * i
                # Silent bins (length 0) stay 0 instead of NaN.
                scale = 1.0 / np.sqrt(max(length2, _INTENSITY_FLOOR**2))
                for c in range(_N_LOG, len(CHANNELS)):
                    linear[c, k] *= scale
            for m in range(N_MELS):
                first = band_first[m]
                weights = band_weights[band_offsets[m]:band_offsets[m + 1]]
                for c in range(len(CHANNELS)):
                    band = linear[c, first:first + weights.shape[0]]
                    total = 0.0
                    for j in range(weights.shape[0]):
                        total += weights[j] * band[j]
                    out[g, c, t, m] = max(total, _POWER_FLOOR) if c < _N_LOG else total


def frame_features(mic: np.ndarray, music: np.ndarray) -> np.ndarray:
    """Base features of every 50 ms frame: (..., 4, N), (..., 2, N) -> (..., 9, N // 2400, 128)."""
    mic = np.asarray(mic)
    music = np.asarray(music)
    _check_audio(mic, music)
    lead, n = mic.shape[:-2], mic.shape[-1]
    frames = n // HOP
    mic = mic.reshape(-1, _N_MIC, frames, N_FFT)
    music = music.reshape(-1, _N_MUSIC, frames, N_FFT)
    features = np.empty((mic.shape[0], len(CHANNELS), frames, N_MELS), dtype=np.float32)
    # Whole recordings per chunk when they are short (a batch of windows), else runs of one
    # recording's frames.
    rows = max(1, _CHUNK_FRAMES // frames)
    for g in range(0, mic.shape[0], rows):
        for t in range(0, frames, _CHUNK_FRAMES):
            at = (slice(g, g + rows), slice(None), slice(t, t + _CHUNK_FRAMES))
            chunk, _, chunk_frames, _ = mic[at].shape
            audio = _frames_buffer((chunk, _N_LOG, chunk_frames, N_FFT))
            np.multiply(mic[at], _hann(), out=audio[:, :_N_MIC])
            np.multiply(music[at], _hann(), out=audio[:, _N_MIC:])
            spectra = scipy.fft.rfft(audio, axis=-1)
            _mel_project(spectra, *_filterbank_bands(), features[at])
    decibels = features[:, :_N_LOG]
    np.log10(decibels, out=decibels)
    decibels *= 10.0
    return features.reshape(lead + features.shape[1:])


def window_features(mic: np.ndarray, music: np.ndarray) -> np.ndarray:
    """Base features of 0.6 s windows: (4, 28800), (2, 28800) -> (9, 12, 128), or batched."""
    mic = np.asarray(mic)
    music = np.asarray(music)
    for name, audio in (("mic", mic), ("music", music)):
        if audio.ndim < 1 or audio.shape[-1] != WINDOW_SAMPLES:
            raise FeatureError(
                f"{name} window has shape {audio.shape}; a window must have exactly "
                f"{WINDOW_SAMPLES} samples (0.6 s at {SAMPLE_RATE} Hz) on its last axis."
            )
    return frame_features(mic, music)


class FeatureStream:
    """Base features of the live engine's windows, one after another, computing only the
    frames each window adds: frames never overlap, so a window that ends k < 12 hops after
    the last one and holds the same samples where they overlap reuses that one's last
    12 - k frames, and the result equals ``window_features`` exactly. Any other window (the
    first, one after a skip, one whose music was aligned anew) is computed whole."""

    def __init__(self):
        self._end: int | None = None
        self._mic = np.zeros((_N_MIC, WINDOW_SAMPLES), np.float32)
        self._music = np.zeros((_N_MUSIC, WINDOW_SAMPLES), np.float32)
        self._frames = np.zeros((len(CHANNELS), FRAMES_PER_WINDOW, N_MELS), np.float32)

    def window(self, mic: np.ndarray, music: np.ndarray, end_sample: int) -> np.ndarray:
        """(9, 12, 128) of the window of ``mic`` (4, 28800) and ``music`` (2, 28800) whose
        last mic sample is ``end_sample - 1``."""
        step = None if self._end is None else end_sample - self._end
        new = (step // HOP if step is not None and step % HOP == 0 else FRAMES_PER_WINDOW)
        if (0 < new < FRAMES_PER_WINDOW and mic.shape == self._mic.shape
                and music.shape == self._music.shape
                and np.array_equal(mic[:, :-step], self._mic[:, step:])
                and np.array_equal(music[:, :-step], self._music[:, step:])):
            frames = np.concatenate([self._frames[:, new:],
                                     frame_features(mic[:, -step:], music[:, -step:])], axis=1)
        else:
            frames = window_features(mic, music)
        self._end = end_sample
        np.copyto(self._mic, mic)
        np.copyto(self._music, music)
        np.copyto(self._frames, frames)
        return frames


def windows_from_frames(frames: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Cut windows of 12 frames: (C, T, 128) and start frame indices (S,) -> (S, C, 12, 128).

    C is 9 for ``frame_features``, or any other per-frame features shaped like them
    (``channel.CHANNELS``)."""
    frames = np.asarray(frames)
    starts = np.asarray(starts)
    if frames.ndim != 3 or frames.shape[2] != N_MELS:
        raise FeatureError(
            f"frames have shape {frames.shape}; expected (channels, T, {N_MELS}) "
            "as returned by frame_features for one recording."
        )
    if starts.ndim != 1 or not np.issubdtype(starts.dtype, np.integer):
        raise FeatureError(
            f"starts must be a 1-D array of integer frame indices, got {starts.dtype} {starts.shape}."
        )
    last = frames.shape[1] - FRAMES_PER_WINDOW
    if starts.size and (starts.min() < 0 or starts.max() > last):
        raise FeatureError(
            f"window starts must lie in [0, {last}] for {frames.shape[1]} frames; "
            f"got values in [{starts.min()}, {starts.max()}]."
        )
    index = starts[:, None] + np.arange(FRAMES_PER_WINDOW)
    return np.ascontiguousarray(frames[:, index].transpose(1, 0, 2, 3))


@dataclass(frozen=True)
class FeatureStats:
    """Per-channel standardisation, fitted on a training split only: of the 9 base channels,
    or of another named set (``channel.CHANNELS``)."""

    mean: np.ndarray
    std: np.ndarray
    channels: tuple[str, ...] = CHANNELS

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        shape = (len(self.channels),)
        if mean.shape != shape or std.shape != shape:
            raise FeatureError(
                f"feature stats need mean and std of shape {shape}; got {mean.shape} and {std.shape}."
            )
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise FeatureError("feature stats must be finite with std > 0; refit them on valid features.")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def fit(cls, base: np.ndarray, channels: tuple[str, ...] = CHANNELS) -> FeatureStats:
        """Mean and std per channel over batch, time and mel of ``base`` (B, 9, T, 128)."""
        base = np.asarray(base)
        if base.ndim != 4 or base.shape[1] != len(channels) or base.shape[0] == 0:
            raise FeatureError(
                f"features have shape {base.shape}; expected (B >= 1, {len(channels)}, T, {N_MELS})."
            )
        # float64 accumulation: a training split holds millions of values per channel.
        mean = base.mean(axis=(0, 2, 3), dtype=np.float64)
        std = base.std(axis=(0, 2, 3), dtype=np.float64)
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
            raise FeatureError("base features contain NaN or inf; recompute them before fitting stats.")
        return cls(mean=mean, std=np.maximum(std, _STD_FLOOR), channels=channels)

    def to_dict(self) -> dict:
        return {"channels": list(self.channels), "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict, channels: tuple[str, ...] = CHANNELS) -> FeatureStats:
        try:
            found, mean, std = d["channels"], d["mean"], d["std"]
        except (KeyError, TypeError) as exc:
            raise FeatureError(
                f"feature stats dict lacks {exc}; it must come from FeatureStats.to_dict."
            ) from None
        if tuple(found) != tuple(channels):
            raise FeatureError(
                f"feature stats are for channels {found}, not {list(channels)}; refit them."
            )
        return cls(mean=np.asarray(mean), std=np.asarray(std), channels=tuple(channels))


def network_inputs(base: np.ndarray, stats: FeatureStats) -> tuple[np.ndarray, np.ndarray]:
    """Standardise (B, 9, 12, 128) base features and form the model inputs.

    Returns X (B, 11, 12, 128) = [mic - music_left (4), mic - music_right (4), intensity (3)]
    and M (B, 2, 12, 128) = [music_left, music_right], all standardised, float32.
    """
    base = np.asarray(base)
    expected = (len(CHANNELS), FRAMES_PER_WINDOW, N_MELS)
    if base.ndim != 4 or base.shape[1:] != expected:
        raise FeatureError(
            f"base features have shape {base.shape}; expected (B, {', '.join(map(str, expected))})."
        )
    z = (base.astype(np.float32, copy=False) - stats.mean[:, None, None]) / stats.std[:, None, None]
    mic = z[:, :_N_MIC]
    x = np.concatenate(
        [mic - z[:, _N_MIC : _N_MIC + 1], mic - z[:, _N_MIC + 1 : _N_LOG], z[:, _N_LOG:]], axis=1
    )
    return x, np.ascontiguousarray(z[:, _N_MIC:_N_LOG])
