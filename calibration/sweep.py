"""Exponential sine sweeps (Farina) and their deconvolution into impulse responses.

Conventions: 1-D excitations, (channels, n) recordings, float32 in and out. An impulse
response h has h[k] = the response at lag k samples after the excitation's first sample;
``deconvolve`` returns lags [-pre, length).

The inverse filter is the regularised spectral inverse of the excitation actually played
(not Farina's time-reversed, amplitude-enveloped sweep, whose product with the sweep is only
approximately linear phase): ``band_weights(f) * conj(X) / (|X|^2 + eps)``. So excitation
convolved with its inverse filter is a zero-phase band-pass pulse, symmetric about lag 0,
whose peak marks a delay without bias at any sub-sample position. The band weights are 1
inside the band and fall to 0 with raised-cosine edges, which keeps the pulse compact (no
long ringing from brick-wall edges). As with Farina's method, harmonic distortion of an
exponential sweep lands at negative lags, away from the linear response.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from bgm2pose.sensing.errors import UserError

SWEEP_START_HZ = 50.0
SWEEP_STOP_HZ = 20_000.0
# Pass band of the deconvolution: inside the sweep, clear of its faded ends and of the top
# octave edge, where fractional-delay filters (devices, the virtual rig) lose accuracy.
BAND = (100.0, 14_000.0)
BAND_EDGE_OCTAVES = 0.5


class SweepError(UserError, ValueError):
    """Sweep or deconvolution settings that cannot be used."""


def exponential_sweep(seconds: float, sample_rate: int, f_start: float = SWEEP_START_HZ,
                      f_stop: float = SWEEP_STOP_HZ, fade_in: float = 0.05,
                      fade_out: float = 0.005) -> np.ndarray:
    """A Farina sweep from ``f_start`` to ``f_stop`` Hz, peak 1, with raised-cosine fades
    (seconds) that keep its start and end clicks out of the band."""
    if not 0 < f_start < f_stop <= sample_rate / 2:
        raise SweepError(f"sweep {f_start}-{f_stop} Hz does not fit 0 < start < stop <= "
                         f"{sample_rate / 2} Hz; pick e.g. 50-20000 Hz")
    n = round(seconds * sample_rate)
    if n < 2 * int((fade_in + fade_out) * sample_rate) or n < 1000:
        raise SweepError(f"a {seconds} s sweep is too short for its fades; use 0.5 s or more")
    t = np.arange(n) / sample_rate
    rate = np.log(f_stop / f_start) / seconds
    x = np.sin(2 * np.pi * f_start / rate * (np.exp(rate * t) - 1))
    for length, end in ((int(fade_in * sample_rate), False), (int(fade_out * sample_rate), True)):
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(length) / length)
        if end:
            x[n - length:] *= ramp[::-1]
        else:
            x[:length] *= ramp
    return x.astype(np.float32)


def band_weights(n_fft: int, sample_rate: int, band: tuple[float, float] = BAND,
                 edge_octaves: float = BAND_EDGE_OCTAVES) -> np.ndarray:
    """(n_fft // 2 + 1,) weights: 1 in ``band``, raised-cosine to 0 over ``edge_octaves``
    outside each end (on a log-frequency axis)."""
    f = sfft.rfftfreq(n_fft, 1 / sample_rate)
    octaves = np.full(f.shape, -np.inf)
    octaves[1:] = np.log2(f[1:])
    low, high = np.log2(band[0]), np.log2(band[1])
    below = np.clip((octaves - (low - edge_octaves)) / edge_octaves, 0, 1)
    above = np.clip(((high + edge_octaves) - octaves) / edge_octaves, 0, 1)
    return (0.5 - 0.5 * np.cos(np.pi * np.minimum(below, above)))


def inverse_filter(excitation: np.ndarray, n_fft: int, sample_rate: int,
                   band: tuple[float, float] = BAND) -> np.ndarray:
    """The excitation's regularised inverse as an ``n_fft``-point rfft spectrum (see the
    module docstring)."""
    x = sfft.rfft(np.asarray(excitation, np.float64), n_fft)
    power = np.abs(x) ** 2
    weights = band_weights(n_fft, sample_rate, band)
    # Regularise relative to the in-band level: bins the sweep barely excites stay bounded.
    eps = 1e-3 * np.mean(power[weights > 0.5]) if np.any(weights > 0.5) else 1.0
    return weights * np.conj(x) / (power + eps)


def deconvolve(recorded: np.ndarray, excitation: np.ndarray, sample_rate: int, length: int,
               pre: int = 0, band: tuple[float, float] = BAND) -> np.ndarray:
    """Impulse responses (channels, pre + length) of ``recorded`` (channels, n), whose
    sample 0 is the excitation's first sample, at lags [-pre, length) (linear, not circular:
    the FFT is long enough for both signals)."""
    recorded = np.atleast_2d(np.asarray(recorded, np.float64))
    excitation = np.asarray(excitation, np.float64)
    if excitation.ndim != 1 or not np.any(excitation):
        raise SweepError("the excitation must be a non-silent 1-D signal")
    if length < 1 or pre < 0 or pre + length > recorded.shape[1]:
        raise SweepError(f"lags [-{pre}, {length}) do not fit a recording of "
                         f"{recorded.shape[1]} samples; record longer or ask for fewer lags")
    n_fft = sfft.next_fast_len(recorded.shape[1] + excitation.size, real=True)
    spectrum = sfft.rfft(recorded, n_fft, axis=-1) * inverse_filter(excitation, n_fft,
                                                                     sample_rate, band)
    h = sfft.irfft(spectrum, n_fft, axis=-1)
    return np.concatenate([h[:, n_fft - pre:], h[:, :length]], axis=1).astype(np.float32)
