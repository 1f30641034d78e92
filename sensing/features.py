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

Outputs are float32; everything up to the mel projection runs in float64 for parity on quiet
bins (see ``_chunk_features``). The filterbank and window are built once per process; the work
buffers once per thread, so a call allocates nothing but its result (the live engine calls this
every 50 ms). The two loops numpy does badly, windowing float32 audio into float64 frames and
the per-bin products, normalisation and banded mel sums, are numba kernels (compiled on first use
and cached on disk).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache

import numba
import numpy as np

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
_DB_PER_LN = 10.0 / np.log(10.0)
# Intensity lengths below this are treated as silence. Far under any real audio: even 24-bit
# quantisation noise gives about 1e-12 per bin.
_INTENSITY_FLOOR = 1e-20
# Standard deviations below this (a constant channel) would blow standardised inputs up.
_STD_FLOOR = 1e-6
# Frames are processed in chunks of at most this many (one window, or several short recordings):
# the per-thread work buffers are sized for it and stay in cache, and long recordings or big
# batches need no multi-GB temporaries.
_CHUNK_FRAMES = 12
# Offset, in float64 values, between channels of the interleaved complex spectrum buffer
# (_N_LOG, _CHUNK_FRAMES, N_BINS). The kernel indexes its buffers with this and N_BINS, not with
# array strides: compile-time constants prove its stores never overlap, which is what lets LLVM
# vectorise the per-bin loop.
_SPECTRUM_CHANNEL = 2 * _CHUNK_FRAMES * N_BINS
# numpy's error model: division by zero gives inf instead of a per-element check that blocks
# vectorisation; reassociation lets LLVM vectorise the banded sums.
_KERNEL = {
    "cache": True, "nogil": True, "error_model": "numpy", "fastmath": {"contract", "reassoc"}
}


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
    # Periodic ("fftbins") Hann, librosa's default analysis window; float64 like the FFT.
    n = np.arange(N_FFT, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)


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


def _chunks(n_recordings: int, n_frames: int):
    """(recordings, frames) slices of about ``_CHUNK_FRAMES`` frames each, covering everything."""
    if n_frames >= _CHUNK_FRAMES:
        for r in range(n_recordings):
            for f0 in range(0, n_frames, _CHUNK_FRAMES):
                yield slice(r, r + 1), slice(f0, min(f0 + _CHUNK_FRAMES, n_frames))
    else:
        group = _CHUNK_FRAMES // n_frames
        for r0 in range(0, n_recordings, group):
            yield slice(r0, r0 + group), slice(0, n_frames)


@numba.njit(**_KERNEL)
def _window_frames(audio: np.ndarray, window: np.ndarray, frames: np.ndarray, channel0: int):
    """Audio (G, C, F, 2400) times the window into float64 ``frames[channel0 + c, g * F + t]``."""
    recordings, channels, n_frames, n = audio.shape
    for g in range(recordings):
        for c in range(channels):
            for t in range(n_frames):
                row = frames[channel0 + c, g * n_frames + t]
                for i in range(n):
                    row[i] = audio[g, c, t, i] * window[i]


@numba.njit(**_KERNEL)
def _spectral_features(
    spectrum: np.ndarray,
    n_frames: int,
    band_first: np.ndarray,
    band_offsets: np.ndarray,
    band_weights: np.ndarray,
    linear: np.ndarray,
    mel: np.ndarray,
) -> None:
    """Mel power (floored) and mel-projected unit intensity of the first ``n_frames`` frames.

    ``spectrum`` is the flat float64 view of the (6, _CHUNK_FRAMES, N_BINS) complex128 spectra,
    ``linear`` a flat (9 * N_BINS) float64 scratch row per feature, ``mel`` the (9,
    _CHUNK_FRAMES, N_MELS) float32 result.
    """
    for t in range(n_frames):
        for k in range(N_BINS):
            i = 2 * (t * N_BINS + k)
            wr, wi = spectrum[i], spectrum[i + 1]
            xr, xi = spectrum[_SPECTRUM_CHANNEL + i], spectrum[_SPECTRUM_CHANNEL + i + 1]
            yr, yi = spectrum[2 * _SPECTRUM_CHANNEL + i], spectrum[2 * _SPECTRUM_CHANNEL + i + 1]
            zr, zi = spectrum[3 * _SPECTRUM_CHANNEL + i], spectrum[3 * _SPECTRUM_CHANNEL + i + 1]
            lr, li = spectrum[4 * _SPECTRUM_CHANNEL + i], spectrum[4 * _SPECTRUM_CHANNEL + i + 1]
            rr, ri = spectrum[5 * _SPECTRUM_CHANNEL + i], spectrum[5 * _SPECTRUM_CHANNEL + i + 1]
            # Intensity Re(conj(W) [X, Y, Z]); silent bins (length 0) stay 0 instead of NaN.
            ix = wr * xr + wi * xi
            iy = wr * yr + wi * yi
            iz = wr * zr + wi * zi
            scale = 1.0 / np.sqrt(max(ix * ix + iy * iy + iz * iz, _INTENSITY_FLOOR**2))
            linear[k] = wr * wr + wi * wi
            linear[N_BINS + k] = xr * xr + xi * xi
            linear[2 * N_BINS + k] = yr * yr + yi * yi
            linear[3 * N_BINS + k] = zr * zr + zi * zi
            linear[4 * N_BINS + k] = lr * lr + li * li
            linear[5 * N_BINS + k] = rr * rr + ri * ri
            linear[6 * N_BINS + k] = ix * scale
            linear[7 * N_BINS + k] = iy * scale
            linear[8 * N_BINS + k] = iz * scale
        # Banded mel sums: nine independent accumulators per band keep the FMA units busy.
        for m in range(N_MELS):
            b0 = band_first[m]
            weights = band_weights[band_offsets[m] : band_offsets[m + 1]]
            p0, p1, p2 = linear[b0:], linear[N_BINS + b0 :], linear[2 * N_BINS + b0 :]
            p3, p4 = linear[3 * N_BINS + b0 :], linear[4 * N_BINS + b0 :]
            p5, u0 = linear[5 * N_BINS + b0 :], linear[6 * N_BINS + b0 :]
            u1, u2 = linear[7 * N_BINS + b0 :], linear[8 * N_BINS + b0 :]
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = a8 = 0.0
            for j in range(weights.shape[0]):
                w = weights[j]
                a0 += w * p0[j]
                a1 += w * p1[j]
                a2 += w * p2[j]
                a3 += w * p3[j]
                a4 += w * p4[j]
                a5 += w * p5[j]
                a6 += w * u0[j]
                a7 += w * u1[j]
                a8 += w * u2[j]
            mel[0, t, m] = max(a0, _POWER_FLOOR)
            mel[1, t, m] = max(a1, _POWER_FLOOR)
            mel[2, t, m] = max(a2, _POWER_FLOOR)
            mel[3, t, m] = max(a3, _POWER_FLOOR)
            mel[4, t, m] = max(a4, _POWER_FLOOR)
            mel[5, t, m] = max(a5, _POWER_FLOOR)
            mel[6, t, m] = a6
            mel[7, t, m] = a7
            mel[8, t, m] = a8


class _Scratch:
    """One thread's work buffers for a chunk of up to ``_CHUNK_FRAMES`` frames (~2.9 MB)."""

    def __init__(self) -> None:
        self.frames = np.zeros((_N_LOG, _CHUNK_FRAMES, N_FFT))
        self.spectrum = np.zeros((_N_LOG, _CHUNK_FRAMES, N_BINS), dtype=np.complex128)
        self.spectrum_values = self.spectrum.reshape(-1).view(np.float64)
        self.linear = np.zeros(len(CHANNELS) * N_BINS)
        self.mel = np.zeros((len(CHANNELS), _CHUNK_FRAMES, N_MELS), dtype=np.float32)


_thread_local = threading.local()


def _scratch() -> _Scratch:
    scratch = getattr(_thread_local, "scratch", None)
    if scratch is None:
        scratch = _thread_local.scratch = _Scratch()
    return scratch


def _chunk_features(mic: np.ndarray, music: np.ndarray, out: np.ndarray) -> None:
    """(g, 4, n), (g, 2, n) with g * n <= 12 frames -> out (g, 9, n // 2400, 128)."""
    g, _, n = mic.shape
    n_frames = n // HOP
    rows = g * n_frames
    s = _scratch()
    window = _hann()
    _window_frames(mic.reshape(g, _N_MIC, n_frames, N_FFT), window, s.frames, 0)
    _window_frames(music.reshape(g, _N_MUSIC, n_frames, N_FFT), window, s.frames, _N_MIC)
    # The FFT runs in float64: float32 rounding in the transform is relative to the whole frame,
    # so in music with ~70 dB between a frame's loudest and quietest bins the quiet bins'
    # intensity directions drift by up to 2e-5 (log-mel by 6e-4 dB), beyond the parity
    # tolerance. Windowing in float32 alone already costs 1e-4 there. (``out=`` needs numpy 2.)
    np.fft.rfft(s.frames[:, :rows], axis=-1, out=s.spectrum[:, :rows])
    _spectral_features(s.spectrum_values, rows, *_filterbank_bands(), s.linear, s.mel)
    mel = s.mel[:, :rows].reshape(len(CHANNELS), g, n_frames, N_MELS).transpose(1, 0, 2, 3)
    # Natural log and a scale: numpy's float32 log is vectorised, its log10 is not (4x slower).
    np.log(mel[:, :_N_LOG], out=mel[:, :_N_LOG])
    np.multiply(mel[:, :_N_LOG], np.float32(_DB_PER_LN), out=out[:, :_N_LOG])
    out[:, _N_LOG:] = mel[:, _N_LOG:]


def _kernel_dtype(audio: np.ndarray) -> np.ndarray:
    # The kernels are compiled for float32 and float64 only; float16 and long double are rare.
    return audio.astype(np.float32 if audio.dtype.itemsize <= 4 else np.float64, copy=False)


def frame_features(mic: np.ndarray, music: np.ndarray) -> np.ndarray:
    """Base features of every 50 ms frame: (..., 4, N), (..., 2, N) -> (..., 9, N // 2400, 128)."""
    mic = np.asarray(mic)
    music = np.asarray(music)
    _check_audio(mic, music)
    lead, n = mic.shape[:-2], mic.shape[-1]
    n_frames = n // HOP
    mic = _kernel_dtype(mic.reshape(-1, _N_MIC, n))
    music = _kernel_dtype(music.reshape(-1, _N_MUSIC, n))
    features = np.empty((mic.shape[0], len(CHANNELS), n_frames, N_MELS), dtype=np.float32)
    for recordings, frames in _chunks(mic.shape[0], n_frames):
        samples = slice(frames.start * HOP, frames.stop * HOP)
        _chunk_features(
            mic[recordings, :, samples],
            music[recordings, :, samples],
            features[recordings, :, frames],
        )
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


def windows_from_frames(frames: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Cut windows of 12 frames: (9, T, 128) and start frame indices (S,) -> (S, 9, 12, 128)."""
    frames = np.asarray(frames)
    starts = np.asarray(starts)
    if frames.ndim != 3 or frames.shape[0] != len(CHANNELS) or frames.shape[2] != N_MELS:
        raise FeatureError(
            f"frames have shape {frames.shape}; expected ({len(CHANNELS)}, T, {N_MELS}) "
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
    """Per-channel standardisation of the 9 base channels, fitted on a training split only."""

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        shape = (len(CHANNELS),)
        if mean.shape != shape or std.shape != shape:
            raise FeatureError(
                f"feature stats need mean and std of shape {shape}; got {mean.shape} and {std.shape}."
            )
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise FeatureError("feature stats must be finite with std > 0; refit them on valid features.")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def fit(cls, base: np.ndarray) -> FeatureStats:
        """Mean and std per channel over batch, time and mel of ``base`` (B, 9, T, 128)."""
        base = np.asarray(base)
        if base.ndim != 4 or base.shape[1] != len(CHANNELS) or base.shape[0] == 0:
            raise FeatureError(
                f"base features have shape {base.shape}; expected (B >= 1, {len(CHANNELS)}, T, {N_MELS})."
            )
        # float64 accumulation: a training split holds millions of values per channel.
        mean = base.mean(axis=(0, 2, 3), dtype=np.float64)
        std = base.std(axis=(0, 2, 3), dtype=np.float64)
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
            raise FeatureError("base features contain NaN or inf; recompute them before fitting stats.")
        return cls(mean=mean, std=np.maximum(std, _STD_FLOOR))

    def to_dict(self) -> dict:
        return {"channels": list(CHANNELS), "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureStats:
        try:
            channels, mean, std = d["channels"], d["mean"], d["std"]
        except (KeyError, TypeError) as exc:
            raise FeatureError(
                f"feature stats dict lacks {exc}; it must come from FeatureStats.to_dict."
            ) from None
        if tuple(channels) != CHANNELS:
            raise FeatureError(
                f"feature stats are for channels {channels}, not {list(CHANNELS)}; refit them."
            )
        return cls(mean=np.asarray(mean), std=np.asarray(std))


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
