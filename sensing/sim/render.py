"""The virtual rig's recording: one block renderer for offline data sets and live streaming.

``SceneRenderer.process(music)`` turns the next block of the two speaker feeds (2, n) into
the next block of the B-format recording (4, n: W X Y Z, ``rig.py`` conventions). Any block
size works and the output does not depend on it: ``render_session`` is the same renderer
run over blocks, so offline data and the live virtual device are the same signal.

Poses come at 120 fps (``rig.sample_rate / 120`` samples per frame, frame f at sample
f * that): the renderer *pulls* the frames it needs from a pose source, any object with
``next(n_frames) -> (n_frames, 21, 3)`` world joints (``motion.MotionGenerator``), or an
array of frames (held at its last frame when the audio outlasts it). A frame is the pose at
the time the sound reaches the mic. The renderer reads ahead of the audio: shadow
cross-fades are centred on frames, and body geometry is computed ``pose_batch`` frames at a
time (cheaper per frame; the live device wants small batches, offline rendering large ones).
``None`` renders an empty room. ``dress`` (joints -> ``body.Body``) replaces the default
capsule body of ``height`` and ``build``.

The recording is the sum over both speakers of
- room reverberation: the static ``room.RoomResponse.reverb``, by partitioned FFT
  convolution with zero latency;
- the direct path: static delay (windowed-sinc fractional delay), gain and B-format
  direction, times the body's shadow response, evaluated every ``SHADOW_HOP`` samples
  (frames of twice that, Hann cross-faded on the output at 50 % overlap: a shadow changes
  slowly, unlike the delays of the moving paths);
- one moving reflection per body segment: the music through the segment's static
  reflection filter (linear phase), delayed by the per-sample path delay (cubic Lagrange
  interpolation from a history buffer, so Doppler comes out right) and weighted by the
  path's gain times its B-format encoding; delay and gains are computed per pose frame and
  interpolated linearly per sample (the compiled kernel of ``moving_paths``);
- sensor noise (white, independent per channel) and background noise (pink, independent per
  channel, X/Y/Z at 1/sqrt(3) of W's RMS as in a diffuse field), seeded; both Gaussian, so
  their sum is drawn as one Gaussian process of the summed spectrum.

Output scale: amplitudes are multiplied by 4 pi, so a free-field path of 1 m has gain 1 and a
speaker at 3 m arrives at 1/3, and by the speakers' level ``Rig.speaker_gain_db``. Noise levels are RMS in dB re 1.0 (the background level is
W's); ``None`` switches a noise off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import partial
from typing import Callable, Protocol

import numpy as np
import scipy.fft as sfft
from scipy.signal import firwin2, lfilter

from bgm2pose.models.skeleton import N_JOINTS
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.sim import body as body_model
from bgm2pose.sensing.sim import scattering
from bgm2pose.sensing.sim.moving_paths import mix_moving_paths
from bgm2pose.sensing.sim.rig import SPEED_OF_SOUND, Rig
from bgm2pose.sensing.sim.room import RoomResponse, room_response

POSE_FPS = 120
# Noise defaults (RMS dB re full scale, see the module docstring): a quiet room with the
# music ~45 dB above its background noise, and a mic preamp's self-noise well below both.
SENSOR_NOISE_DB = -80.0
BACKGROUND_NOISE_DB = -70.0
SHADOW_HOP = 2400        # samples between shadow updates (50 ms; 100 ms Hann cross-fades)
SHADOW_TAPS = 256        # FFT grid of the shadow response; its impulse response (5 ms) must fit
REFLECTION_TAPS = 257    # linear-phase reflection filters (odd: integer group delay)
DIRECT_HALF_TAPS = 32    # half length of the direct path's windowed-sinc fractional delay
BLOCK = 4800             # block size of render_session
# Reverb partitions grow 4x from the first up to this. Each partition of the tail reads all
# of its stage's filter spectra (~3 MB): long tail partitions keep that traffic low.
LARGEST_PARTITION = 16384


class RenderError(UserError):
    """Audio, poses or settings the renderer cannot use."""


class PoseSource(Protocol):
    def next(self, n_frames: int) -> np.ndarray: ...


Dress = Callable[[np.ndarray], "body_model.Body"]


class _ArrayPoses:
    """A pose array as a source; frames past its end repeat the last one."""

    def __init__(self, joints: np.ndarray) -> None:
        self.joints = _check_joints(joints)
        self.frame = 0

    def next(self, n_frames: int) -> np.ndarray:
        idx = np.minimum(np.arange(self.frame, self.frame + n_frames), len(self.joints) - 1)
        self.frame += n_frames
        return self.joints[idx]


def _check_music(music) -> np.ndarray:
    music = np.asarray(music, np.float32)
    if music.ndim != 2 or music.shape[0] != 2:
        raise RenderError(f"music of shape {music.shape} is not (2, samples); "
                          "pass the left and right speaker feeds channels-first")
    return music


def _check_joints(joints) -> np.ndarray:
    joints = np.asarray(joints, float)
    if joints.ndim != 3 or joints.shape[1:] != (N_JOINTS, 3) or len(joints) == 0:
        raise RenderError(f"poses of shape {joints.shape} are not (frames, {N_JOINTS}, 3); "
                          "pass world joint positions at 120 fps")
    return joints


# ---------------------------------------------------------------------- streaming filters

class _Fir:
    """Streaming FIR along the last axis (taps broadcast against the input), exact across
    block boundaries because each block sees the previous T - 1 input samples."""

    def __init__(self, taps: np.ndarray) -> None:
        self.taps = np.asarray(taps, np.float32)
        self.history: np.ndarray | None = None
        self.spectra: dict[int, np.ndarray] = {}  # the taps' spectrum per FFT size

    def process(self, x: np.ndarray) -> np.ndarray:
        n_taps = self.taps.shape[-1]
        if self.history is None:
            self.history = np.zeros(x.shape[:-1] + (n_taps - 1,), np.float32)
        ext = np.concatenate([self.history, x], axis=-1)
        self.history = ext[..., x.shape[-1]:]
        size = sfft.next_fast_len(ext.shape[-1], real=True)
        if size not in self.spectra:
            self.spectra[size] = sfft.rfft(self.taps, size)
        y = sfft.irfft(sfft.rfft(ext, size) * self.spectra[size], size)
        return y[..., n_taps - 1:ext.shape[-1]]


class _PartitionStage:
    """Uniformly partitioned overlap-save convolution with taps [P, stop) of a filter,
    partition P. Taps below P are skipped, which is what makes it zero-latency: the output
    of input partition j + 1 needs input partitions up to j only, so it is complete as soon
    as partition j is. All partitions a block completes are transformed in one batch."""

    def __init__(self, h: np.ndarray, size: int, stop: int) -> None:
        n_in, n_out, _ = h.shape
        self.size = size
        parts = [h[..., a:a + size] for a in range(size, stop, size)]
        padded = [np.pad(p, [(0, 0), (0, 0), (0, 2 * size - p.shape[-1])]) for p in parts]
        self.spectra = sfft.rfft(np.stack(padded).astype(np.float32), axis=-1)  # (M,S,C,F)
        self.history = np.zeros((len(parts), n_in, size + 1), np.complex64)  # oldest first
        self.pending = np.zeros((n_in, 0), np.float32)   # incomplete input partition
        self.previous = np.zeros((n_in, size), np.float32)
        self.queue = np.zeros((n_out, size), np.float32)  # output not yet emitted

    def process(self, x: np.ndarray) -> np.ndarray:
        data = np.concatenate([self.pending, x], axis=-1)
        count = data.shape[-1] // self.size
        if count:
            size, m = self.size, len(self.history)
            done = data[:, :count * size].reshape(len(data), count, size).swapaxes(0, 1)
            frames = np.concatenate([np.concatenate([self.previous[None], done[:-1]]), done],
                                    axis=-1)                            # (count, S, 2P)
            spectra = np.concatenate([self.history, sfft.rfft(frames, axis=-1)])
            acc = np.zeros((count, self.spectra.shape[2], size + 1), np.complex64)
            for k in range(m):  # tap partition k + 1 meets input partition j - k
                window = spectra[m - k: m - k + count]
                for s in range(len(data)):
                    acc += window[:, s, None, :] * self.spectra[k, s]
            out = sfft.irfft(acc, axis=-1)[..., size:]                  # (count, C, P)
            self.queue = np.concatenate(
                [self.queue, out.swapaxes(0, 1).reshape(len(acc[0]), count * size)], axis=-1)
            self.history = spectra[count:]
            self.previous = done[-1].copy()
        self.pending = data[:, count * self.size:]
        y, self.queue = self.queue[:, :x.shape[-1]], self.queue[:, x.shape[-1]:]
        return y


class _Convolver:
    """y[c] = sum_s h[s, c] * x[s] for a long filter, streaming with zero latency: taps
    [0, P1) by direct FIR (skipped when zero, as a reverb's leading silence is), later taps
    by partitioned stages whose partition grows with the tap index (P, 4P, 16P ... up to
    LARGEST_PARTITION)."""

    def __init__(self, h: np.ndarray) -> None:
        nonzero = np.flatnonzero(np.any(h != 0, axis=(0, 1)))
        first = int(nonzero[0]) if nonzero.size else h.shape[-1]
        size = int(2 ** np.clip(np.floor(np.log2(max(first, 1))), 5, 10))
        self.head = _Fir(h[..., :size]) if np.any(h[..., :size]) else None
        self.stages = []
        while size < h.shape[-1]:
            stop = h.shape[-1] if size >= LARGEST_PARTITION else min(4 * size, h.shape[-1])
            self.stages.append(_PartitionStage(h, size, stop))
            size = stop
        self.n_out = h.shape[1]

    def process(self, x: np.ndarray) -> np.ndarray:
        y = np.zeros((self.n_out, x.shape[-1]), np.float32)
        if self.head is not None:
            y += self.head.process(x[:, None, :]).sum(axis=0)
        for stage in self.stages:
            y += stage.process(x)
        return y


# ---------------------------------------------------------------------- noise

# Pink (1/f) noise from white: a 3-pole/3-zero fit (J. O. Smith), within 0.3 dB over the band.
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])


def _pink_rms() -> float:
    impulse = np.zeros(1 << 16)
    impulse[0] = 1.0
    return float(np.sqrt(np.sum(lfilter(_PINK_B, _PINK_A, impulse) ** 2)))


def _noise_numerator(sensor: float, background: float) -> np.ndarray:
    """Numerator C over ``_PINK_A`` that turns unit white noise into white noise of RMS
    ``sensor`` plus ``background`` times pink noise: the minimum-phase factor of their
    summed spectrum, |C/A|^2 = sensor^2 + background^2 |B/A|^2. The two are independent
    Gaussian processes, so their sum is the Gaussian process of that spectrum: one white
    draw per sample and channel instead of two."""
    spectrum = (sensor ** 2 * np.correlate(_PINK_A, _PINK_A, "full")
                + background ** 2 * np.correlate(_PINK_B, _PINK_B, "full"))
    roots = np.roots(spectrum)  # pairs r, 1/r: the ones inside make C minimum phase
    c = np.poly(roots[np.abs(roots) < 1]).real
    return c * np.sqrt(spectrum[len(_PINK_A) - 1] / np.sum(c ** 2))


class _Noise:
    """Seeded sensor plus background noise, independent per channel; draws are
    sample-major, so any block split consumes the random stream in the same order."""

    def __init__(self, seed: int, sensor_db: float | None, background_db: float | None):
        self.rng = np.random.default_rng(seed)
        self.sensor = 0.0 if sensor_db is None else 10 ** (sensor_db / 20)
        self.numerators = None  # per channel group (W; X Y Z): see _noise_numerator
        if background_db is not None:
            pink = 10 ** (background_db / 20) / _pink_rms()
            self.numerators = [(slice(0, 1), _noise_numerator(self.sensor, pink)),
                               (slice(1, 4), _noise_numerator(self.sensor, pink / 3 ** 0.5))]
            self.state = np.zeros((4, len(_PINK_A) - 1))

    def process(self, n: int) -> np.ndarray:
        if self.numerators is None and not self.sensor:
            return np.zeros((4, n), np.float32)
        white = self.rng.standard_normal((n, 4), np.float32).T
        if self.numerators is None:
            return self.sensor * white
        out = np.empty((4, n))
        for rows, c in self.numerators:
            out[rows], self.state[rows] = lfilter(c, _PINK_A, white[rows], axis=-1,
                                                  zi=self.state[rows])
        return out


# ---------------------------------------------------------------------- the renderer

def _twice(body: "body_model.Body") -> "body_model.Body":
    """The body's frames twice over, once per speaker."""
    return replace(body, a=np.concatenate([body.a, body.a]), b=np.concatenate([body.b, body.b]))


@dataclass
class _Frames:
    """Per pose frame path data, from frame ``start`` on."""
    start: int
    delay: np.ndarray     # (F, 2K) reflection delays in samples, paths speaker-major
    gains: np.ndarray     # (F, 4, 2K) path gain times B-format encoding
    shadow: np.ndarray    # (F, 2, SHADOW_TAPS) shadow impulse responses (frames on the hop)
    shadowed: np.ndarray  # (F, 2) bool: that response differs from 1

    _ARRAYS = ("delay", "gains", "shadow", "shadowed")

    def extend(self, later: "_Frames") -> "_Frames":
        return _Frames(self.start, *(np.concatenate([getattr(self, k), getattr(later, k)])
                                     for k in self._ARRAYS))

    def drop(self, count: int) -> "_Frames":
        return _Frames(self.start + count, *(getattr(self, k)[count:] for k in self._ARRAYS))


class SceneRenderer:
    """Streaming renderer of the virtual rig; see the module docstring."""

    def __init__(self, rig: Rig, poses: PoseSource | np.ndarray | None = None, *,
                 height: float = 1.75, build: float = 1.0,
                 sensor_noise_db: float | None = SENSOR_NOISE_DB,
                 background_noise_db: float | None = BACKGROUND_NOISE_DB,
                 seed: int = 0, room: RoomResponse | None = None,
                 dress: Dress | None = None, pose_batch: int = 12) -> None:
        fs = rig.sample_rate
        if fs % POSE_FPS or SHADOW_HOP % (fs // POSE_FPS):
            raise RenderError(f"sample rate {fs} Hz is not a multiple of {POSE_FPS} fps "
                              f"with shadow frames on pose frames; use 48000 Hz")
        self.rig = rig
        self.frame_samples = fs // POSE_FPS
        self.room = room_response(rig) if room is None else room
        self.gain = np.float32(4 * np.pi * 10 ** (rig.speaker_gain_db / 20))
        self.position = 0  # samples rendered so far
        self.timings = dict.fromkeys(("room", "direct+shadow", "reflections", "noise", "body"),
                                     0.0)

        self.reverb = _Convolver(self.room.reverb)
        delays = self.room.direct_delay * fs
        half = int(min(DIRECT_HALF_TAPS, np.floor(delays.min())))
        whole = np.floor(delays).astype(int)
        taps = np.zeros((2, whole.max() + half + 1))
        for s in range(2):
            k = np.arange(whole[s] - half + 1, whole[s] + half + 1)
            taps[s, k] = np.sinc(k - delays[s]) * np.kaiser(2 * half, 8.0)
        self.direct = _Fir(taps)
        self.direct_gains = (self.room.direct_gain[:, None]
                             * rig.encode(self.room.direct_direction)).T.astype(np.float32)
        # Shadow cross-fade weight at sample t of a frame centred on c: hann[t - c + hop].
        self.hann = (0.5 + 0.5 * np.cos(np.pi * np.arange(-SHADOW_HOP, SHADOW_HOP)
                                        / SHADOW_HOP)).astype(np.float32)
        self.direct_history = np.zeros((2, SHADOW_TAPS - 1), np.float32)
        self.noise = _Noise(seed, sensor_noise_db, background_noise_db)

        if poses is None:
            self.poses = None
        elif isinstance(poses, np.ndarray):
            self.poses = _ArrayPoses(poses)
        elif callable(getattr(poses, "next", None)):
            self.poses = poses
        else:
            raise RenderError(f"poses of type {type(poses).__name__} are neither an array nor "
                              "a source with next(n_frames); pass joints (F, 21, 3)")
        self.dress = dress or partial(body_model.dress, height=height, build=build)
        # Body geometry is cheaper per frame in batches; the live device wants small ones.
        self.pose_batch = max(1, int(pose_batch))
        self.pulled = 0
        self.frames: _Frames | None = None
        self.reflections: _Fir | None = None  # built from the first body's segment radii

    # ------------------------------------------------------------------ public

    def process(self, music: np.ndarray) -> np.ndarray:
        """The next (4, n) float32 recording for the next (2, n) speaker feeds."""
        music = _check_music(music)
        n = music.shape[1]
        t0 = self.position
        clock = time.process_time()
        if self.poses is not None:
            self._pull(t0 + n)
        clock = self._tick("body", clock)
        y = self.reverb.process(music)
        clock = self._tick("room", clock)
        y += self._direct(music, t0)
        clock = self._tick("direct+shadow", clock)
        if self.poses is not None:
            y += self._reflections(music, t0)
        clock = self._tick("reflections", clock)
        y *= self.gain
        y += self.noise.process(n)
        self._tick("noise", clock)
        self.position += n
        return y

    # ------------------------------------------------------------------ poses

    def _tick(self, name: str, clock: float) -> float:
        now = time.process_time()
        self.timings[name] += now - clock
        return now

    def _pull(self, end: int) -> None:
        """Make sure path data covers every frame that samples [., end) need, drop the
        frames that are behind the audio."""
        fs = self.frame_samples
        hop = SHADOW_HOP // fs
        need = max((end - 1) // fs + 1, hop * -(-end // SHADOW_HOP)) + 1
        if need > self.pulled:
            need = max(need, self.pulled + self.pose_batch)
            joints = _check_joints(self.poses.next(need - self.pulled))
            new = self._geometry(joints, self.pulled)
            self.pulled = need
            self.frames = new if self.frames is None else self.frames.extend(new)
        behind = hop * (self.position // SHADOW_HOP) - self.frames.start
        if behind > 0:
            self.frames = self.frames.drop(behind)

    def _geometry(self, joints: np.ndarray, start: int) -> _Frames:
        rig = self.rig
        body = self.dress(joints)
        if self.reflections is None:
            self._build_reflections(body)
        f, k = len(joints), len(body.radius)
        # Both speakers in one call each (frames speaker-major): the models work per frame.
        paths = scattering.reflection_paths(_twice(body), np.repeat(rig.speakers, f, axis=0),
                                            rig.mic_position)
        delay = np.clip(paths.delay * rig.sample_rate, self.filter_delay + 2,
                        self.longest_delay).reshape(2, f, k)
        gains = (paths.gain[..., None] * rig.encode(paths.direction)).reshape(2, f, k, 4)
        shadow = np.zeros((f, 2, SHADOW_TAPS), np.float32)
        shadowed = np.zeros((f, 2), bool)
        on_hop = np.flatnonzero((start + np.arange(f)) % (SHADOW_HOP // self.frame_samples) == 0)
        if on_hop.size:
            sub = replace(body, a=body.a[on_hop], b=body.b[on_hop])
            freqs = np.fft.rfftfreq(SHADOW_TAPS, 1 / rig.sample_rate)
            response = scattering.shadow_response(
                _twice(sub), np.repeat(rig.speakers, on_hop.size, axis=0), rig.mic_position,
                freqs).reshape(2, on_hop.size, -1)
            shadowed[on_hop] = (np.max(np.abs(response - 1), axis=-1) > 1e-6).T
            shadow[on_hop] = np.fft.irfft(response, SHADOW_TAPS, axis=-1).swapaxes(0, 1)
        return _Frames(start, delay.transpose(1, 0, 2).reshape(f, 2 * k),
                       gains.transpose(1, 3, 0, 2).reshape(f, 4, 2 * k).astype(np.float32),
                       shadow, shadowed)

    # ------------------------------------------------------------------ direct path

    def _direct(self, music: np.ndarray, t0: int) -> np.ndarray:
        d = self.direct.process(music)  # (2, n) delayed speaker feeds, unit gain
        n = d.shape[-1]
        taps = SHADOW_TAPS
        ext = np.concatenate([self.direct_history, d], axis=-1)
        self.direct_history = ext[:, n:]
        jobs = self._shadow_jobs(t0, n)
        if jobs:
            # Each shadowed frame's filter runs over its parts of the block (plus the taps'
            # history), all parts in one batch; the two frames that cross-fade over a part
            # share its spectrum. The Hann weights of all frames sum to 1, so only the
            # difference to the unfiltered path is added.
            size = sfft.next_fast_len(max(hi - lo for _, _, lo, hi in jobs) + taps - 1, True)
            parts = {p: i for i, p in enumerate(dict.fromkeys(job[1:] for job in jobs))}
            segments = np.zeros((len(parts), size), np.float32)
            for (s, lo, hi), i in parts.items():
                segments[i, :hi - lo + taps - 1] = ext[s, lo - t0:hi - t0 + taps - 1]
            filters = {f: i for i, f in enumerate(dict.fromkeys(job[:2] for job in jobs))}
            rows, speakers = zip(*filters)
            spectra = sfft.rfft(self.frames.shadow[list(rows), list(speakers)], size)
            filtered = sfft.irfft(sfft.rfft(segments)[[parts[job[1:]] for job in jobs]]
                                  * spectra[[filters[job[:2]] for job in jobs]], size)
            z = d.copy()
            for i, (row, s, lo, hi) in enumerate(jobs):
                start = lo - (self.frames.start + row) * self.frame_samples + SHADOW_HOP
                part = slice(lo - t0, hi - t0)
                z[s, part] += self.hann[start:start + hi - lo] * (
                    filtered[i, taps - 1:taps - 1 + hi - lo] - d[s, part])
            d = z
        return self.direct_gains @ d

    def _shadow_jobs(self, t0: int, n: int) -> list[tuple[int, int, int, int]]:
        """(frame row, speaker, first, end sample) of every shadowed frame's Hann window
        (centred on the frame, two hops long) within samples [t0, t0 + n), cut at the hops
        (shorter FFTs)."""
        if self.frames is None or not self.frames.shadowed.any():
            return []
        hop = SHADOW_HOP
        jobs = []
        for j in range(t0 // hop, -(-(t0 + n) // hop) + 1):
            row = j * hop // self.frame_samples - self.frames.start
            speakers = np.flatnonzero(self.frames.shadowed[row])
            for piece in (j - 1, j):
                lo, hi = max(t0, piece * hop), min(t0 + n, (piece + 1) * hop)
                if hi > lo:
                    jobs += [(row, s, lo, hi) for s in speakers]
        return jobs

    # ------------------------------------------------------------------ reflections

    def _build_reflections(self, body) -> None:
        fs = self.rig.sample_rate
        radii, group = np.unique(np.asarray(body.radius, float), return_inverse=True)
        # The filter's group delay is taken back from the path delay, which never falls
        # below the direct delay; keep it inside that so the delay line stays causal.
        taps = int(min(REFLECTION_TAPS, 2 * ((self.room.direct_delay.min() * fs - 4) // 2) + 1))
        freqs = np.linspace(0, fs / 2, 513)
        self.filter_delay = (taps - 1) // 2
        fir = np.stack([firwin2(taps, freqs, scattering.reflection_filter(r, freqs), fs=fs)
                        for r in radii])
        self.reflections = _Fir(fir[None])  # (1, R, T) against music (2, 1, n)
        # No path in the room is longer than twice its diagonal; longer ones (a body outside
        # the room) are clamped there; the history holds the interpolator's points there.
        self.longest_delay = 2 * np.linalg.norm(self.rig.room_size) / SPEED_OF_SOUND * fs
        self.history_len = int(self.longest_delay) + 2
        self.reflection_history = np.zeros((2 * len(radii), self.history_len), np.float32)
        # Row of each path (speaker-major) in the (2 R, ...) history buffer.
        self.path_rows = (np.arange(2)[:, None] * len(radii) + group[None, :]).reshape(-1)

    def _reflections(self, music: np.ndarray, t0: int) -> np.ndarray:
        n = music.shape[-1]
        fs = self.frame_samples
        u = self.reflections.process(music[:, None, :])  # (2, R, n)
        line = np.concatenate([self.reflection_history, u.reshape(-1, n)], axis=-1)
        self.reflection_history = line[:, n:]
        # Frame rows from the one holding sample t0 to the one after the block's last.
        first = t0 // fs
        rows = first - self.frames.start
        count = (t0 + n - 1) // fs - first + 2
        return mix_moving_paths(line, self.path_rows, self.history_len + self.filter_delay,
                                self.frames.delay[rows:rows + count],
                                self.frames.gains[rows:rows + count], t0 - first * fs, fs, n)


def render_session(rig: Rig, music: np.ndarray, joints: np.ndarray | None, *,
                   height: float = 1.75, build: float = 1.0,
                   sensor_noise_db: float | None = SENSOR_NOISE_DB,
                   background_noise_db: float | None = BACKGROUND_NOISE_DB, seed: int = 0,
                   room: RoomResponse | None = None, block: int = BLOCK,
                   pose_batch: int = 120,
                   progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The (4, N) float32 recording of ``music`` (2, N) with a person moving through
    ``joints`` (F, 21, 3) at 120 fps (``None``: empty room): ``SceneRenderer`` run over
    blocks; ``progress(samples done, total)`` after each block."""
    music = _check_music(music)
    renderer = SceneRenderer(rig, joints, height=height, build=build,
                             sensor_noise_db=sensor_noise_db,
                             background_noise_db=background_noise_db, seed=seed, room=room,
                             pose_batch=pose_batch)
    out = np.empty((4, music.shape[1]), np.float32)
    for a in range(0, music.shape[1], block):
        b = min(a + block, music.shape[1])
        out[:, a:b] = renderer.process(music[:, a:b])
        if progress is not None:
            progress(b, music.shape[1])
    return out
