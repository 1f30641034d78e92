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
- the empty room: the static ``room.RoomResponse.static`` (every arrival: direct path,
  reflections, reverberation), by partitioned FFT convolution with zero latency (or, with
  ``static_room=False``, by the caller: ``render_session`` convolves a whole session in
  large transforms, 4x cheaper than streaming it);
- the body's shadows on the paths it meets (``room.Paths``: the direct path, and with
  ``Rig.body_paths`` "first_order" the six first-order reflections): each path times the
  body's shadow response, on a reflected path the product over both legs (source image ->
  mic, and speaker -> mirrored mic), evaluated every ``SHADOW_HOP`` samples (frames of twice
  that, Hann cross-faded on the output at 50 % overlap: a shadow changes slowly, unlike the
  delays of the moving paths). Only the difference to the unshadowed paths is rendered,
  per shadowed frame and speaker as one filter of all its paths;
- moving reflections off each body segment, lit by each path's source (the speaker, or its
  image in a wall: speaker -> wall -> body -> mic) and, for a reflected path, lighting the
  wall (speaker -> body -> wall -> mic: a reflection towards the mirrored mic, arriving from
  the mirrored direction), weighted by the wall's factor and the speaker's radiation towards
  the departure direction (its high-frequency level: the body reflects above ~1 kHz).
  Each is the music through the segment's static reflection filter (linear phase),
  delayed by the per-sample path delay (cubic Lagrange interpolation from a history
  buffer, so Doppler comes out right) and weighted by the path's gain times its B-format
  encoding; delay and gains are computed per pose frame and interpolated linearly per
  sample (the compiled kernel of ``moving_paths``); the paths via a wall are computed
  every ``WALL_FRAME_STEP`` frames and interpolated;
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

from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.sim import body as body_model
from bgm2pose.sensing.sim import scattering, speaker
from bgm2pose.sensing.sim.moving_paths import mix_moving_paths
from bgm2pose.sensing.sim.rig import SPEED_OF_SOUND, Rig
from bgm2pose.sensing.sim.room import RoomResponse, reflect, room_response
from bgm2pose.sensing.skeleton import N_JOINTS

POSE_FPS = 120
# Noise defaults (RMS dB re full scale, see the module docstring): a quiet room with the
# music ~45 dB above its background noise, and a mic preamp's self-noise well below both.
SENSOR_NOISE_DB = -80.0
BACKGROUND_NOISE_DB = -70.0
SHADOW_HOP = 2400        # samples between shadow updates (50 ms; 100 ms Hann cross-fades)
SHADOW_TAPS = 256        # FFT grid of the shadow response; its impulse response (5 ms) must fit
REFLECTION_TAPS = 257    # linear-phase reflection filters (odd: integer group delay)
# Pose frames between geometry updates of the moving reflections via a wall (linear in
# between): those paths are weaker and change as smoothly as the direct ones, and at
# 30 fps a limb accelerating at 20 m/s^2 strays 3 mm from its path.
WALL_FRAME_STEP = 4
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

def _tiled(body: "body_model.Body", count: int) -> "body_model.Body":
    """The body's frames ``count`` times over (one copy per source-mic pair): the scattering
    models work per frame."""
    return replace(body, a=np.tile(body.a, (count, 1, 1)), b=np.tile(body.b, (count, 1, 1)))


@dataclass(frozen=True)
class _Lights:
    """The source-mic pairs of the body's moving reflections, per speaker (index 0) and
    family (index 1): the direct family lit by the speaker; per wall, the family lit by the
    speaker's image in it, and the family lighting it (towards the mic's image)."""
    source: np.ndarray        # (2, Q, 3)
    mic: np.ndarray           # (Q, 3)
    departs_via: np.ndarray   # (Q, 3) wall normal the departure is mirrored in (0: none)
    arrives_via: np.ndarray   # (Q, 3) wall normal the arrival is mirrored in (0: none)
    wall_gain: np.ndarray     # (Q,)

    @classmethod
    def of(cls, room: RoomResponse, mic: np.ndarray) -> "_Lights":
        paths = room.paths
        walls = slice(1, None)
        images = paths.mirror(mic)[walls]
        speakers = np.repeat(paths.source[:, :1], len(images), axis=1)
        none = np.zeros_like(paths.normal[walls])
        return cls(np.concatenate([paths.source, speakers], axis=1),
                   np.concatenate([np.repeat(mic[None], len(paths.surface), 0), images]),
                   np.concatenate([paths.normal, none]),
                   np.concatenate([paths.normal[:1], none, paths.normal[walls]]),
                   np.concatenate([paths.wall_gain, paths.wall_gain[walls]]))


@dataclass
class _Frames:
    """Per pose frame path data, from frame ``start`` on."""
    start: int
    delay: np.ndarray     # (F, 2QK) reflection delays in samples, speaker, family, segment
    gains: np.ndarray     # (F, 4, 2QK) path gain times B-format encoding
    shadow: np.ndarray    # (F, 2, P, SHADOW_TAPS) shadow impulse responses (frames on the hop)
    shadowed: np.ndarray  # (F, 2, P) bool: that response differs from 1

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
                 dress: Dress | None = None, pose_batch: int = 12,
                 static_room: bool = True) -> None:
        fs = rig.sample_rate
        if fs % POSE_FPS or SHADOW_HOP % (fs // POSE_FPS):
            raise RenderError(f"sample rate {fs} Hz is not a multiple of {POSE_FPS} fps "
                              f"with shadow frames on pose frames; use 48000 Hz")
        self.rig = rig
        self.frame_samples = fs // POSE_FPS
        self.room = room_response(rig) if room is None else room
        self.gain = np.float32(4 * np.pi * 10 ** (rig.speaker_gain_db / 20))
        self.position = 0  # samples rendered so far
        # CPU seconds per part, of the rendering thread: process_time costs ~20 us a call on
        # this kind of machine, 1% of a core at the live rig's 94 blocks a second.
        self.timings = dict.fromkeys(("room", "shadows", "reflections", "noise", "body"), 0.0)

        self.static = _Convolver(self.room.static) if static_room else None
        paths = self.room.paths
        # Shadow corrections: a frame's filter is its shadowed paths' responses (path taps
        # plus shadow taps), applied to hop-long pieces of the speaker feeds in one FFT size.
        self.correction_taps = paths.fir.shape[-1] + SHADOW_TAPS - 1
        self.correction_size = sfft.next_fast_len(SHADOW_HOP + self.correction_taps - 1, True)
        encoded = paths.fir[:, :, None, :] * rig.encode(paths.direction)[..., None]
        self.path_spectra = sfft.rfft(encoded, self.correction_size).astype(np.complex64)
        self.corrections: dict[tuple[int, int], np.ndarray] = {}  # (frame, speaker) -> (4, F)
        self.feed_history = np.zeros((2, self.correction_taps - 1), np.float32)
        # Shadow cross-fade weight at sample t of a frame centred on c: hann[t - c + hop].
        self.hann = (0.5 + 0.5 * np.cos(np.pi * np.arange(-SHADOW_HOP, SHADOW_HOP)
                                        / SHADOW_HOP)).astype(np.float32)
        self.lights = _Lights.of(self.room, rig.mic_position)
        aim = rig.mic_position - rig.speakers
        self.speaker_axes = aim / np.linalg.norm(aim, axis=1, keepdims=True)
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
        self.ahead: np.ndarray | None = None  # joints of frame ``pulled``, read ahead
        self.frames: _Frames | None = None
        self.reflections: _Fir | None = None  # built from the first body's segment radii

    # ------------------------------------------------------------------ public

    def process(self, music: np.ndarray) -> np.ndarray:
        """The next (4, n) float32 recording for the next (2, n) speaker feeds."""
        music = _check_music(music)
        n = music.shape[1]
        t0 = self.position
        clock = time.thread_time()
        if self.poses is not None:
            self._pull(t0 + n)
        clock = self._tick("body", clock)
        y = self.static.process(music) if self.static else np.zeros((4, n), np.float32)
        clock = self._tick("room", clock)
        y += self._shadows(music, t0)
        clock = self._tick("shadows", clock)
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
        now = time.thread_time()
        self.timings[name] += now - clock
        return now

    def _pull(self, end: int) -> None:
        """Make sure path data covers every frame that samples [., end) need, drop the
        frames that are behind the audio. Batches end on multiples of ``WALL_FRAME_STEP``
        and read one frame ahead: the paths via a wall are interpolated up to it."""
        fs = self.frame_samples
        hop = SHADOW_HOP // fs
        need = max((end - 1) // fs + 1, hop * -(-end // SHADOW_HOP)) + 1
        if need > self.pulled:
            need = max(need, self.pulled + self.pose_batch)
            need = WALL_FRAME_STEP * -(-need // WALL_FRAME_STEP)
            if self.ahead is None:
                joints = _check_joints(self.poses.next(need + 1))
            else:
                joints = np.concatenate([self.ahead,
                                         _check_joints(self.poses.next(need - self.pulled))])
            self.ahead = joints[-1:]
            new = self._geometry(joints, self.pulled)
            self.pulled = need
            self.frames = new if self.frames is None else self.frames.extend(new)
        behind = hop * (self.position // SHADOW_HOP) - self.frames.start
        if behind > 0:
            self.frames = self.frames.drop(behind)
            self.corrections = {k: v for k, v in self.corrections.items()
                                if k[0] >= self.frames.start}

    def _geometry(self, joints: np.ndarray, start: int) -> _Frames:
        """Path data of frames [start, start + F) from their joints and the next frame's."""
        rig = self.rig
        body = self.dress(joints)
        if self.reflections is None:
            self._build_reflections(body)
        f = len(joints) - 1
        delay, gains = self._moving_paths(body)
        n_paths = self.room.paths.fir.shape[1]
        shadow = np.zeros((f, 2, n_paths, SHADOW_TAPS), np.float32)
        shadowed = np.zeros((f, 2, n_paths), bool)
        on_hop = np.flatnonzero((start + np.arange(f)) % (SHADOW_HOP // self.frame_samples) == 0)
        if on_hop.size:
            sub = replace(body, a=body.a[on_hop], b=body.b[on_hop])
            # The lines the body shadows are the source-mic pairs that light it: each path
            # from its source to the mic, and each reflection's first leg (speaker -> the
            # mic's image in the wall).
            lines = self.lights.mic.shape[0]
            freqs = np.fft.rfftfreq(SHADOW_TAPS, 1 / rig.sample_rate)
            response = scattering.shadow_response(
                _tiled(sub, 2 * lines), np.repeat(self.lights.source.reshape(-1, 3),
                                                  on_hop.size, axis=0),
                np.repeat(np.tile(self.lights.mic, (2, 1)), on_hop.size, axis=0),
                freqs).reshape(2, lines, on_hop.size, -1)
            response[:, 1:n_paths] *= response[:, n_paths:]  # both legs of each reflection
            response = response[:, :n_paths].transpose(2, 0, 1, 3)
            shadowed[on_hop] = np.max(np.abs(response - 1), axis=-1) > 1e-6
            shadow[on_hop] = np.fft.irfft(response, SHADOW_TAPS, axis=-1)
        return _Frames(start, delay, gains, shadow, shadowed)

    def _moving_paths(self, body: "body_model.Body") -> tuple[np.ndarray, np.ndarray]:
        """Delays (F, 2QK) in samples and gains (F, 4, 2QK) of every moving reflection of
        a body of F + 1 frames: the direct family's per frame, the families via a wall
        every ``WALL_FRAME_STEP`` frames and linearly in between."""
        f, k = body.a.shape[0] - 1, body.a.shape[1]
        delay, gains = self._family_paths(replace(body, a=body.a[:f], b=body.b[:f]),
                                          slice(0, 1))
        if len(self.lights.wall_gain) > 1:
            coarse = np.arange(0, f + 1, WALL_FRAME_STEP)
            wall_delay, wall_gains = self._family_paths(
                replace(body, a=body.a[coarse], b=body.b[coarse]), slice(1, None))
            at, share = np.divmod(np.arange(f), WALL_FRAME_STEP)
            share = share / WALL_FRAME_STEP
            weights = share[:, None], (1 - share)[:, None]
            delay = np.concatenate([delay, weights[1] * wall_delay[:, :, at]
                                    + weights[0] * wall_delay[:, :, at + 1]], axis=1)
            gains = np.concatenate([gains, weights[1][..., None] * wall_gains[:, :, at]
                                    + weights[0][..., None] * wall_gains[:, :, at + 1]], axis=1)
        pairs = delay.shape[0] * delay.shape[1]
        return (delay.transpose(2, 0, 1, 3).reshape(f, pairs * k),
                gains.transpose(2, 4, 0, 1, 3).reshape(f, 4, pairs * k).astype(np.float32))

    def _family_paths(self, body: "body_model.Body", families: slice
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Delays (2, Q, F, K) in samples and gains (2, Q, F, K, 4) of ``families``."""
        rig = self.rig
        source, mic = self.lights.source[:, families], self.lights.mic[families]
        f, k = body.a.shape[:2]
        q = mic.shape[0]
        paths = scattering.reflection_paths(  # frames (speaker, family)-major
            _tiled(body, 2 * q), np.repeat(source.reshape(-1, 3), f, axis=0),
            np.repeat(np.tile(mic, (2, 1)), f, axis=0))
        shape = (2, q, f, k)
        departure = reflect(paths.departure.reshape(shape + (3,)),
                            self.lights.departs_via[families][None, :, None, None])
        cos_departure = np.einsum("sqfki,si->sqfk", departure, self.speaker_axes)
        amplitude = (paths.gain.reshape(shape)
                     * self.lights.wall_gain[families][:, None, None]
                     * speaker.high_frequency_gain(cos_departure, rig.speaker_directivity_db))
        arrival = reflect(paths.direction.reshape(shape + (3,)),
                          self.lights.arrives_via[families][None, :, None, None])
        delay = np.clip(paths.delay.reshape(shape) * rig.sample_rate, self.filter_delay + 2,
                        self.longest_delay)
        return delay, amplitude[..., None] * rig.encode(arrival)

    # ------------------------------------------------------------------ shadows

    def _shadows(self, music: np.ndarray, t0: int) -> np.ndarray:
        n = music.shape[-1]
        taps, size = self.correction_taps, self.correction_size
        ext = np.concatenate([self.feed_history, music], axis=-1)
        self.feed_history = ext[:, n:]
        y = np.zeros((4, n), np.float32)
        jobs = self._shadow_jobs(t0, n)
        if not jobs:
            return y
        # Each shadowed frame's correction filter runs over its parts of the block (plus the
        # taps' history), all parts in one batch; the two frames that cross-fade over a part
        # share its spectrum. The Hann weights of all frames sum to 1 and the unshadowed
        # paths are in the static response, so only the corrections are added.
        parts = {p: i for i, p in enumerate(dict.fromkeys(job[1:] for job in jobs))}
        segments = np.zeros((len(parts), size), np.float32)
        for (s, lo, hi), i in parts.items():
            segments[i, :hi - lo + taps - 1] = ext[s, lo - t0:hi - t0 + taps - 1]
        filters = np.stack([self._correction(row, s) for row, s, _, _ in jobs])
        filtered = sfft.irfft(sfft.rfft(segments)[[parts[job[1:]] for job in jobs], None]
                              * filters, size)
        for i, (row, s, lo, hi) in enumerate(jobs):
            start = lo - (self.frames.start + row) * self.frame_samples + SHADOW_HOP
            y[:, lo - t0:hi - t0] += (self.hann[start:start + hi - lo]
                                      * filtered[i, :, taps - 1:taps - 1 + hi - lo])
        return y

    def _correction(self, row: int, s: int) -> np.ndarray:
        """(4, bins) spectrum of frame ``row``'s shadowed paths of speaker ``s`` minus the
        same paths unshadowed; cached per frame while the frame is in use."""
        key = (self.frames.start + row, s)
        if key not in self.corrections:
            paths = np.flatnonzero(self.frames.shadowed[row, s])
            shadow = sfft.rfft(self.frames.shadow[row, s, paths], self.correction_size) - 1
            # Broadcast and sum: 2.5x faster than einsum on complex64 here.
            self.corrections[key] = (shadow[:, None] * self.path_spectra[s, paths]).sum(0)
        return self.corrections[key]

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
            speakers = np.flatnonzero(self.frames.shadowed[row].any(axis=-1))
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
        direct = self.room.paths.delay[:, 0].min() * fs
        taps = int(min(REFLECTION_TAPS, 2 * ((direct - 4) // 2) + 1))
        freqs = np.linspace(0, fs / 2, 513)
        self.filter_delay = (taps - 1) // 2
        fir = np.stack([firwin2(taps, freqs, scattering.reflection_filter(r, freqs), fs=fs)
                        for r in radii])
        self.reflections = _Fir(fir[None])  # (1, R, T) against music (2, 1, n)
        # No path via one wall is longer than three room diagonals; longer ones (a body
        # outside the room) are clamped there; the history holds the interpolator's points.
        self.longest_delay = 3 * np.linalg.norm(self.rig.room_size) / SPEED_OF_SOUND * fs
        self.history_len = int(self.longest_delay) + 2
        self.reflection_history = np.zeros((2 * len(radii), self.history_len), np.float32)
        # Row of each path (speaker, family, segment) in the (2 R, ...) history buffer.
        families = len(self.lights.wall_gain)
        self.path_rows = np.repeat(np.arange(2) * len(radii), families * len(group)) + np.tile(
            group, 2 * families)

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
                             pose_batch=pose_batch, static_room=False)
    out = _room_convolution(renderer.room.static, music)
    out *= renderer.gain
    for a in range(0, music.shape[1], block):
        b = min(a + block, music.shape[1])
        out[:, a:b] += renderer.process(music[:, a:b])
        if progress is not None:
            progress(b, music.shape[1])
    return out


def _room_convolution(h: np.ndarray, music: np.ndarray) -> np.ndarray:
    """(4, N) float32 sum over speakers s of music[s] convolved with h[s] (2, 4, T), cut to
    the music's length: overlap-save in transforms of ~4 T, each speaker transformed once
    and the speakers summed before the inverse transforms."""
    n, taps = music.shape[1], h.shape[-1]
    size = sfft.next_fast_len(4 * taps, True)
    step = size - taps + 1
    spectra = sfft.rfft(h.astype(np.float32), size)
    padded = np.concatenate([np.zeros((len(h), taps - 1), np.float32), music], axis=1)
    out = np.empty((h.shape[1], n), np.float32)
    for a in range(0, n, step):
        m = min(step, n - a)
        x = sfft.rfft(padded[:, a:a + m + taps - 1], size)
        y = sfft.irfft((x[:, None] * spectra).sum(0), size)
        out[:, a:a + m] = y[:, taps - 1:taps - 1 + m]
    return out
