"""The virtual rig in this process: a simulated room with a moving person as an ``AudioBackend``.

A thread stands in for the audio device: each block it pulls ``blocksize`` frames from the
player (``callback_fill``, so the reference ring fills exactly as with a device), renders them
with ``SceneRenderer`` and writes the rendering to ``recorded``. ``realtime=True`` paces the
blocks by a monotonic clock (block k is delivered at ``start + (k + 1) * blocksize / rate``);
``realtime=False`` runs as fast as it can (tests, data generation). Nothing is ever dropped:
a block rendered after its deadline is only counted in ``late_blocks``.

Time base: recorded sample n is rendered from reference sample n (loopback latency 0; the
sound's travel time from the speakers is part of the rendering), so an ``Aligner`` with
latency 0 pairs them. Pose frame f (120 fps) belongs to recorded sample
``f * rate / 120``: the pose at the moment that sample's sound reached the microphone
(``render``). ``PoseTape`` keeps every frame the renderer pulled, which is the ground truth.

Injected device effects (for calibration and drift tracking against a known truth):
``device_latency`` L (samples, fractional allowed) and ``clock_ratio`` r (player samples per
recorder sample, e.g. 1 + 80e-6 for a recorder clock 80 ppm slow) make the recording
``recorded[n] = rendered((n - L) * r)`` (``skew.StreamSkew``: band-limited interpolation,
silence before the first sample), which an ``Aligner`` with latency L and clock ratio r pairs
exactly. Pose frame f then belongs to recorded sample ``f * rate / 120 / r + L``, and
``ground_truth`` maps recorded samples accordingly. With L = 0 and r = 1 the rendering goes
to ``recorded`` untouched; with r = 1 and an integer L it is shifted exactly. Otherwise the
recorder's ring trails the player's by the interpolator's look-ahead (``skew.HALF_TAPS``
samples) while L is below that, as a device's buffering would.

``VirtualScene`` holds the options of a scene (rig, subject, motion and noise seeds) and
builds its renderer, here and in ``virtual_room`` (the same rig as a JACK client).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bgm2pose.sensing.skeleton import N_JOINTS
from bgm2pose.sensing.backends import (MIC_CHANNELS, SPEAKER_CHANNELS, AudioBackend,
                                       BackendError, BackendStats)
from bgm2pose.sensing.player import Player
from bgm2pose.sensing.ring import RingError, SampleRing
from bgm2pose.sensing.skew import SkewError, StreamSkew
from bgm2pose.sensing.sim.motion import SUBJECTS, MotionGenerator, Subject
from bgm2pose.sensing.sim.render import (
    BACKGROUND_NOISE_DB, POSE_FPS, SENSOR_NOISE_DB, PoseSource, SceneRenderer,
)
from bgm2pose.sensing.sim.rig import Rig
from bgm2pose.sensing.sim.room import RoomResponse


class PoseTape:
    """A pose source that remembers the last ``capacity`` frames it handed out, by index.

    Frame f is the f-th frame pulled from ``source``. Pulls come from the render thread and
    reads from any other, hence the lock (neither side is an audio callback).
    """

    def __init__(self, source: PoseSource, capacity: int):
        if capacity < 1:
            raise BackendError(f"a pose tape needs room for at least 1 frame, got {capacity}")
        self.source = source
        self.capacity = capacity
        self._joints = np.zeros((capacity, N_JOINTS, 3), np.float32)
        self._end = 0
        self._lock = threading.Lock()

    @property
    def end(self) -> int:
        """Frames pulled so far."""
        return self._end

    def next(self, n_frames: int) -> np.ndarray:
        joints = np.asarray(self.source.next(n_frames), np.float32)
        with self._lock:
            for f in range(max(0, n_frames - self.capacity), n_frames):
                self._joints[(self._end + f) % self.capacity] = joints[f]
            self._end += n_frames
        return joints

    def frames(self, first: int, stop: int) -> np.ndarray:
        """Copy of frames [first, stop) as (stop - first, 21, 3)."""
        with self._lock:
            oldest = max(0, self._end - self.capacity)
            if first < oldest or stop > self._end or stop < first:
                raise RingError(f"pose frames [{first}, {stop}) requested; frames "
                                f"[{oldest}, {self._end}) are held")
            return self._joints[np.arange(first, stop) % self.capacity]


@dataclass(frozen=True)
class VirtualScene:
    rig: Rig = field(default_factory=Rig)
    subject: Subject | None = SUBJECTS[0]  # None: an empty room
    motion_seed: int = 0
    sensor_noise_db: float | None = SENSOR_NOISE_DB
    background_noise_db: float | None = BACKGROUND_NOISE_DB
    noise_seed: int = 0
    pose_batch: int = 12  # frames of body geometry per batch: small keeps render bursts short

    @classmethod
    def named(cls, subject: str, motion_seed: int = 0, noise_seed: int = 0,
              rig: Rig | None = None) -> VirtualScene:
        """The scene of a subject given by name ("S1".. or "none" for an empty room), in
        ``rig`` (default: the built-in rig)."""
        rig = Rig() if rig is None else rig
        if subject.lower() == "none":
            return cls(rig=rig, subject=None, noise_seed=noise_seed)
        subjects = {s.name: s for s in SUBJECTS}
        if subject not in subjects:
            raise BackendError(f"virtual subject {subject!r} is unknown; use one of "
                               f"{', '.join(subjects)} or 'none'")
        return cls(rig=rig, subject=subjects[subject], motion_seed=motion_seed,
                   noise_seed=noise_seed)

    def render_options(self) -> dict:
        """The keyword arguments ``SceneRenderer`` and ``render_session`` get for this scene,
        so an offline rendering of the same music and poses is the same signal."""
        body = {} if self.subject is None else {"height": self.subject.height,
                                                "build": self.subject.build}
        return dict(body, sensor_noise_db=self.sensor_noise_db,
                    background_noise_db=self.background_noise_db, seed=self.noise_seed,
                    pose_batch=self.pose_batch)

    def motion(self) -> MotionGenerator | None:
        """A fresh motion source for this scene (None for an empty room)."""
        if self.subject is None:
            return None
        return MotionGenerator(self.subject, self.motion_seed, self.rig)

    def build(self, pose_frames: int, room: RoomResponse | None = None
              ) -> tuple[SceneRenderer, PoseTape | None]:
        """A renderer whose poses are recorded on a tape of ``pose_frames`` (None when the
        room is empty); ``room`` reuses an already computed room response."""
        motion = self.motion()
        tape = None if motion is None else PoseTape(motion, pose_frames)
        renderer = SceneRenderer(self.rig, tape, room=room, **self.render_options())
        return renderer, tape


class VirtualBackend(AudioBackend):
    def __init__(self, player: Player, scene: VirtualScene | None = None, *,
                 realtime: bool = True, blocksize: int = 512, ring_seconds: float = 20.0,
                 stop_after: int | None = None, device_latency: float = 0.0,
                 clock_ratio: float = 1.0):
        self.scene = scene = VirtualScene() if scene is None else scene
        if player.sample_rate != scene.rig.sample_rate:
            raise BackendError(
                f"the player runs at {player.sample_rate} Hz but the virtual rig at "
                f"{scene.rig.sample_rate} Hz; use {scene.rig.sample_rate} Hz for both")
        if blocksize < 1:
            raise BackendError(f"block size {blocksize} must be a positive number of frames")
        self.player = player
        self.name = "virtual rig"
        self.sample_rate = scene.rig.sample_rate
        self.realtime = realtime
        self.blocksize = blocksize
        self.stop_after = stop_after  # samples after which the rig stops by itself
        # Fast mode: called with the next block's first recorded sample before it is made, so
        # a consumer can hold the rig back (the live engine waits for its estimator).
        self.pace: Callable[[int], None] | None = None
        self.recorded = SampleRing(MIC_CHANNELS, int(ring_seconds * self.sample_rate))
        self.frame_samples = self.sample_rate // POSE_FPS
        self.renderer, self.poses = scene.build(int((ring_seconds + 1) * POSE_FPS))
        self.device_latency = float(device_latency)
        self.clock_ratio = float(clock_ratio)
        self.separate_clocks = clock_ratio != 1  # as split devices: drift to be tracked
        try:
            self._skew = (None if device_latency == 0 and clock_ratio == 1 else
                          StreamSkew(MIC_CHANNELS, device_latency, clock_ratio))
        except SkewError as exc:
            raise BackendError(f"virtual device settings: {exc}") from exc
        self._out = np.zeros((blocksize, SPEAKER_CHANNELS), np.float32)
        self._thread: threading.Thread | None = None
        self._stop = False
        self._callbacks = 0
        self._late = 0
        self._error: str | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise BackendError("the backend is already started; call start() once")
        self._thread = threading.Thread(target=self._run, name="virtual-rig", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        if self._thread is not None:
            self._thread.join()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the rig stopped by itself (``stop_after`` reached, or an error);
        True if it did within ``timeout`` seconds."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop

    def stats(self) -> BackendStats:
        return BackendStats(callbacks=self._callbacks, input_overflows=0, input_underflows=0,
                            output_underflows=0, output_overflows=0,
                            player_underflows=self.player.status().underflows,
                            late_blocks=self._late, error=self._error)

    def ground_truth(self, start_sample: int, n: int) -> np.ndarray | None:
        """Poses of frames f whose recorded sample ``f * frame_samples / clock_ratio +
        device_latency`` lies in [start_sample, start_sample + n); raises ``RingError`` for
        frames not pulled yet or no longer held."""
        if self.poses is None:
            return None
        fs, r, lat = self.frame_samples, self.clock_ratio, self.device_latency
        first = max(0, math.ceil((start_sample - lat) * r / fs))
        stop = max(first, math.ceil((start_sample + n - lat) * r / fs))
        return self.poses.frames(first, stop)

    def _run(self) -> None:
        period = self.blocksize / self.sample_rate
        t0 = time.monotonic()
        try:
            while not self._stop:
                n = self.blocksize
                if self.stop_after is not None:
                    n = min(n, self.stop_after - self.recorded.end)
                    if n <= 0:
                        break
                if self.pace is not None:
                    self.pace(self.recorded.end)
                out = self._out[:n]
                self.player.callback_fill(out)
                rendered = self.renderer.process(out.T)
                if self._skew is not None:
                    rendered = self._skew.process(rendered)
                    if self.stop_after is not None:
                        rendered = rendered[:, :self.stop_after - self.recorded.end]
                self.recorded.write(rendered.T)
                self._callbacks += 1
                if self.realtime:
                    wait = t0 + self._callbacks * period - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    elif wait < -period:
                        self._late += 1
        except Exception as exc:  # a bug or bad scene: keep it for stats() to show
            self._error = f"the virtual rig stopped: {type(exc).__name__}: {exc}"
