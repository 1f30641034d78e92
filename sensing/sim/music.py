"""Procedural background music for the virtual rig: seeded ambient and jazz tracks.

The paper plays three ambient tracks and one jazz track; no recordings can be shipped, so the
simulator synthesises music with the properties the sensing depends on:

* energy across the whole band up to ~20 kHz (the features use 128 mel bands up to 24 kHz);
* two different channels, so the left and right speakers are distinguishable;
* genre character: ambient is slow, smooth and never silent; jazz has a swung beat, many
  onsets, phrase-level dynamics and short "stop-time" gaps of digital silence.

Conventions: ``generate`` returns ``(2, N)`` float32, row 0 = left speaker, row 1 = right
speaker (named from the listener's side, as in ``rig.Rig``), ``N = round(seconds * rate)``.
Every track is mastered to an RMS of -20 dBFS over both channels with peaks below -1 dBFS.
A track is a pure function of ``(genre, seed, seconds, sample_rate)``: the same spec gives a
bitwise identical array; a different seed gives a different key, tempo, progression and
timbre. A track of one length is *not* a prefix of a longer one with the same seed.

Speed: everything is numpy/scipy vectorised (notes are precomputed buffers added into
buses; filters run through ``scipy.signal``): about 1 s per minute of music on one (slow,
shared) core. Memory is ~40 bytes per output sample, so render long playlists as several
tracks of minutes rather than one track of hours.

Run ``python -m bgm2pose.sensing.sim.music [GENRE-SEED] [--seconds S] [--wav PATH]`` to print
level, stereo, spectrum and timing figures for a track (and optionally write it to listen).
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass

import numpy as np
from scipy import signal

from bgm2pose.sensing.errors import UserError

GENRES = ("ambient", "jazz")
DEFAULT_SECONDS = 180.0
MIN_SAMPLE_RATE = 32_000  # the cymbals and air need a band up to ~14 kHz
TARGET_RMS_DBFS = -20.0
PEAK_CEILING_DBFS = -1.05  # a hair under -1 dBFS so float32 rounding cannot reach it
_LIMITER_KNEE_DBFS = -6.0

_NAME = re.compile(r"^([a-z]+)-(\d+)$")


class MusicError(UserError, ValueError):
    """A track that cannot be generated (unknown genre, bad seed or duration)."""


@dataclass(frozen=True)
class TrackSpec:
    """One procedural track: genre, seed (any non-negative int) and length in seconds."""

    genre: str
    seed: int
    seconds: float

    def __post_init__(self) -> None:
        if self.genre not in GENRES:
            raise MusicError(f"unknown genre {self.genre!r}; use one of {', '.join(GENRES)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) \
                or self.seed < 0:
            raise MusicError(f"seed {self.seed!r} is not a non-negative integer; pass e.g. 7")
        if not (isinstance(self.seconds, (int, float, np.number)) and math.isfinite(self.seconds)
                and self.seconds > 0):
            raise MusicError(f"duration {self.seconds!r} s is not a positive number of seconds")

    @property
    def name(self) -> str:
        """Track name as used in playlists and session files, e.g. ``ambient-0007``."""
        return f"{self.genre}-{int(self.seed):04d}"

    @classmethod
    def from_name(cls, name: str, seconds: float = DEFAULT_SECONDS) -> TrackSpec:
        """Parse a name made by ``name`` (``"jazz-0003"``) back into a spec of ``seconds``."""
        match = _NAME.match(name.strip())
        if match is None:
            raise MusicError(f"track name {name!r} is not GENRE-SEED; write e.g. 'jazz-0003'")
        return cls(match.group(1), int(match.group(2)), seconds)


def generate(spec: TrackSpec, sample_rate: int = 48_000) -> np.ndarray:
    """Render ``spec`` as ``(2, N)`` float32 (left, right) at ``sample_rate``, mastered."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) \
            or sample_rate < MIN_SAMPLE_RATE:
        raise MusicError(f"sample rate {sample_rate!r} is not an integer of at least "
                         f"{MIN_SAMPLE_RATE} Hz; use 48000")
    n = max(1, round(spec.seconds * sample_rate))
    rng = np.random.default_rng([GENRES.index(spec.genre), int(spec.seed)])
    render = _ambient if spec.genre == "ambient" else _jazz
    return _master(render(rng, n, int(sample_rate)))


# ---------------------------------------------------------------------------------------------
# shared DSP (float32 buses: half the memory traffic of float64, ample for 16-bit-class audio)

_TWO_PI = np.float32(2 * np.pi)


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((float(midi) - 69.0) / 12.0)


def _db(gain_db: float) -> float:
    return 10.0 ** (gain_db / 20.0)


def _place(bus: np.ndarray, buf: np.ndarray, start: int) -> None:
    """Add ``buf`` into ``bus`` (last axis) from sample ``start``; clips at both ends."""
    n = bus.shape[-1]
    lo = max(start, 0)
    hi = min(n, start + buf.shape[-1])
    if hi > lo:
        bus[..., lo:hi] += buf[..., lo - start : hi - start]


def _phase(hz: float, n: int, rate: float, phase0: float) -> np.ndarray:
    """Oscillator phase in [0, 1) as float32 from a wrapping uint32 accumulator: exact over
    any duration (a float phase of a 5 kHz tone after a minute has no fraction bits left)."""
    inc = np.uint32(round(hz / rate * 2.0**32) % 2**32)
    acc = np.arange(n, dtype=np.uint32) * inc + np.uint32(int(phase0 * 2.0**32) % 2**32)
    return (acc >> np.uint32(8)).astype(np.float32) * np.float32(2.0**-24)


def _sine(hz: float, n: int, rate: float, phase0: float = 0.0) -> np.ndarray:
    return np.sin(_TWO_PI * _phase(hz, n, rate, phase0))


def _saw(hz: float, n: int, rate: float, phase0: float) -> np.ndarray:
    """Band-limited (PolyBLEP) sawtooth in [-1, 1]: bright like an analogue pad, no aliasing."""
    dt = np.float32(hz / rate)
    phase = _phase(hz, n, rate, phase0)
    y = 2 * phase - 1
    lo = np.flatnonzero(phase < dt)
    x = phase[lo] / dt
    y[lo] -= x + x - x * x - 1
    hi = np.flatnonzero(phase > 1 - dt)
    x = (phase[hi] - 1) / dt
    y[hi] -= x * x + x + x + 1
    return y


def _lfo(rng: np.random.Generator, n: int, rate: float, lo_hz: float, hi_hz: float) -> np.ndarray:
    """Slow sine in [-1, 1] of random rate in [lo_hz, hi_hz] and random phase, held for 32
    samples at a time (it moves far below audio rate)."""
    hz, phase = rng.uniform(lo_hz, hi_hz), rng.uniform(0, 2 * np.pi)
    steps = -(-n // 32)
    coarse = np.sin(2 * np.pi * hz * 32 * np.arange(steps) / rate + phase).astype(np.float32)
    return np.repeat(coarse, 32)[:n]


def _butter(kind: str, hz: float | tuple[float, float], sr: float, order: int = 2) -> np.ndarray:
    """Butterworth SOS with the edge(s) kept below 0.45 * rate (matters below 44.1 kHz)."""
    edges = np.minimum(np.asarray(hz, float), 0.45 * sr)
    wn = edges if edges.ndim else float(edges)
    return signal.butter(order, wn, btype=kind, fs=sr, output="sos")


def _gliding_lowpass(x: np.ndarray, cutoff_hz: np.ndarray, rate: float, q: float) -> np.ndarray:
    """Resonant low-pass whose cutoff follows ``cutoff_hz`` (one value per sample of ``x``).

    Realised as a crossfade across a bank of fixed resonant low-passes a third of an octave
    apart (neighbours have nearly the same phase response, so the blend behaves like an
    in-between cutoff): a dozen whole-signal ``lfilter`` calls instead of a per-sample loop.
    """
    lo, hi = float(cutoff_hz.min()), float(cutoff_hz.max())
    bank = np.geomspace(lo, hi, max(2, math.ceil(3 * math.log2(hi / lo)) + 1))
    pos = np.interp(np.log(cutoff_hz), np.log(bank), np.arange(bank.size)).astype(np.float32)
    out = np.zeros_like(x)
    for k, fc in enumerate(bank):
        weight = np.maximum(0, 1 - np.abs(pos - k))
        # RBJ cookbook biquad: a resonant peak at the cutoff for q > 0.707.
        w0 = 2 * np.pi * min(fc, 0.45 * rate) / rate
        alpha = np.sin(w0) / (2 * q)
        a = np.array([1 + alpha, -2 * np.cos(w0), 1 - alpha])
        b = np.array([1, 2, 1]) * (1 - np.cos(w0)) / 2
        out += weight * signal.lfilter(b / a[0], a / a[0], x).astype(np.float32)
    return out


def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = np.sqrt(np.mean(np.square(x)))
    return x / rms if rms > 0 else x


def _pan_into(out: np.ndarray, mono: np.ndarray, pan: float, delay: int) -> None:
    """Add ``mono`` into stereo ``out`` with a constant-power pan (-1 left .. +1 right) and the
    far channel ``delay`` samples late, like a spaced microphone pair: level and time
    differences make the two speakers distinct."""
    theta = (pan + 1) * np.pi / 4
    gains = (np.float32(np.cos(theta)), np.float32(np.sin(theta)))
    far = 0 if pan > 0 else 1
    for ch in range(2):
        d = delay if ch == far else 0
        out[ch, d:] += gains[ch] * mono[: mono.size - d]


def _master(mix: np.ndarray) -> np.ndarray:
    """Short edge fades, RMS to -20 dBFS, soft knee limiter to the ceiling; float32, in place."""
    mix = mix.astype(np.float32, copy=False)
    n = mix.shape[1]
    fade = min(n // 2, 240)
    if fade > 0:
        ramp = (np.sin(np.linspace(0, np.pi / 2, fade)) ** 2).astype(np.float32)
        mix[:, :fade] *= ramp
        mix[:, n - fade :] *= ramp[::-1]
    rms = math.sqrt(float(np.sum(np.square(mix), dtype=np.float64)) / mix.size)
    if rms == 0:
        return mix
    mix *= np.float32(_db(TARGET_RMS_DBFS) / rms)
    # Linear below the knee, tanh above it: continuous slope, never reaches the ceiling.
    knee, ceil = _db(_LIMITER_KNEE_DBFS), _db(PEAK_CEILING_DBFS)
    flat = mix.reshape(-1)
    over = np.flatnonzero(np.abs(flat) > knee)
    mag = np.abs(flat[over]).astype(np.float64)
    soft = knee + (ceil - knee) * np.tanh((mag - knee) / (ceil - knee))
    flat[over] = np.sign(flat[over]) * soft
    return mix


# ---------------------------------------------------------------------------------------------
# ambient: pads through evolving low-passes over a drone, with shimmer and air

_MODES = {
    "ionian": (0, 2, 4, 5, 7, 9, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "aeolian": (0, 2, 3, 5, 7, 8, 10),
}
# Chord degrees an ambient progression favours (tonic, IV, V, vi-like), as weights per degree.
_DEGREE_WEIGHTS = np.array([3.0, 1.0, 1.5, 2.5, 2.0, 2.5, 0.5])
# The pads are rendered at a quarter of the output rate and upsampled: their low-pass never
# opens past ~4 kHz, and the saw voices are most of the ambient cost.
_PAD_DECIMATION = 4


@dataclass(frozen=True)
class _Chord:
    start: int  # samples; may be negative (the first chord is already sounding at 0)
    length: int  # samples until the next chord starts
    notes: tuple[int, ...]  # MIDI


def _ambient(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    root = int(rng.integers(12))
    scale = np.array(_MODES[list(_MODES)[rng.integers(len(_MODES))]])
    xfade = rng.uniform(2.0, 4.0)
    chords = _ambient_chords(rng, n, sr, root, scale, xfade)
    layers = (
        (_pad(rng, n, sr, chords, xfade), 0.0),
        (_drone(rng, n, sr, root), rng.uniform(-8, -4)),
        (_shimmer(rng, n, sr, chords), rng.uniform(-18, -13)),
        (_air(rng, n, sr), rng.uniform(-26, -21)),
    )
    return sum(_unit_rms(layer) * np.float32(_db(gain)) for layer, gain in layers)


def _ambient_chords(rng, n, sr, root, scale, xfade) -> list[_Chord]:
    """Diatonic 3- to 5-note chords of 6-14 s; the first starts one crossfade before 0, so
    the track opens at full level (ambient is never silent)."""
    chords, degree = [], 0
    start = -int(xfade * sr)
    while start < n:
        length = int(rng.uniform(6.0, 14.0) * sr)
        steps = degree + 2 * np.arange(rng.integers(3, 6))
        pcs = root + scale[steps % 7] + 12 * (steps // 7)
        low = 50 + (pcs[0] - 50) % 12  # chord root in [50, 62)
        chords.append(_Chord(start, length, tuple(int(m) for m in low + pcs - pcs[0])))
        start += length
        weights = _DEGREE_WEIGHTS.copy()
        weights[degree] = 0.0
        degree = int(rng.choice(7, p=weights / weights.sum()))
    return chords


def _pad(rng, n, sr, chords, xfade) -> np.ndarray:
    """Detuned saw pairs per note and channel, crossfaded chord to chord, then a resonant
    low-pass per channel whose cutoff drifts between ~250 Hz and ~4 kHz at its own pace."""
    rate = sr / _PAD_DECIMATION
    m = -(-n // _PAD_DECIMATION)
    fade = int(xfade * rate)
    ramp = (np.sin(np.linspace(0, np.pi / 2, fade)) ** 2).astype(np.float32)
    bus = np.zeros((2, m), np.float32)
    for chord in chords:
        start, length = chord.start // _PAD_DECIMATION, chord.length // _PAD_DECIMATION
        total = min(length + fade, m - start)
        env = np.ones(total, np.float32)
        env[: min(fade, total)] = ramp[:total]
        if total > length:
            env[length:] = ramp[::-1][: total - length]
        env /= len(chord.notes)
        for midi in chord.notes:
            for ch in range(2):
                cents = rng.uniform(3, 8)
                pair = sum(_saw(_hz(midi) * 2 ** (s * cents / 1200), total, rate, rng.random())
                           for s in (-1, 1))
                _place(bus[ch], pair * env, start)
    t = np.arange(m) / rate
    q = rng.uniform(0.9, 2.0)
    out = np.empty((2, n), np.float32)
    for ch in range(2):
        lfo = 0.6 * np.sin(2 * np.pi * rng.uniform(0.02, 0.06) * t + rng.uniform(0, 2 * np.pi)) \
            + 0.4 * np.sin(2 * np.pi * rng.uniform(0.005, 0.015) * t + rng.uniform(0, 2 * np.pi))
        cutoff = np.exp(np.log(250.0) + (np.log(4000.0) - np.log(250.0)) * (0.5 + 0.5 * lfo))
        filtered = _gliding_lowpass(bus[ch], cutoff, rate, q)
        out[ch] = signal.resample_poly(filtered, _PAD_DECIMATION, 1)[:n]
        out[ch] *= 1 + np.float32(0.25) * _lfo(rng, n, sr, 0.03, 0.1)
    return out


def _drone(rng, n, sr, root) -> np.ndarray:
    """Root, fifth and octave in the bass, darkly filtered, slowly breathing and panning."""
    base = 36 + (root if root < 7 else root - 12)
    mono = sum(np.float32(w) * _saw(_hz(base + iv + rng.uniform(-0.05, 0.05)), n, sr, rng.random())
               for iv, w in ((0, 1.0), (7, 0.6), (12, 0.4)))
    mono = signal.sosfilt(_butter("lowpass", 5 * _hz(base), sr), mono).astype(np.float32)
    mono *= 1 + np.float32(0.3) * _lfo(rng, n, sr, 0.02, 0.05)
    theta = (1 + np.float32(0.6) * _lfo(rng, n, sr, 0.01, 0.03)) * np.float32(np.pi / 4)
    return np.stack([np.cos(theta) * mono, np.sin(theta) * mono])


def _shimmer(rng, n, sr, chords) -> np.ndarray:
    """Long, Hann-shaped high sine grains on the current chord's notes, 2-4 octaves up."""
    bus = np.zeros((2, n), np.float32)
    starts = [c.start for c in chords]
    for _ in range(max(1, round(rng.uniform(0.6, 1.2) * n / sr))):
        length = int(rng.uniform(1.5, 4.0) * sr)
        start = int(rng.integers(-length // 2, n))
        notes = chords[bisect.bisect_right(starts, max(start, 0)) - 1].notes
        up = int(rng.choice(notes)) + 12 * int(rng.integers(2, 5))
        midi = 88 + (up - 88) % 30  # folded into ~1.3-7.5 kHz
        hz = _hz(midi)
        tone = _sine(hz, length, sr, rng.random())
        if 2 * hz < 0.45 * sr:
            tone += np.float32(0.3) * _sine(2 * hz, length, sr)
        grain = tone * np.sin(np.linspace(0, np.pi, length, dtype=np.float32)) ** 2
        theta = rng.uniform(0.1, 0.9) * np.pi / 2
        grain *= np.float32(rng.uniform(0.3, 1.0))
        gains = np.array([[np.cos(theta)], [np.sin(theta)]], np.float32)
        _place(bus, gains * grain, start)
    return bus


def _air(rng, n, sr) -> np.ndarray:
    """Independent band-limited noise per channel (high-passed, gently rolled off at the top)
    with slow swells: the breathy top octaves real ambient recordings carry."""
    sos = np.concatenate([_butter("highpass", rng.uniform(2500, 5000), sr),
                          _butter("lowpass", rng.uniform(11_000, 16_000), sr, order=1)])
    noise = signal.sosfilt(sos, rng.standard_normal((2, n), dtype=np.float32), axis=-1)
    noise = noise.astype(np.float32, copy=False)
    for ch in range(2):
        noise[ch] *= 1 + np.float32(0.5) * _lfo(rng, n, sr, 0.03, 0.1)
    return noise


# ---------------------------------------------------------------------------------------------
# jazz: ii-V-I changes, Rhodes comping and lines, walking bass, swung drums, stop-time gaps

# Rootless 7th/9th voicings (semitones above the chord root) and the chord tones the bass uses.
_VOICINGS = {
    "maj7": (4, 7, 11, 14),
    "6": (4, 7, 9, 14),
    "m7": (3, 7, 10, 14),
    "7": (4, 9, 10, 14),
    "m7b5": (3, 6, 10, 12),
}
_CHORD_TONES = {
    "maj7": (0, 4, 7, 11),
    "6": (0, 4, 7, 9),
    "m7": (0, 3, 7, 10),
    "7": (0, 4, 7, 10),
    "m7b5": (0, 3, 6, 10),
}
# Comping rhythms per bar as swung-eighth indices (even = on the beat, odd = the "and").
_COMP_PATTERNS = ((0, 3), (3, 7), (2, 6), (0,), (1, 5), (3,), (0, 5), (2, 5, 7))


@dataclass(frozen=True)
class _Grid:
    """Beat clock: a position in beats (with swing already applied) -> a sample index."""

    beat_s: float
    swing: float
    sr: int

    def eighth(self, index: int) -> float:
        return index // 2 + (self.swing if index % 2 else 0.0)

    def sample(self, pos: float, jitter_s: float = 0.0) -> int:
        return int(round((pos * self.beat_s + jitter_s) * self.sr))


def _jazz(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    bpm = rng.uniform(100, 180)
    # Faster tunes swing straighter.
    swing = float(np.interp(bpm, [100, 180], [0.66, 0.58])) + rng.uniform(-0.02, 0.02)
    grid = _Grid(60.0 / bpm, swing, sr)
    n_bars = int(n / sr / grid.beat_s / 4) + 2
    chords = _jazz_changes(rng, 4 * n_bars)
    gaps = _stop_times(rng, n, grid)
    level = _phrase_dynamics(rng, 4 * n_bars)

    gap_starts = [a for a, _ in gaps]

    def playing(pos: float) -> bool:
        k = bisect.bisect_right(gap_starts, pos) - 1
        return k < 0 or pos >= gaps[k][1]

    def gain(pos: float) -> float:
        return float(level[min(int(pos), len(level) - 1)])

    buses = {
        "keys": _keys(rng, n, grid, chords, playing, gain),
        "bass": _walking_bass(rng, n, grid, chords, playing, gain),
        **_drums(rng, n, grid, n_bars, playing, gain),
    }
    pans = {"keys": rng.uniform(-0.45, -0.15), "bass": rng.choice([-1, 1]) * rng.uniform(0.1, 0.25),
            "ride": rng.uniform(0.25, 0.55), "hat": rng.uniform(-0.6, -0.3),
            "snare": rng.uniform(-0.15, 0.15), "kick": rng.uniform(-0.1, 0.1)}
    dry = np.zeros((2, n), np.float32)
    for name, bus in buses.items():
        _pan_into(dry, bus, pans[name], int(abs(pans[name]) * 0.0008 * sr))

    gate = np.ones(n, np.float32)
    fade = int(0.04 * sr)
    for a, b in gaps:
        lo, hi = min(grid.sample(a), n), min(grid.sample(b), n)
        gate[lo:hi] = 0.0
        m = min(fade, hi - lo)
        gate[lo : lo + m] = np.cos(np.linspace(0, np.pi / 2, fade))[:m] ** 2
    dry *= gate
    ir, wet_gain = _room_ir(rng, sr), np.float32(_db(rng.uniform(-16, -11)))
    for ch in range(2):  # one channel at a time keeps the FFT buffers small
        dry[ch] += wet_gain * signal.oaconvolve(dry[ch], ir[ch])[:n]
    # The band stops dead in a gap: the room tail is cut too, so a gap is digital silence.
    dry[:, gate == 0] = 0.0
    return dry


def _jazz_changes(rng, n_beats) -> list[tuple[int, str]]:
    """Per beat (root pitch class, quality): ii-V-I cycles, minor ii-V-i and I-VI-ii-V
    turnarounds in a random key that occasionally modulates."""
    key, beats = int(rng.integers(12)), []
    while len(beats) < n_beats:
        kind = rng.choice(["long", "short", "minor", "turnaround"], p=[0.35, 0.3, 0.15, 0.2])
        if kind == "long":
            unit = [(key + 2, "m7", 4), (key + 7, "7", 4), (key, rng.choice(["maj7", "6"]), 8)]
        elif kind == "short":
            unit = [(key + 2, "m7", 2), (key + 7, "7", 2), (key, "maj7", 4)]
        elif kind == "minor":
            unit = [(key + 2, "m7b5", 4), (key + 7, "7", 4), (key, "m7", 8)]
        else:
            unit = [(key, "maj7", 2), (key + 9, "7", 2), (key + 2, "m7", 2), (key + 7, "7", 2)]
        for root, quality, length in unit:
            beats += [(root % 12, str(quality))] * length
        if rng.random() < 0.3:
            key = (key + int(rng.choice([5, 7, 2, -2, 3]))) % 12
    return beats[:n_beats]


def _stop_times(rng, n, grid) -> list[tuple[float, float]]:
    """Gaps (start, end) in beats where the band stops for 0.5-2 s: the first within ~3-9 s,
    then every 6-16 s, each starting on a bar line and lasting a whole number of beats."""
    gaps, t = [], rng.uniform(3.0, 9.0)
    while t < n / grid.sr:
        start = 4 * math.ceil(t / grid.beat_s / 4)
        beats = int(np.clip(round(rng.uniform(0.6, 2.0) / grid.beat_s),
                            math.ceil(0.6 / grid.beat_s), math.floor(2.0 / grid.beat_s)))
        gaps.append((float(start), float(start + beats)))
        t = (start + beats) * grid.beat_s + rng.uniform(6.0, 16.0)
    return gaps


def _phrase_dynamics(rng, n_beats) -> np.ndarray:
    """Linear gain per beat: levels at 4- or 8-bar phrase boundaries, at least 3 dB apart,
    joined by ramps in dB (crescendi and decrescendi)."""
    bounds, levels = [0], [rng.uniform(-6, 0)]
    while bounds[-1] < n_beats:
        bounds.append(bounds[-1] + 4 * int(rng.choice([4, 8])))
        step = rng.uniform(3, 8) * rng.choice([-1, 1])
        nxt = levels[-1] + step
        levels.append(nxt if -10 <= nxt <= 0 else levels[-1] - step)
    return 10 ** (np.interp(np.arange(n_beats), bounds, levels) / 20)


def _release(buf: np.ndarray, length: int, release: int) -> np.ndarray:
    """The note cut to ``length`` samples plus a cosine release of ``release`` samples."""
    out = buf[: length + release].copy()
    tail = out[min(length, out.size) :]
    tail *= np.cos(np.linspace(0, np.pi / 2, release, dtype=np.float32))[: tail.size] ** 2
    return out


def _rhodes(midi: int, sr: int) -> np.ndarray:
    """Electric-piano-like tone: FM with a decaying index (the bark), a short inharmonic
    tine click, pitch-dependent exponential decay."""
    hz = _hz(midi)
    n = int(2.5 * sr)
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    carrier = _TWO_PI * _phase(hz, n, sr, 0.0)
    index = np.float32(1.4) * np.exp(t / np.float32(-0.25)) + np.float32(0.25)
    decay = np.float32(np.clip(1.2 * np.sqrt(261.6 / hz), 0.4, 2.0))
    tone = np.sin(carrier + index * np.sin(carrier)) * np.exp(-t / decay)
    if 7.1 * hz < 0.45 * sr:
        tone += np.float32(0.25) * _sine(7.1 * hz, n, sr) * np.exp(t / np.float32(-0.02))
    tone[: int(0.002 * sr)] *= np.linspace(0, 1, int(0.002 * sr), dtype=np.float32)
    return tone


def _keys(rng, n, grid, chords, playing, gain) -> np.ndarray:
    """Rootless voicings comped in swung rhythms (anticipating the next chord on an "and"),
    plus short right-hand eighth-note lines on chord tones in some bars."""
    bus, cache = np.zeros(n, np.float32), {}
    sr = grid.sr
    release = int(0.05 * sr)

    def note(midi: int, pos: float, beats: float, vel: float, jitter: float) -> None:
        if midi not in cache:
            cache[midi] = _rhodes(midi, sr)
        buf = _release(cache[midi], int(beats * grid.beat_s * sr), release)
        _place(bus, np.float32(vel * gain(pos)) * buf, grid.sample(pos, jitter))

    n_bars = len(chords) // 4
    line = 74
    for bar in range(n_bars):
        pattern = _COMP_PATTERNS[rng.integers(len(_COMP_PATTERNS))]
        for e in pattern:
            pos = 4 * bar + grid.eighth(e)
            if not playing(pos):
                continue
            beat = min(int(pos) + (e % 2), len(chords) - 1)  # an "and" anticipates the next beat
            root, quality = chords[beat]
            low = 50 + (root + _VOICINGS[quality][0] - 50) % 12
            length = rng.uniform(0.4, 1.6)
            vel = rng.uniform(0.45, 0.85)
            for k, iv in enumerate(_VOICINGS[quality]):
                note(low + iv - _VOICINGS[quality][0], pos, length, vel * rng.uniform(0.85, 1.0),
                     0.006 * k * rng.random())
        if rng.random() < 0.45:
            first = int(rng.integers(0, 4))
            for e in range(first, min(8, first + int(rng.integers(3, 9)))):
                pos = 4 * bar + grid.eighth(e)
                if not playing(pos):
                    continue
                root, quality = chords[min(int(pos), len(chords) - 1)]
                pcs = np.array(_CHORD_TONES[quality] + (14,)) + root
                options = [m for m in range(67, 87)
                           if (m - root) % 12 in (pcs - root) % 12 and m != line]
                line = min(options, key=lambda m: abs(m - line) + 3 * rng.random())
                note(line, pos, 0.5, rng.uniform(0.35, 0.7), rng.normal(0, 0.004))
    return bus


def _pluck_bass(midi: int, sr: int) -> np.ndarray:
    """Upright-bass-like pluck: harmonics whose decay quickens with harmonic number."""
    hz = _hz(midi)
    n = int(1.6 * sr)
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    tone = np.zeros(n, np.float32)
    for k in range(1, 9):
        if k * hz < 0.45 * sr:
            decay = np.exp(t * np.float32(-(1.5 + 0.9 * k)))
            tone += np.float32(k**-1.2) * _sine(k * hz, n, sr) * decay
    tone[: int(0.003 * sr)] *= np.linspace(0, 1, int(0.003 * sr), dtype=np.float32)
    return tone


def _walking_bass(rng, n, grid, chords, playing, gain) -> np.ndarray:
    """Quarter notes: the root on each chord change, a chromatic or dominant approach to the
    next root before a change, chord tones in between, each near the previous note."""
    bus, cache = np.zeros(n, np.float32), {}
    sr = grid.sr
    prev = 40
    for b, (root, quality) in enumerate(chords):
        nxt = chords[b + 1][0] if b + 1 < len(chords) else root
        if b == 0 or chords[b - 1] != chords[b]:
            pc = root
        elif b + 1 < len(chords) and chords[b + 1] != chords[b]:
            pc = nxt + int(rng.choice([-1, 1, 7], p=[0.35, 0.35, 0.3]))
        else:
            pc = root + int(rng.choice(_CHORD_TONES[quality][1:]))
        candidates = [m for m in range(28, 51) if (m - pc) % 12 == 0]
        # Nearest to the previous note, avoiding repeats, with a little randomness in ties.
        midi = min(candidates, key=lambda m: abs(m - prev) + 6 * (m == prev) + 2 * rng.random())
        prev = midi
        if not playing(b):
            continue
        if midi not in cache:
            cache[midi] = _pluck_bass(midi, sr)
        buf = _release(cache[midi], int(0.92 * grid.beat_s * sr), int(0.03 * sr))
        vel = np.float32(rng.uniform(0.8, 1.0) * gain(b))
        _place(bus, vel * buf, grid.sample(b, rng.normal(0, 0.004)))
    return bus


def _drum_kit(rng, sr) -> dict[str, list[np.ndarray]]:
    """A few variants of each drum (different noise draws), so repeated hits are not identical.
    Cymbals are broadband noise bursts with decay: the real high-frequency content of jazz."""

    def t(seconds: float) -> np.ndarray:
        return np.arange(int(seconds * sr)) / sr

    def noise(seconds: float, sos: np.ndarray) -> np.ndarray:
        return signal.sosfilt(sos, rng.standard_normal(int(seconds * sr)))

    bell_hz = rng.uniform(380, 560) * np.array([1.0, 1.47, 2.09, 2.56, 3.37, 4.05, 5.3, 7.1, 9.6])
    bell_hz = bell_hz[bell_hz < 0.45 * sr]
    kit = {"ride": [], "hat": [], "snare": [], "kick": []}
    for _ in range(3):
        tr = t(1.8)
        bell = np.sum(np.sin(2 * np.pi * bell_hz[:, None] * tr * rng.uniform(0.995, 1.005)), axis=0)
        tilt = np.concatenate([_butter("highpass", 3000, sr), _butter("lowpass", 9000, sr, 1)])
        wash = noise(1.8, tilt)
        kit["ride"].append(wash * np.exp(-tr / rng.uniform(0.45, 0.7))
                           + 0.8 * rng.standard_normal(tr.size) * np.exp(-tr / 0.004)
                           + 0.04 * bell * np.exp(-tr / 0.9))
        th = t(0.2)
        kit["hat"].append(noise(0.2, _butter("bandpass", (6000, 14_000), sr)) * np.exp(-th / 0.025))
        ts = t(0.35)
        kit["snare"].append(noise(0.35, _butter("bandpass", (1500, 9000), sr)) * np.exp(-ts / 0.07)
                            + 0.5 * np.sin(2 * np.pi * 185 * ts) * np.exp(-ts / 0.05))
        tk = t(0.5)
        sweep = 2 * np.pi * np.cumsum(45 + 70 * np.exp(-tk / 0.03)) / sr
        kit["kick"].append(np.sin(sweep) * np.exp(-tk / 0.15))
    return {name: [v.astype(np.float32) for v in variants] for name, variants in kit.items()}


def _drums(rng, n, grid, n_bars, playing, gain) -> dict[str, np.ndarray]:
    """Ride "ding, ding-a-ding" on swung eighths, hi-hat foot on 2 and 4, feathered kick with
    the odd bomb, snare ghost notes with the odd accent; small timing and velocity jitter."""
    kit = _drum_kit(rng, grid.sr)
    buses = {name: np.zeros(n, np.float32) for name in kit}
    level = {"ride": 0.14, "hat": 0.2, "snare": 0.35, "kick": 0.7}

    def hit(name: str, pos: float, vel: float) -> None:
        if playing(pos):
            variant = kit[name][rng.integers(len(kit[name]))]
            _place(buses[name], np.float32(level[name] * vel * gain(pos)) * variant,
                   grid.sample(pos, rng.normal(0, 0.003)))

    for bar in range(n_bars):
        for e in range(8):
            pos = 4 * bar + grid.eighth(e)
            beat, offbeat = e // 2, e % 2
            if not offbeat or (beat in (1, 3)) != (rng.random() < 0.1):
                accent = beat in (1, 3) and not offbeat
                hit("ride", pos, rng.uniform(0.8, 1.0) if accent else rng.uniform(0.55, 0.75))
            if not offbeat and beat in (1, 3):
                hit("hat", pos, rng.uniform(0.7, 1.0))
            if not offbeat:
                hit("kick", pos, rng.uniform(0.12, 0.22))
            elif rng.random() < 0.06:
                hit("kick", pos, rng.uniform(0.6, 0.9))
            if rng.random() < 0.25:
                hit("snare", pos, rng.uniform(0.08, 0.22))
            elif offbeat and rng.random() < 0.05:
                hit("snare", pos, rng.uniform(0.5, 0.8))
    return buses


def _room_ir(rng, sr) -> np.ndarray:
    """(2, L) decorrelated exponentially decaying noise tails (a small club room), unit energy
    per channel; different noise per side widens the image like a real stereo recording."""
    rt60 = rng.uniform(0.5, 0.9)
    t = np.arange(int(rt60 * sr)) / sr
    tail = rng.standard_normal((2, t.size)) * 10 ** (-3 * t / rt60)
    tail = signal.sosfilt(_butter("lowpass", 7000, sr, order=1), tail, axis=-1)
    tail[:, : int(0.012 * sr)] = 0.0  # pre-delay
    return (tail / np.sqrt(np.sum(tail**2, axis=-1, keepdims=True))).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# eyeball check: python -m bgm2pose.sensing.sim.music jazz-0003 --seconds 60 --wav /tmp/j.wav


def _stats(audio: np.ndarray, sr: int) -> dict[str, float]:
    """Level, peak, channel correlation, share of energy above 10 kHz, silent 50 ms frames."""
    x = audio.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(x.shape[1], 1 / sr)
    hop = sr // 20
    frames = x[:, : x.shape[1] // hop * hop].reshape(2, -1, hop)
    frame_db = 10 * np.log10(np.mean(frames ** 2, axis=(0, 2)) + 1e-20)
    return {
        "rms_dbfs": 10 * np.log10(np.mean(x ** 2)),
        "peak_dbfs": 20 * np.log10(np.max(np.abs(x))),
        "lr_correlation": float(np.corrcoef(x[0], x[1])[0, 1]),
        "above_10k_db": 10 * np.log10(spectrum[:, freqs > 10_000].sum() / spectrum.sum()),
        "above_16k_db": 10 * np.log10(spectrum[:, freqs > 16_000].sum() / spectrum.sum()),
        "silent_frames_pct": 100 * float(np.mean(frame_db < -60)),
    }


def main(argv: list[str] | None = None) -> None:
    import argparse
    import time

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tracks", nargs="*", default=["ambient-0000", "jazz-0000"])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--wav", help="write the (last) track here to listen; never commit it")
    args = parser.parse_args(argv)
    for name in args.tracks:
        spec = TrackSpec.from_name(name, args.seconds)
        began = time.perf_counter()
        audio = generate(spec)
        elapsed = time.perf_counter() - began
        figures = ", ".join(f"{k} {v:.2f}" for k, v in _stats(audio, 48_000).items())
        per_minute = 60 * elapsed / spec.seconds
        print(f"{spec.name} {spec.seconds:g} s: {per_minute:.2f} s per minute; {figures}")
        if args.wav:
            import soundfile

            soundfile.write(args.wav, audio.T, 48_000)


if __name__ == "__main__":
    main()
