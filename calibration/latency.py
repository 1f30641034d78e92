"""Latency of speakers -> microphone through an audio backend, measured with sine sweeps.

``measure_latency(make_backend)`` plays a Farina sweep (``sweep``) through each speaker in
turn, ``repeats`` times, records the 4 mic channels and deconvolves each take against what
the reference ring says was played. Schedule (seconds): LEAD_IN of silence, then per repeat
and speaker a slot of SWEEP + GAP (the gap lets the room decay and covers latencies up to
MAX_LATENCY), then TAIL of silence.

Time base (the aligner's): a latency is recorded index minus reference index. Each take's
impulse responses are at lags [0, IR_SECONDS) from the sweep's first reference sample; the
direct path is the first lobe of W reaching ONSET_FRACTION of its largest peak, placed to a
fraction of a sample (``peaks``). Per speaker, ``latency_samples`` = device round trip +
acoustic flight; nobody should stand between the speakers and the mic meanwhile (on the
virtual rig, a person in the direct path shifts its peak by about 0.3 sample). The split
between the two takes one geometric assumption: the speakers' *mean* distance is the rig's, so
``device_latency_samples`` = mean latency - mean rig flight time, and the implied distances
keep the measured difference between the speakers. On the virtual rig the truth is
``device_latency`` + distance / 343 m/s * 48 kHz (the renderer's direct path has no other
offset: its room response starts at the emission time).

Backends whose input and output clocks differ (``backend.separate_clocks``, split devices)
drift during the measurement: there the takes' latencies are fitted by one line in time
(common to both speakers) and the result is the latency at the first sweep, with
``clock_ratio`` from the slope; the residuals must stay within a sample.

A take whose sweeps disagree while the backend marked xruns in it (samples lost, which
shifts every later sweep) is thrown away and measured again, up to TAKES times in all. Xruns
that lost nothing (a JACK client late with its output, which the mic then misses for a
period) leave the latencies alone and the take stands.

Quality checks (``CalibrationError``, one sentence with the fix, and nothing is saved):
audio that glitched in every take, no signal or no response above the noise (muted mic,
wrong device), a clipped recording, repeats that disagree by more than MAX_SPREAD samples, a
backend that fails. The microphone check (``mic_check``) compares the direction of arrival of
each speaker's direct sound with the rig and suggests fixes (warnings in the result).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bgm2pose.calibration.mic_check import check_directions
from bgm2pose.calibration.peaks import first_strong_peak, subsample_peak
from bgm2pose.calibration.sweep import deconvolve, exponential_sweep
from bgm2pose.sensing.backends import AudioBackend
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.player import Player
from bgm2pose.sensing.ring import Mark
from bgm2pose.sensing.sim.rig import SPEED_OF_SOUND, Rig

LEAD_IN = 0.5
SWEEP = 1.5
GAP = 1.0
TAIL = 0.5
MAX_LATENCY = 0.5  # s: direct paths later than this (device + flight) are not searched
IR_SECONDS = 0.5  # impulse response kept per speaker
ONSET_FRACTION = 0.3  # of the largest |W| peak: the direct path's lobe reaches it
LOBE = 8  # samples after the onset crossing that hold the direct path's peak
NOISE_LAGS = (-0.45, -0.05)  # s: lags holding only noise (and sweep distortion)
MIN_SNR_DB = 30.0
TAKES = 3  # takes at most, when the sweeps of one disagree after xruns
MAX_SPREAD = 1.0  # samples
CLIP_LEVEL = 0.999


class CalibrationError(UserError, RuntimeError):
    """A measurement that cannot be trusted; the message names the cause and the fix."""


class RepeatsDisagree(CalibrationError):
    """The sweeps' latencies disagree: samples were lost, or the latency changed."""


@dataclass(frozen=True)
class CalibrationResult:
    latency_samples: tuple[float, float]  # per speaker (L, R): device round trip + flight
    device_latency_samples: float  # round trip without the flight time
    distances_m: tuple[float, float]  # speaker distances implied
    snr_db: float  # worst take: direct peak over the noise floor of its impulse response
    impulse_responses: np.ndarray  # (2 speakers, 4 mic channels, n) float32, mean of repeats
    sample_rate: int
    warnings: tuple[str, ...]  # mic-convention / speaker-side findings with the fix
    clock_ratio: float = 1.0  # reference samples per recorded sample (1 for one device)
    spread_samples: float = 0.0  # largest disagreement between repeats (after drift)


def schedule(level_db: float, repeats: int, sample_rate: int) -> tuple[np.ndarray, list]:
    """The (2, N) track to play and the slots [(speaker, repeat, first sample)]."""
    sweep = exponential_sweep(SWEEP, sample_rate) * np.float32(10 ** (level_db / 20))
    slot = int((SWEEP + GAP) * sample_rate)
    lead, tail = int(LEAD_IN * sample_rate), int(TAIL * sample_rate)
    track = np.zeros((2, lead + 2 * repeats * slot + tail), np.float32)
    slots = []
    for r in range(repeats):
        for s in range(2):
            start = lead + (2 * r + s) * slot
            track[s, start:start + sweep.size] = sweep
            slots.append((s, r, start))
    return track, slots


def measure_latency(make_backend: Callable[[Player], AudioBackend], *, level_db: float = -20.0,
                    repeats: int = 3, rig: Rig | None = None,
                    progress: Callable[[float, str], None] | None = None) -> CalibrationResult:
    """Measure as the module docstring says; ``rig`` (default ``Rig()``) gives the speaker
    geometry the distances and the mic check are judged against."""
    if not -60.0 <= level_db <= 0.0:
        raise CalibrationError(f"sweep level {level_db} dBFS is out of range; use -60 to 0 "
                               "(default -20)")
    if not 1 <= repeats <= 10:
        raise CalibrationError(f"{repeats} repeats is out of range; use 1 to 10 (default 3)")
    rig = Rig() if rig is None else rig
    fs = rig.sample_rate
    track, slots = schedule(level_db, repeats, fs)
    total = track.shape[1]
    glitches = []
    for take in range(TAKES):
        player = Player([track], ring_capacity=total, fifo_frames=total + fs, sample_rate=fs)
        player.pump()
        backend = make_backend(player)
        played, recorded = _record(backend, total, progress)
        try:
            return analyse(played, recorded, slots, rig,
                           getattr(backend, "mic_convention", "internal"),
                           separate_clocks=bool(getattr(backend, "separate_clocks", False)))
        except RepeatsDisagree:
            glitches.append(_glitches(backend, total))
            if not glitches[-1]:
                raise
        if progress is not None and take + 1 < TAKES:
            progress(0.0, f"the audio glitched ({glitches[-1]} xruns) and the sweeps "
                          "disagree; measuring again")
    raise CalibrationError(
        f"the audio glitched in each of {TAKES} takes ({', '.join(map(str, glitches))} xruns: "
        "samples were lost, which would shift the measured latency); the machine is too busy "
        "or the audio buffer too small: close other programs (or raise the JACK period) and "
        "retry")


def _glitches(backend: AudioBackend, total: int) -> int:
    """Xruns the backend marked in the take's played or recorded samples."""
    rings = (backend.player.reference, backend.recorded)
    return sum(event.kind == Mark.XRUN for ring in rings
               for event in ring.events.marks_between(0, total))


def _record(backend: AudioBackend, total: int, progress) -> tuple[np.ndarray, np.ndarray]:
    """Run the backend until ``total`` samples are played and recorded: (played (2, total),
    recorded (4, total)), copied as they arrive, so the rings may be shorter than that."""
    rings = (backend.player.reference, backend.recorded)
    out = tuple(np.zeros((ring.channels, total), np.float32) for ring in rings)
    copied = [0, 0]
    seconds = total / backend.sample_rate
    deadline = time.monotonic() + 3 * seconds + 10
    with backend:
        while min(copied) < total:
            ends = [min(ring.end, total) for ring in rings]
            if ends != copied:
                for i, ring in enumerate(rings):
                    if copied[i] < ring.oldest:
                        raise CalibrationError("the audio ran ahead of the calibration's "
                                               "copy; make the backend's ring longer")
                    ring.read(copied[i], ends[i] - copied[i], out[i][:, copied[i]:ends[i]])
                copied = ends
                done = min(copied)
                if progress is not None:
                    progress(done / total, f"recording {done / backend.sample_rate:.1f} of "
                                           f"{seconds:.1f} s")
                continue
            error = backend.stats().error
            if error is not None or not backend.running:
                raise CalibrationError(f"the audio backend stopped during calibration "
                                       f"({error or 'no reason given'}); fix that and retry")
            if time.monotonic() > deadline:
                raise CalibrationError(
                    f"only {min(copied)} of {total} samples were recorded in "
                    f"{3 * seconds + 10:.0f} s; check that the input device is delivering "
                    "audio")
            time.sleep(0.02)
    return out


def analyse(played: np.ndarray, recorded: np.ndarray, slots: list, rig: Rig,
            convention: str = "internal", separate_clocks: bool = False) -> CalibrationResult:
    """The result for a played (2, N) and recorded (4, N) schedule (see ``schedule``)."""
    fs = rig.sample_rate
    if not np.any(recorded):
        raise CalibrationError("the microphone recorded nothing but zeros (muted, unplugged "
                               "or the wrong input device); unmute it or pick the right "
                               "device")
    peak = float(np.max(np.abs(recorded)))
    if peak >= CLIP_LEVEL:
        raise CalibrationError(f"the recording clipped (peak {peak:.3f} of full scale); "
                               "lower the sweep level (--level) or the mic gain and retry")
    sweep_len = int(SWEEP * fs)
    slot_len = int((SWEEP + GAP) * fs)
    pre = int(-NOISE_LAGS[0] * fs)
    ir_len = int(IR_SECONDS * fs)
    search = int(MAX_LATENCY * fs)
    irs = np.zeros((2, 4, ir_len), np.float64)
    lags = {0: [], 1: []}
    snrs = []
    for speaker, _, start in slots:
        excitation = played[speaker, start:start + sweep_len]
        h = deconvolve(recorded[:, start:start + slot_len], excitation, fs,
                       length=slot_len - pre, pre=pre)
        w = h[0, pre:]  # W at lags 0, 1, ...
        onset = first_strong_peak(w[:search], ONSET_FRACTION, LOBE)
        noise = h[0, pre + int(NOISE_LAGS[0] * fs):pre + int(NOISE_LAGS[1] * fs)]
        noise_rms = float(np.sqrt(np.mean(noise.astype(np.float64) ** 2)))
        snr = 20 * np.log10(abs(w[onset]) / max(noise_rms, 1e-30))
        snrs.append(snr)
        if snr < MIN_SNR_DB:
            side = "left" if speaker == 0 else "right"
            raise CalibrationError(
                f"no clear response to the {side} speaker's sweep (SNR {snr:.0f} dB, "
                f"needs {MIN_SNR_DB:.0f}): the mic is muted, the speaker is off or the wrong "
                "device is selected; check the connections and raise the level (--level)")
        lags[speaker].append(subsample_peak(w, onset))
        irs[speaker] += h[:, pre:pre + ir_len]
    irs /= len(slots) // 2
    latency, ratio, spread = _combine(lags, slots, fs, separate_clocks)
    if spread > MAX_SPREAD:
        hint = ("" if separate_clocks else
                "; if input and output are separate devices, use the split backend")
        raise RepeatsDisagree(
            f"repeated measurements disagree by {spread:.2f} samples (more than "
            f"{MAX_SPREAD:.0f}): the device lost samples or the latency changed meanwhile; "
            f"close other audio programs and retry{hint}")
    flight = np.linalg.norm(rig.speakers - rig.mic_position, axis=1) / SPEED_OF_SOUND * fs
    device = float(np.mean(latency) - np.mean(flight))
    distances = tuple(float((lat - device) / fs * SPEED_OF_SOUND) for lat in latency)
    warnings = check_directions(irs, [round(lat) for lat in latency], rig, convention)
    return CalibrationResult(latency_samples=(float(latency[0]), float(latency[1])),
                             device_latency_samples=device, distances_m=distances,
                             snr_db=float(min(snrs)), impulse_responses=irs.astype(np.float32),
                             sample_rate=fs, warnings=tuple(warnings), clock_ratio=ratio,
                             spread_samples=spread)


def _combine(lags: dict, slots: list, fs: int, separate_clocks: bool
             ) -> tuple[tuple[float, float], float, float]:
    """Per-speaker latency, clock ratio and the largest residual spread between repeats."""
    per = [np.asarray(lags[s]) for s in (0, 1)]
    if not separate_clocks or len(per[0]) < 2:
        spread = max(float(np.ptp(p)) for p in per)
        return (float(np.mean(per[0])), float(np.mean(per[1]))), 1.0, spread
    # lat = a_s + b * t: t is the slot's start (reference samples); one slope for both.
    times = [np.array([start for s, _, start in slots if s == sp], float) for sp in (0, 1)]
    t0 = times[0][0]
    rows = [np.column_stack([np.eye(2)[np.full(len(t), sp)], t - t0])
            for sp, t in enumerate(times)]
    design, values = np.vstack(rows), np.concatenate(per)
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    residual = values - design @ coef
    spread = float(np.ptp(residual[:len(per[0])])), float(np.ptp(residual[len(per[0]):]))
    # recorded n = reference m + lat(m): with lat rising at b per reference sample, the
    # recorder runs 1 + b samples per reference sample, i.e. ratio 1 / (1 + b).
    return (float(coef[0]), float(coef[1])), float(1 / (1 + coef[2])), max(spread)
