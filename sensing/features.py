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
bins (see ``_fft``). Everything from windowing to the dB values is one numba kernel (compiled on
first use and cached on disk) that goes frame by frame, so its work buffers (~240 kB per thread)
stay in cache and a call allocates nothing but its result (the live engine calls this every
50 ms). The FFT is our own because it dominates: numpy's pocketfft transforms one frame at a
time in scalar code (0.43 ms for a window's 72 frames here), this one vectorises in every pass
(~0.2 ms).
"""

from __future__ import annotations

import math
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
# float32, like the values ``_decibels`` converts: float64 constants would widen its arithmetic.
_DB_PER_LN = np.float32(10.0 / np.log(10.0))
_LN2 = np.float32(np.log(2.0))
_SQRT2 = np.float32(np.sqrt(2.0))
_TWO_THIRDS, _TWO_FIFTHS, _TWO_SEVENTHS = np.float32(2 / 3), np.float32(2 / 5), np.float32(2 / 7)
# Intensity lengths below this are treated as silence. Far under any real audio: even 24-bit
# quantisation noise gives about 1e-12 per bin.
_INTENSITY_FLOOR = 1e-20
# Standard deviations below this (a constant channel) would blow standardised inputs up.
_STD_FLOOR = 1e-6

# A real 2400-sample frame is transformed as 1200 complex values (even samples real, odd
# imaginary), kept as a plane of real parts followed by a plane of imaginary parts. A plane has
# room for one value more than the transform: the spectrum repeats its bin 0 there, so bin k and
# its mirror 1200 - k can be read without a wrap-around. Planes are padded to whole 64-byte lines.
_HALF = N_FFT // 2
_PLANE = _HALF + 8
_SPECTRUM = 2 * _PLANE
# The 1200-point transform runs in two steps (a "four-step" FFT): a radix-4 pass across the four
# 300-value blocks of the frame, which leaves four interleaved sequences ("lanes", value n of
# lane j at 4 n + j), then their 300-point DFTs side by side, whose result lands in natural
# order. Every loop then runs over contiguous values and vectorises; 300 = 4 * 3 * 5 * 5.
_LANES = 4
_SUB = _HALF // _LANES
_RADICES = (4, 3, 5, 5)
# numpy's error model: division by zero gives inf instead of a per-element check that blocks
# vectorisation; reassociation lets LLVM vectorise the banded sums.
_KERNEL = {
    "cache": True, "nogil": True, "error_model": "numpy", "fastmath": {"contract", "reassoc"}
}
# The FFT passes and per-bin helpers are inlined at numba level, so the sizes and strides passed
# to them as literals are compile-time constants: LLVM then sees that a pass's loads and stores
# are fixed offsets of two base pointers and vectorises behind a single overlap check.
_INLINE = {**_KERNEL, "cache": False, "inline": "always"}

_COS3 = np.sqrt(3.0) / 2.0
_COS5, _COS25 = np.cos(2.0 * np.pi / 5.0), np.cos(4.0 * np.pi / 5.0)
_SIN5, _SIN25 = np.sin(2.0 * np.pi / 5.0), np.sin(4.0 * np.pi / 5.0)


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
def _half_hann() -> np.ndarray:
    """The analysis window, halved, as its even samples followed by its odd samples.

    Periodic ("fftbins") Hann, librosa's default, in float64 like the FFT (windowing in float32
    alone already costs 1e-4 of intensity parity). The factor 1/2 is the one that separating the
    even and odd samples' spectra needs (``_bin``); scaling by a power of two is exact, so
    folding it in here costs nothing. The split spares the first pass a shuffle per window load.
    """
    n = np.arange(N_FFT, dtype=np.float64)
    half = 0.25 - 0.25 * np.cos(2.0 * np.pi * n / N_FFT)
    return np.concatenate([half[0::2], half[1::2]])


def _twiddle_blocks() -> list[np.ndarray]:
    """Per FFT pass, its twiddle factors as float64 (re, im) values."""
    # Across the blocks: lane j of value n turns by exp(-2 pi i j n / 1200), as [j - 1][re, im][n].
    across = np.exp(-2j * np.pi * np.outer(np.arange(1, _LANES), np.arange(_SUB)) / _HALF)
    blocks = [np.stack([across.real, across.imag], axis=1).ravel()]
    done = 1
    for radix in _RADICES:
        # Stockham pass over groups of m: W^(p k) with W = exp(-2 pi i / (radix m)), [p][k - 1].
        m = _SUB // (done * radix)
        w = np.exp(-2j * np.pi * np.outer(np.arange(m), np.arange(1, radix)) / (radix * m))
        blocks.append(np.stack([w.real, w.imag], axis=-1).ravel())
        done *= radix
    return blocks


_TWIDDLE_OFFSETS = tuple(np.cumsum([0] + [b.size for b in _twiddle_blocks()])[:-1].tolist())


@cache
def _twiddles() -> np.ndarray:
    return np.concatenate(_twiddle_blocks())


@cache
def _rotations() -> np.ndarray:
    # exp(-2 pi i k / 2400) for bins k = 0 .. 1200 as (re, im) pairs: it turns the odd samples'
    # spectrum onto the frame's (``_bin``).
    k = np.arange(N_BINS)
    return np.stack([np.cos(2.0 * np.pi * k / N_FFT), -np.sin(2.0 * np.pi * k / N_FFT)], -1).ravel()


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


@numba.njit(**_INLINE)
def _dft3(a0r, a0i, a1r, a1i, a2r, a2i):
    sr, si = a1r + a2r, a1i + a2i
    dr, di = _COS3 * (a1r - a2r), _COS3 * (a1i - a2i)
    mr, mi = a0r - 0.5 * sr, a0i - 0.5 * si
    return a0r + sr, a0i + si, mr + di, mi - dr, mr - di, mi + dr


@numba.njit(**_INLINE)
def _dft4(a0r, a0i, a1r, a1i, a2r, a2i, a3r, a3i):
    t0r, t0i, t1r, t1i = a0r + a2r, a0i + a2i, a0r - a2r, a0i - a2i
    t2r, t2i, t3r, t3i = a1r + a3r, a1i + a3i, a1r - a3r, a1i - a3i
    return t0r + t2r, t0i + t2i, t1r + t3i, t1i - t3r, t0r - t2r, t0i - t2i, t1r - t3i, t1i + t3r


@numba.njit(**_INLINE)
def _dft5(a0r, a0i, a1r, a1i, a2r, a2i, a3r, a3i, a4r, a4i):
    s1r, s1i, s2r, s2i = a1r + a4r, a1i + a4i, a2r + a3r, a2i + a3i
    d1r, d1i, d2r, d2i = a1r - a4r, a1i - a4i, a2r - a3r, a2i - a3i
    m1r, m1i = a0r + _COS5 * s1r + _COS25 * s2r, a0i + _COS5 * s1i + _COS25 * s2i
    m2r, m2i = a0r + _COS25 * s1r + _COS5 * s2r, a0i + _COS25 * s1i + _COS5 * s2i
    n1r, n1i = _SIN5 * d1r + _SIN25 * d2r, _SIN5 * d1i + _SIN25 * d2i
    n2r, n2i = _SIN25 * d1r - _SIN5 * d2r, _SIN25 * d1i - _SIN5 * d2i
    return (
        a0r + s1r + s2r, a0i + s1i + s2i, m1r + n1i, m1i - n1r, m2r + n2i, m2i - n2r,
        m2r - n2i, m2i + n2r, m1r - n1i, m1i + n1r,
    )


@numba.njit(**_INLINE)
def _store_turned(y, o, re, im, twiddles, t):
    y[o] = re * twiddles[t] - im * twiddles[t + 1]
    y[_PLANE + o] = re * twiddles[t + 1] + im * twiddles[t]


# Stockham passes (self-sorting, so the result comes out in natural order) over the lane layout:
# for each of ``m`` groups p, a radix-point DFT of the values ``span`` * (p + m j), j < radix,
# turned by the twiddles W^(p k) and stored ``span`` * (radix p + k). ``span`` contiguous values
# (all lanes of span / 4 sub-transforms) share every twiddle, so that is the vector loop. ``run``
# equals ``span`` but is a run-time value: LLVM fully unrolls a constant trip count of 4 into
# scalar code instead of vectorising it.


@numba.njit(**_INLINE)
def _radix3(x, y, twiddles, t0, m, span, run):
    for p in range(m):
        t = t0 + 4 * p
        for q in range(run):
            i = span * p + q
            d = span * m
            o = 3 * span * p + q
            b = _dft3(
                x[i], x[_PLANE + i], x[i + d], x[_PLANE + i + d],
                x[i + 2 * d], x[_PLANE + i + 2 * d],
            )
            y[o] = b[0]
            y[_PLANE + o] = b[1]
            _store_turned(y, o + span, b[2], b[3], twiddles, t)
            _store_turned(y, o + 2 * span, b[4], b[5], twiddles, t + 2)


@numba.njit(**_INLINE)
def _radix4(x, y, twiddles, t0, m, span, run):
    for p in range(m):
        t = t0 + 6 * p
        for q in range(run):
            i = span * p + q
            d = span * m
            o = 4 * span * p + q
            b = _dft4(
                x[i], x[_PLANE + i], x[i + d], x[_PLANE + i + d],
                x[i + 2 * d], x[_PLANE + i + 2 * d], x[i + 3 * d], x[_PLANE + i + 3 * d],
            )
            y[o] = b[0]
            y[_PLANE + o] = b[1]
            _store_turned(y, o + span, b[2], b[3], twiddles, t)
            _store_turned(y, o + 2 * span, b[4], b[5], twiddles, t + 2)
            _store_turned(y, o + 3 * span, b[6], b[7], twiddles, t + 4)


@numba.njit(**_INLINE)
def _radix5(x, y, twiddles, t0, m, span, run):
    for p in range(m):
        t = t0 + 8 * p
        for q in range(run):
            i = span * p + q
            d = span * m
            o = 5 * span * p + q
            b = _dft5(
                x[i], x[_PLANE + i], x[i + d], x[_PLANE + i + d],
                x[i + 2 * d], x[_PLANE + i + 2 * d], x[i + 3 * d], x[_PLANE + i + 3 * d],
                x[i + 4 * d], x[_PLANE + i + 4 * d],
            )
            y[o] = b[0]
            y[_PLANE + o] = b[1]
            _store_turned(y, o + span, b[2], b[3], twiddles, t)
            _store_turned(y, o + 2 * span, b[4], b[5], twiddles, t + 2)
            _store_turned(y, o + 3 * span, b[6], b[7], twiddles, t + 4)
            _store_turned(y, o + 4 * span, b[8], b[9], twiddles, t + 6)


@numba.njit(**_INLINE)
def _across_blocks(frame, window, y, twiddles):
    """Windowing and the first pass: value n of the transform is samples (2 n, 2 n + 1).

    Radix 4 over the values n + 300 j of each n, turned by exp(-2 pi i j n / 1200), into lane j.
    """
    for n in range(_SUB):
        s = 2 * n
        b = _dft4(
            frame[s] * window[n], frame[s + 1] * window[_HALF + n],
            frame[s + 600] * window[n + 300], frame[s + 601] * window[_HALF + n + 300],
            frame[s + 1200] * window[n + 600], frame[s + 1201] * window[_HALF + n + 600],
            frame[s + 1800] * window[n + 900], frame[s + 1801] * window[_HALF + n + 900],
        )
        o = _LANES * n
        y[o] = b[0]
        y[_PLANE + o] = b[1]
        for j in range(1, _LANES):
            t = 2 * _SUB * (j - 1) + n
            y[o + j] = b[2 * j] * twiddles[t] - b[2 * j + 1] * twiddles[_SUB + t]
            y[_PLANE + o + j] = b[2 * j] * twiddles[_SUB + t] + b[2 * j + 1] * twiddles[t]


@numba.njit(**_KERNEL)
def _fft(frame, window, twiddles, a, b, y, lanes):
    """Spectrum of the 2400 samples ``frame`` times ``window`` into ``y``.

    A 1200-point complex DFT of the (even, odd) sample pairs; ``a`` and ``b`` are scratch. float64
    throughout: float32 rounding in the transform is relative to the whole frame, so in music
    with ~70 dB between a frame's loudest and quietest bins the quiet bins' intensity directions
    drift by up to 2e-5 (log-mel by 6e-4 dB), beyond the parity tolerance.
    """
    t = _TWIDDLE_OFFSETS
    _across_blocks(frame, window, a, twiddles)
    # 300 = 4 * 3 * 5 * 5 (``_RADICES``): m = 300 / (radix * done), span = 4 * done, where done
    # is the product of the radices before.
    _radix4(a, b, twiddles, t[1], 75, 4, lanes)
    _radix3(b, a, twiddles, t[2], 25, 16, 4 * lanes)
    _radix5(a, b, twiddles, t[3], 5, 48, 12 * lanes)
    _radix5(b, y, twiddles, t[4], 1, 240, 60 * lanes)
    y[_HALF] = y[0]
    y[_PLANE + _HALF] = y[_PLANE]


@numba.njit(**_INLINE)
def _bin(spectra, channel, k, cos, sin):
    """Bin k of a channel's real frame from the transform Z of its sample pairs.

    With even samples e and odd samples o, Z_k = E_k + i O_k and Z_(1200-k)* = E_k - i O_k, so
    X_k = E_k + exp(-2 pi i k / 2400) O_k (the factors 1/2 are in the window).
    """
    a = channel * _SPECTRUM + k
    b = channel * _SPECTRUM + _HALF - k
    er = spectra[a] + spectra[b]
    ei = spectra[_PLANE + a] - spectra[_PLANE + b]
    o_r = spectra[_PLANE + a] + spectra[_PLANE + b]
    o_i = spectra[b] - spectra[a]
    return er + cos * o_r - sin * o_i, ei + cos * o_i + sin * o_r


@numba.njit(**_INLINE)
def _decibels(values):
    """10 log10 of positive float32 ``values``, in place; inf and NaN stay as they are.

    numpy's float32 log is scalar code here (2 ns a value, a twentieth of the whole pipeline);
    this loop vectorises. With a value 2^e m, m in [sqrt(1/2), sqrt(2)): ln m = 2 atanh(s) for
    s = (m - 1) / (m + 1), |s| < 0.18, whose series to s^7 is within float32 rounding. The
    result matches numpy's float32 ``10 * log10`` to 1e-5 dB.
    """
    bits = values.view(np.int32)
    for i in range(values.shape[0]):
        u = bits[i]
        e = np.float32((u >> 23) - 127)
        m = np.float32(1.0) + np.float32(u & 0x7FFFFF) * np.float32(2.0**-23)
        big = m > _SQRT2
        m = np.float32(0.5) * m if big else m
        e = e + np.float32(1.0) if big else e
        s = (m - np.float32(1.0)) / (m + np.float32(1.0))
        s2 = s * s
        series = np.float32(2.0) + s2 * (_TWO_THIRDS + s2 * (_TWO_FIFTHS + s2 * _TWO_SEVENTHS))
        ln = e * _LN2 + s * series
        values[i] = ln * _DB_PER_LN if e < np.float32(128.0) else values[i]


@numba.njit(**_KERNEL)
def _mel_frame(spectra, rotations, band_first, band_offsets, band_weights, linear, out, g, t):
    """Log-mel power and mel-projected unit intensity of one frame into ``out[g, :, t]``."""
    for k in range(N_BINS):
        cos, sin = rotations[2 * k], rotations[2 * k + 1]
        wr, wi = _bin(spectra, 0, k, cos, sin)
        xr, xi = _bin(spectra, 1, k, cos, sin)
        yr, yi = _bin(spectra, 2, k, cos, sin)
        zr, zi = _bin(spectra, 3, k, cos, sin)
        lr, li = _bin(spectra, 4, k, cos, sin)
        rr, ri = _bin(spectra, 5, k, cos, sin)
        # Intensity Re(conj(W) [X, Y, Z]); silent bins (length 0) stay 0 instead of NaN.
        ix = wr * xr + wi * xi
        iy = wr * yr + wi * yi
        iz = wr * zr + wi * zi
        scale = 1.0 / np.sqrt(max(ix * ix + iy * iy + iz * iz, _INTENSITY_FLOOR**2))
        linear[k] = wr * wr + wi * wi
        linear[_PLANE + k] = xr * xr + xi * xi
        linear[2 * _PLANE + k] = yr * yr + yi * yi
        linear[3 * _PLANE + k] = zr * zr + zi * zi
        linear[4 * _PLANE + k] = lr * lr + li * li
        linear[5 * _PLANE + k] = rr * rr + ri * ri
        linear[6 * _PLANE + k] = ix * scale
        linear[7 * _PLANE + k] = iy * scale
        linear[8 * _PLANE + k] = iz * scale
    # Banded mel sums: nine independent accumulators per band keep the FMA units busy.
    for m in range(N_MELS):
        b0 = band_first[m]
        weights = band_weights[band_offsets[m] : band_offsets[m + 1]]
        p0, p1, p2 = linear[b0:], linear[_PLANE + b0 :], linear[2 * _PLANE + b0 :]
        p3, p4 = linear[3 * _PLANE + b0 :], linear[4 * _PLANE + b0 :]
        p5, u0 = linear[5 * _PLANE + b0 :], linear[6 * _PLANE + b0 :]
        u1, u2 = linear[7 * _PLANE + b0 :], linear[8 * _PLANE + b0 :]
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
        out[g, 0, t, m] = max(a0, _POWER_FLOOR)
        out[g, 1, t, m] = max(a1, _POWER_FLOOR)
        out[g, 2, t, m] = max(a2, _POWER_FLOOR)
        out[g, 3, t, m] = max(a3, _POWER_FLOOR)
        out[g, 4, t, m] = max(a4, _POWER_FLOOR)
        out[g, 5, t, m] = max(a5, _POWER_FLOOR)
        out[g, 6, t, m] = a6
        out[g, 7, t, m] = a7
        out[g, 8, t, m] = a8
    for f in range(_N_LOG):
        _decibels(out[g, f, t])


@numba.njit(**_KERNEL)
def _features(
    mic, music, window, twiddles, rotations, band_first, band_offsets, band_weights,
    a, b, spectra, linear, out, lanes,
):
    """(G, 4, N), (G, 2, N) audio -> base features ``out`` (G, 9, N // 2400, 128).

    ``lanes`` is ``_LANES``, passed at run time (see the Stockham passes).
    """
    for g in range(out.shape[0]):
        for t in range(out.shape[2]):
            samples = slice(t * HOP, (t + 1) * HOP)
            for c in range(_N_MIC):
                y = spectra[c * _SPECTRUM : (c + 1) * _SPECTRUM]
                _fft(mic[g, c, samples], window, twiddles, a, b, y, lanes)
            for c in range(_N_MUSIC):
                y = spectra[(_N_MIC + c) * _SPECTRUM : (_N_MIC + c + 1) * _SPECTRUM]
                _fft(music[g, c, samples], window, twiddles, a, b, y, lanes)
            _mel_frame(
                spectra, rotations, band_first, band_offsets, band_weights, linear, out, g, t
            )


class _Scratch:
    """One thread's work buffers for one frame (~240 kB), each starting on a cache line.

    Every buffer and plane is a whole number of 64-byte lines: the FFT passes run ~20% faster
    when their vector loads and stores never straddle two lines.
    """

    def __init__(self) -> None:
        sizes = {
            "a": _SPECTRUM, "b": _SPECTRUM, "spectra": _N_LOG * _SPECTRUM,
            "linear": len(CHANNELS) * _PLANE,
        }
        memory = np.zeros(sum(sizes.values()) + 8)
        start = -memory.ctypes.data % 64 // memory.itemsize
        for name, size in sizes.items():
            setattr(self, name, memory[start : start + size])
            start += size


_thread_local = threading.local()


def _scratch() -> _Scratch:
    scratch = getattr(_thread_local, "scratch", None)
    if scratch is None:
        scratch = _thread_local.scratch = _Scratch()
    return scratch


def _kernel_dtype(audio: np.ndarray) -> np.ndarray:
    # The kernel is compiled for float32 and float64 only; float16 and long double are rare.
    return audio.astype(np.float32 if audio.dtype.itemsize <= 4 else np.float64, copy=False)


def frame_features(mic: np.ndarray, music: np.ndarray) -> np.ndarray:
    """Base features of every 50 ms frame: (..., 4, N), (..., 2, N) -> (..., 9, N // 2400, 128)."""
    mic = np.asarray(mic)
    music = np.asarray(music)
    _check_audio(mic, music)
    lead, n = mic.shape[:-2], mic.shape[-1]
    features = np.empty((math.prod(lead), len(CHANNELS), n // HOP, N_MELS), dtype=np.float32)
    s = _scratch()
    _features(
        _kernel_dtype(mic.reshape(-1, _N_MIC, n)),
        _kernel_dtype(music.reshape(-1, _N_MUSIC, n)),
        _half_hann(), _twiddles(), _rotations(), *_filterbank_bands(),
        s.a, s.b, s.spectra, s.linear, features, _LANES,
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
