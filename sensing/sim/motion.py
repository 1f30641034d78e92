"""Procedural human motion for the virtual rig: random chains of everyday actions, 120 fps.

Output: joint positions (F, 21, 3) float32 in the world frame of ``rig.py`` (metres, y up,
floor y = 0), joints in ``skeleton.JOINTS`` order. The person stands in the rig's sensing
disc and roughly faces the microphone: the pelvis turns at most ~45 deg away from facing it.

How a pose is made:
- A pose is a vector of named *tracks* (``_TRACKS``): root position and yaw, pelvis and spine
  angles, neck, per-arm swing (elevation, plane of elevation), twist and elbow flexion, squat
  depth, and per-foot plant position, heading and lift. Angles in radians. Each track is
  clamped to its joint limits, which is how the limits are enforced.
- Actions (stand, arm raise, wave, reach, squat, step, twist, bend) add *moves* to tracks:
  minimum-jerk changes from the track's current target to a new one, and *layers*:
  enveloped oscillations (wave, sway, breathing) and lift bumps (stepping feet). A track's
  value is the sum of its moves and layers, so an action that starts before the previous
  one ends cross-fades into it without a jump. Move durations are stretched so no track
  changes faster than its peak rate.
- Forward kinematics turns the tracks into joint positions: upper body by local rotations
  down the tree; legs by two-bone IK from the hip joints to the planted ankles, with the
  knee bending in the foot's forward direction. The pelvis height is the desired height
  (standing minus squat depth) limited so both ankles stay reachable with the knee between
  ~4 and 150 deg, so planted feet stay on the floor (ToeBase ~1.4 cm up) and never go below.

Body frame: +x the subject's left, +y up, +z front (see ``subjects.py``). Streaming and
offline generation share one path: the schedule of actions depends only on the seed, and a
frame's value depends only on its index, so any split into chunks gives the same frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from bgm2pose.sensing import skeleton
from bgm2pose.sensing.sim.rig import Rig
from bgm2pose.sensing.sim.subjects import SUBJECTS, Subject, random_subject

__all__ = [
    "FPS", "MotionError", "MotionGenerator", "generate_motion",
    "SUBJECTS", "Subject", "random_subject",
]

FPS = 120
_BLOCK = 4096  # frames per forward-kinematics batch: bounds memory for long requests
_D = np.pi / 180
_I = skeleton.INDEX
_KNEE_MAX = 150 * _D
_KNEE_STRAIGHT = 0.9995  # hip-ankle distance / leg length when standing: knee ~3.6 deg


class MotionError(ValueError):
    """Arguments that cannot produce a motion."""


@dataclass(frozen=True)
class _Track:
    name: str
    lo: float
    hi: float
    # Peak rate (units/s) a move may reach; None for tracks whose moves the action times.
    rate: float | None


class _Move(NamedTuple):
    """Minimum-jerk change of one track by ``delta`` between times ta and tb; frames from
    ia (inclusive) to ib (exclusive) are in transit, frames from ib on carry all of it."""
    ia: int
    ib: int
    ta: float
    tb: float
    delta: float


class _Layer(NamedTuple):
    """A transient added to track ``track`` on frames ia..ib-1: an oscillation with smooth
    ramps ("osc") or a sin^2 bump ("bump")."""
    track: int
    ia: int
    ib: int
    ta: float
    tb: float
    kind: str
    amp: float
    freq: float = 0.0
    phase: float = 0.0
    ramp: float = 0.0


def _frames(t0: float, t1: float) -> tuple[int, int]:
    return int(np.floor(t0 * FPS)), int(np.ceil(t1 * FPS))


def _arm_tracks(side: str) -> tuple[_Track, ...]:
    return (
        _Track(f"{side}_elev", 0.0, 180 * _D, 4.0),  # 0 hanging, 90 horizontal, 180 overhead
        _Track(f"{side}_az", -40 * _D, 130 * _D, 4.0),  # plane: 0 front, 90 to the side
        _Track(f"{side}_twist", -60 * _D, 90 * _D, 4.0),  # humeral rotation, + external
        _Track(f"{side}_elbow", 0.0, 150 * _D, 5.0),  # flexion, no hyperextension
    )


def _foot_tracks(side: str) -> tuple[_Track, ...]:
    inf = np.inf
    return (
        _Track(f"{side}f_x", -inf, inf, None),  # ankle plant, world
        _Track(f"{side}f_z", -inf, inf, None),
        _Track(f"{side}f_yaw", -inf, inf, None),  # world heading of the foot
        _Track(f"{side}f_lift", 0.0, 0.25, None),  # ankle above its standing height, m
    )


_TRACKS: tuple[_Track, ...] = (
    _Track("root_x", -np.inf, np.inf, None),  # world, before the balance shift "back"
    _Track("root_z", -np.inf, np.inf, None),
    _Track("yaw", -32 * _D, 32 * _D, None),  # heading relative to facing the mic, + left
    _Track("back", -0.05, 0.20, 0.5),  # pelvis shifted backwards for balance, m
    _Track("drop", 0.0, 0.6, 0.6),  # squat depth, m
    _Track("pelvis_pitch", -15 * _D, 40 * _D, 1.2),  # + tilts forward
    _Track("pelvis_roll", -12 * _D, 12 * _D, 1.2),  # + leans left
    _Track("pelvis_yaw", -15 * _D, 15 * _D, 1.2),  # + turns left
    _Track("spine_pitch", -25 * _D, 75 * _D, 1.5),  # split over Spine and Spine1
    _Track("spine_roll", -35 * _D, 35 * _D, 1.5),
    _Track("spine_yaw", -50 * _D, 50 * _D, 1.5),
    _Track("neck_pitch", -40 * _D, 50 * _D, 2.5),  # + looks down
    _Track("neck_yaw", -60 * _D, 60 * _D, 2.5),
    _Track("neck_roll", -30 * _D, 30 * _D, 2.5),
    *_arm_tracks("l"), *_arm_tracks("r"),
    *_foot_tracks("l"), *_foot_tracks("r"),
)
_K = {t.name: k for k, t in enumerate(_TRACKS)}
_LO = np.array([t.lo for t in _TRACKS])
_HI = np.array([t.hi for t in _TRACKS])
_TRUNK = ("back", "drop", "pelvis_pitch", "pelvis_roll", "pelvis_yaw",
          "spine_pitch", "spine_roll", "spine_yaw")
_ACTIONS = ("stand", "arm_raise", "wave", "reach", "squat", "step", "twist", "bend",
            "arm_raise", "reach", "step")  # one deck: arms and steps come up more often


def _smooth(u: np.ndarray) -> np.ndarray:
    """Minimum-jerk step 0 -> 1 on u in [0, 1]; peak slope 1.875."""
    return u * u * u * (10.0 + u * (-15.0 + 6.0 * u))


def _rot(axis: int, angle: np.ndarray) -> np.ndarray:
    """(n, 3, 3) rotations by ``angle`` (n,) about the x (0), y (1) or z (2) axis."""
    c, s = np.cos(angle), np.sin(angle)
    r = np.zeros(angle.shape + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r[..., axis, axis] = 1.0
    r[..., i, i] = c
    r[..., j, j] = c
    r[..., i, j] = -s
    r[..., j, i] = s
    return r


def _swing(elev: np.ndarray, az: np.ndarray) -> np.ndarray:
    """Rotation taking a left limb hanging along -y to elevation ``elev`` in the vertical plane
    at azimuth ``az`` (0 = front, 90 deg = out to the left): Rodrigues about a level axis."""
    n = np.stack([-np.cos(az), np.zeros_like(az), np.sin(az)], axis=-1)
    c, s = np.cos(elev)[..., None, None], np.sin(elev)[..., None, None]
    k = np.zeros(az.shape + (3, 3))
    k[..., 0, 1], k[..., 1, 0] = -n[..., 2], n[..., 2]
    k[..., 1, 2], k[..., 2, 1] = -n[..., 0], n[..., 0]
    return c * np.eye(3) + s * k + (1 - c) * n[..., :, None] * n[..., None, :]


def _mirror(r: np.ndarray) -> np.ndarray:
    """The right-side twin of a left-side rotation (reflection x -> -x)."""
    m = r.copy()
    m[..., 0, 1:] *= -1
    m[..., 1:, 0] *= -1
    return m


def _apply(r: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.einsum("nij,nj->ni", r, np.broadcast_to(v, r.shape[:-1]))


def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


class MotionGenerator:
    """Endless motion for one subject; ``next(n)`` continues seamlessly where it stopped."""

    def __init__(self, subject: Subject, seed: int, rig: Rig | None = None) -> None:
        if not isinstance(subject, Subject):
            raise MotionError(f"subject must be a Subject, got {type(subject).__name__}; "
                              "pick one of SUBJECTS or random_subject(rng)")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise MotionError(f"seed {seed!r} must be a non-negative integer")
        rig = Rig() if rig is None else rig
        centre = np.array([rig.area_center[0], rig.area_center[2]], float)
        mic = np.array([rig.mic[0], rig.mic[2]], float)
        if rig.area_radius < 0.1:
            raise MotionError(f"the sensing area radius {rig.area_radius} m leaves no room to "
                              "move; use at least 0.1 m")
        if np.linalg.norm(mic - centre) < rig.area_radius + 0.3:
            raise MotionError("the microphone stands inside or next to the sensing area; "
                              "move it at least 0.3 m beyond the area's edge")
        self.subject, self.rig = subject, rig
        self._rng = np.random.default_rng(seed)
        self._centre, self._mic, self._radius = centre, mic, float(rig.area_radius)
        self._psi_c = float(np.arctan2(*(mic - centre)))  # heading that faces the mic
        # Root plant targets keep clear of the edge by the largest balance shift.
        self._target_radius = max(self._radius - 0.15, 0.3 * self._radius)

        off = subject.offsets()
        self._off = off
        self._thigh = float(np.linalg.norm(off[_I["LeftLeg"]]))
        self._shank = float(np.linalg.norm(off[_I["LeftFoot"]]))
        l1, l2 = self._thigh, self._shank
        self._reach_max = _KNEE_STRAIGHT * (l1 + l2)
        self._reach_min = np.sqrt(l1**2 + l2**2 + 2 * l1 * l2 * np.cos(_KNEE_MAX))
        self._ankle_height = float(subject.rest_pose()[_I["LeftFoot"], 1])

        self._frame = 0  # index of the next frame to emit
        self._moves: list[list[_Move]] = [[] for _ in _TRACKS]  # per track, in creation order
        self._layers: list[_Layer] = []
        self._deck: list[str] = []
        self._feet_free = 0.0  # time after which the feet may take new steps
        self._next_t0 = 0.0
        self._base = np.zeros(len(_TRACKS))  # initial values plus every folded move
        self._start_pose()
        self._target = self._base.copy()  # value each track reaches once its moves end

    # ---------------------------------------------------------------- public

    @property
    def frame(self) -> int:
        """Number of frames emitted so far."""
        return self._frame

    def next(self, n_frames: int) -> np.ndarray:
        """The next ``n_frames`` poses, (n_frames, 21, 3) float32 world metres."""
        if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) \
                or n_frames < 0:
            raise MotionError(f"n_frames {n_frames!r} must be a non-negative integer")
        out = np.empty((n_frames, skeleton.N_JOINTS, 3), np.float32)
        for a in range(0, n_frames, _BLOCK):
            b = min(a + _BLOCK, n_frames)
            c0, c1 = self._frame, self._frame + (b - a)
            while self._next_t0 * FPS < c1:
                self._schedule_action()
            out[a:b] = self._pose(self._tracks(c0, c1))
            self._frame = c1
            self._fold(c1)
        return out

    # ---------------------------------------------------------------- tracks

    def _tracks(self, c0: int, c1: int) -> np.ndarray:
        """(n, K) clamped track values for frames c0..c1-1. Each frame sums the same terms
        in the same order however the frames are chunked."""
        n = c1 - c0
        t = np.arange(c0, c1) / FPS
        q = np.tile(self._base, (n, 1))
        for k, moves in enumerate(self._moves):
            col = q[:, k]
            for ia, ib, ta, tb, delta in moves:
                lo, hi = max(ia - c0, 0), min(ib - c0, n)
                if lo < hi:
                    col[lo:hi] += delta * _smooth(np.clip((t[lo:hi] - ta) / (tb - ta), 0, 1))
                if ib - c0 < n:
                    col[max(ib - c0, 0):] += delta
        for k, ia, ib, ta, tb, kind, amp, freq, phase, ramp in self._layers:
            lo, hi = max(ia - c0, 0), min(ib - c0, n)
            if lo >= hi:
                continue
            tt = t[lo:hi]
            if kind == "osc":
                env = (_smooth(np.clip((tt - ta) / ramp, 0, 1))
                       * _smooth(np.clip((tb - tt) / ramp, 0, 1)))
                q[lo:hi, k] += amp * env * np.sin(2 * np.pi * freq * (tt - ta) + phase)
            else:  # bump
                q[lo:hi, k] += amp * np.sin(np.pi * np.clip((tt - ta) / (tb - ta), 0, 1)) ** 2
        return np.clip(q, _LO, _HI)

    def _fold(self, c: int) -> None:
        """Fold each track's finished leading moves into its base; drop finished layers."""
        for k, moves in enumerate(self._moves):
            done = 0
            while done < len(moves) and moves[done].ib <= c:
                self._base[k] += moves[done].delta
                done += 1
            del moves[:done]
        self._layers = [layer for layer in self._layers if layer.ib > c]

    def _move(self, name: str, t: float, dur: float, target: float) -> float:
        """Ease track ``name`` to ``target`` from time t; returns the time it arrives."""
        k = _K[name]
        tr = _TRACKS[k]
        target = float(np.clip(target, tr.lo, tr.hi))
        delta = target - self._target[k]
        if abs(delta) < 1e-9:
            return t
        if tr.rate is not None:
            dur = max(dur, 1.875 * abs(delta) / tr.rate)
        self._moves[k].append(_Move(*_frames(t, t + dur), t, t + dur, delta))
        self._target[k] = target
        return t + dur

    def _go(self, t: float, dur: float, targets: dict[str, float]) -> float:
        return max([self._move(name, t, dur, v) for name, v in targets.items()], default=t)

    def _osc(self, name: str, t: float, dur: float, amp: float, freq: float,
             ramp: float) -> None:
        phase = self._rng.uniform(0, 2 * np.pi)
        self._layers.append(_Layer(_K[name], *_frames(t, t + dur), t, t + dur, "osc", amp,
                                   freq, phase, min(ramp, dur / 2)))

    def _bump(self, name: str, t: float, dur: float, amp: float) -> None:
        self._layers.append(_Layer(_K[name], *_frames(t, t + dur), t, t + dur, "bump", amp))

    # ---------------------------------------------------------------- geometry helpers

    def _facing(self, x, z):
        """Heading (rad) from root (x, z) to the mic, continuous around the area centre's."""
        return self._psi_c + _wrap(np.arctan2(self._mic[0] - x, self._mic[1] - z) - self._psi_c)

    def _plant(self, side: str, x: float, z: float, heading: float) -> dict[str, float]:
        """Foot targets for standing at root (x, z) with the pelvis facing ``heading``."""
        u = self._rng.uniform
        s = 1.0 if side == "l" else -1.0
        half = self._off[_I["LeftUpLeg"], 0] + u(0.0, 0.06)
        fwd = u(-0.02, 0.04)
        c, sn = np.cos(heading), np.sin(heading)
        return {f"{side}f_x": x + s * half * c + fwd * sn,
                f"{side}f_z": z - s * half * sn + fwd * c,
                f"{side}f_yaw": heading + s * u(4, 12) * _D}  # toes turn out a little

    def _neutral_arm(self, side: str) -> dict[str, float]:
        u = self._rng.uniform
        return {f"{side}_elev": (u(3, 12) + 10 * (self.subject.build - 1)) * _D,
                f"{side}_az": u(50, 95) * _D, f"{side}_twist": u(-10, 20) * _D,
                f"{side}_elbow": u(5, 25) * _D}

    def _neutral_trunk(self) -> dict[str, float]:
        u = self._rng.uniform
        return {"back": 0.0, "drop": 0.0, "pelvis_pitch": u(-3, 6) * _D,
                "pelvis_roll": u(-3, 3) * _D, "pelvis_yaw": u(-5, 5) * _D,
                "spine_pitch": u(-5, 8) * _D, "spine_roll": u(-4, 4) * _D,
                "spine_yaw": u(-8, 8) * _D}

    def _start_pose(self) -> None:
        u = self._rng.uniform
        r = self._target_radius * np.sqrt(u())
        a = u(0, 2 * np.pi)
        x, z = self._centre + r * np.array([np.cos(a), np.sin(a)])
        yaw = u(-32, 32) * _D
        heading = float(self._facing(x, z)) + yaw
        values = {"root_x": x, "root_z": z, "yaw": yaw, **self._neutral_trunk(),
                  **self._neutral_arm("l"), **self._neutral_arm("r"),
                  **self._plant("l", x, z, heading), **self._plant("r", x, z, heading)}
        for name, v in values.items():
            self._base[_K[name]] = v

    # ---------------------------------------------------------------- actions

    def _schedule_action(self) -> None:
        rng = self._rng
        if not self._deck:
            self._deck = [_ACTIONS[i] for i in rng.permutation(len(_ACTIONS))]
        name = self._deck.pop()
        speed = rng.uniform(0.6, 1.5)
        t0 = self._next_t0
        end = getattr(self, "_act_" + name)(t0, speed)
        # The next action begins a little before this one settles: a cross-fade.
        self._next_t0 = max(t0 + 0.25, end - rng.uniform(0.0, 0.3))

    def _relax(self, t: float, speed: float, keep: set[str]) -> float:
        """Ease the body parts the coming action does not use ("l", "r", "trunk") back to
        rest, each sometimes left as it is; the head always glances somewhere new."""
        rng = self._rng
        dur = rng.uniform(0.6, 1.2) / speed
        targets = {"neck_pitch": rng.uniform(-10, 15) * _D, "neck_yaw": rng.uniform(-20, 20) * _D,
                   "neck_roll": rng.uniform(-6, 6) * _D}
        for side in ("l", "r"):
            if side not in keep and rng.uniform() < 0.6:
                targets.update(self._neutral_arm(side))
        if "trunk" not in keep and rng.uniform() < 0.8:
            targets.update(self._neutral_trunk())
        return self._go(t, dur, targets)

    def _act_stand(self, t0: float, speed: float) -> float:
        u = self._rng.uniform
        end = self._relax(t0, speed, set())
        hold = u(0.8, 3.0)
        for name in ("root_x", "root_z"):  # postural sway over planted feet
            self._osc(name, t0, hold, u(0.004, 0.012), u(0.15, 0.4), 0.5)
        self._osc("spine_pitch", t0, hold, 0.6 * _D, u(0.2, 0.35), 0.5)  # breathing
        self._move("pelvis_roll", t0, u(0.6, 1.2) / speed, u(-5, 5) * _D)  # weight shift
        return max(end, t0 + hold)

    def _act_arm_raise(self, t0: float, speed: float) -> float:
        rng, u = self._rng, self._rng.uniform
        sides = [("l",), ("r",), ("l", "r")][rng.integers(3)]
        style = rng.choice(["front", "side", "overhead"], p=[0.3, 0.3, 0.4])
        self._relax(t0, speed, set(sides))
        targets = {}
        for side in sides:
            elev, az = {"front": (u(65, 110), u(-10, 25)), "side": (u(70, 110), u(75, 100)),
                        "overhead": (u(150, 178), u(15, 95))}[style]
            targets.update({f"{side}_elev": elev * _D, f"{side}_az": az * _D,
                            f"{side}_elbow": u(0, 25) * _D, f"{side}_twist": u(-10, 40) * _D})
        end = self._go(t0, u(0.6, 1.2) / speed, targets) + u(0.3, 1.5) / speed
        if u() < 0.5:
            lowered = {}
            for side in sides:
                lowered.update(self._neutral_arm(side))
            end = self._go(end, u(0.6, 1.2) / speed, lowered)
        return end

    def _act_wave(self, t0: float, speed: float) -> float:
        rng, u = self._rng, self._rng.uniform
        side = "lr"[rng.integers(2)]
        self._relax(t0, speed, {side})
        end = self._go(t0, u(0.5, 1.0) / speed, {
            f"{side}_elev": u(100, 150) * _D, f"{side}_az": u(50, 100) * _D,
            f"{side}_elbow": u(60, 110) * _D, f"{side}_twist": u(40, 65) * _D})
        freq = u(1.5, 3.0)
        dur = u(2, 5) / freq
        # Side to side swings the forearm about the upper arm; some wave with the elbow.
        joint = f"{side}_twist" if u() < 0.7 else f"{side}_elbow"
        self._osc(joint, end, dur, u(15, 25) * _D, freq, 0.15)
        end += dur
        if u() < 0.6:
            end = self._go(end, u(0.6, 1.2) / speed, self._neutral_arm(side))
        return end

    def _act_reach(self, t0: float, speed: float) -> float:
        rng, u = self._rng, self._rng.uniform
        side = "lr"[rng.integers(2)]
        s = 1.0 if side == "l" else -1.0
        self._relax(t0, speed, {side, "trunk"})
        elev, az = u(30, 130) * _D, u(-30, 100) * _D
        front, out = max(np.cos(az), 0.0) * np.sin(elev), max(np.sin(az), 0.0)
        lean = u(0, 30) * _D * front
        targets = {f"{side}_elev": elev, f"{side}_az": az, f"{side}_elbow": u(0, 35) * _D,
                   f"{side}_twist": u(-20, 30) * _D,
                   # The trunk follows the hand: forward, sideways and turned towards it.
                   "spine_pitch": lean, "pelvis_pitch": 0.3 * lean, "back": 0.12 * lean,
                   "spine_roll": s * u(0, 20) * _D * out, "spine_yaw": s * u(-10, 25) * _D,
                   "pelvis_roll": 0.0, "pelvis_yaw": 0.0, "drop": 0.0}
        end = self._go(t0, u(0.6, 1.3) / speed, targets) + u(0.2, 1.0) / speed
        if u() < 0.6:
            end = self._go(end, u(0.6, 1.2) / speed,
                           {**self._neutral_arm(side), **self._neutral_trunk()})
        return end

    def _act_squat(self, t0: float, speed: float) -> float:
        u = self._rng.uniform
        arms_forward = u() < 0.5
        self._relax(t0, speed, {"l", "r", "trunk"} if arms_forward else {"trunk"})
        drop = u(0.08, 0.2) * self.subject.height
        targets = {"drop": drop, "back": drop * u(0.25, 0.4),
                   "pelvis_pitch": u(10, 30) * _D, "spine_pitch": u(0, 25) * _D,
                   "pelvis_roll": 0.0, "spine_roll": 0.0, "neck_pitch": -u(0, 15) * _D}
        if arms_forward:  # counterbalance
            for side in ("l", "r"):
                targets.update({f"{side}_elev": u(60, 95) * _D, f"{side}_az": u(0, 25) * _D,
                                f"{side}_elbow": u(0, 30) * _D})
        end = self._go(t0, u(0.8, 1.6) / speed, targets) + u(0.2, 1.5) / speed
        up = self._neutral_trunk()
        if arms_forward and u() < 0.5:
            up.update({**self._neutral_arm("l"), **self._neutral_arm("r")})
        return self._go(end, u(0.8, 1.6) / speed, up)

    def _act_step(self, t0: float, speed: float) -> float:
        """Walk the root to a new spot (or turn on the spot), alternating feet."""
        rng, u = self._rng, self._rng.uniform
        t0 = max(t0, self._feet_free)
        self._relax(t0, speed, set())
        x0, z0 = self._target[_K["root_x"]], self._target[_K["root_z"]]
        yaw0 = self._target[_K["yaw"]]
        x1, z1 = x0, z0
        if u() < 0.8:
            for _ in range(30):
                r, a = self._target_radius * np.sqrt(u()), u(0, 2 * np.pi)
                x1, z1 = self._centre + r * np.array([np.cos(a), np.sin(a)])
                if 0.08 <= np.hypot(x1 - x0, z1 - z0) <= 0.55:
                    break
        yaw1 = u(-32, 32) * _D  # with pelvis yaw, the body stays within ~45 deg
        dist = float(np.hypot(x1 - x0, z1 - z0))
        n = 2 + int(dist > 0.3) + int(dist > 0.55)
        dur = max(n * u(0.45, 0.8) / speed, 1.875 * dist / 0.8, 1.875 * abs(yaw1 - yaw0) / 1.2)
        self._go(t0, dur, {"root_x": x1, "root_z": z1, "yaw": yaw1})
        lead = "lr"[rng.integers(2)]
        for k in range(n):
            side = lead if k % 2 == 0 else ("r" if lead == "l" else "l")
            f = min(1.0, (k + 2) / n)  # the last two steps land in the final stance
            x, z, yaw = x0 + f * (x1 - x0), z0 + f * (z1 - z0), yaw0 + f * (yaw1 - yaw0)
            plant = self._plant(side, x, z, float(self._facing(x, z)) + yaw)
            ts, swing = t0 + k * dur / n, dur / n
            length = np.hypot(plant[f"{side}f_x"] - self._target[_K[f"{side}f_x"]],
                              plant[f"{side}f_z"] - self._target[_K[f"{side}f_z"]])
            self._go(ts, swing, plant)
            self._bump(f"{side}f_lift", ts, swing, u(0.03, 0.06) + 0.15 * length)
        self._feet_free = t0 + dur
        return t0 + dur

    def _act_twist(self, t0: float, speed: float) -> float:
        u = self._rng.uniform
        s = 1.0 if u() < 0.5 else -1.0
        self._relax(t0, speed, {"trunk"})
        end = self._go(t0, u(0.6, 1.4) / speed, {
            "spine_yaw": s * u(15, 50) * _D, "pelvis_yaw": s * u(0, 12) * _D,
            "neck_yaw": s * u(0, 30) * _D, "spine_pitch": u(-5, 10) * _D}) + u(0.2, 1.2) / speed
        if u() < 0.7:
            end = self._go(end, u(0.6, 1.4) / speed, self._neutral_trunk())
        return end

    def _act_bend(self, t0: float, speed: float) -> float:
        u = self._rng.uniform
        forward = u() < 0.6
        hang = forward and u() < 0.6
        self._relax(t0, speed, {"trunk", "l", "r"} if hang else {"trunk"})
        if forward:
            pitch, tilt = u(25, 70) * _D, u(10, 35) * _D
            targets = {"spine_pitch": pitch, "pelvis_pitch": tilt, "back": u(0.03, 0.1),
                       "drop": u(0, 0.02) * self.subject.height, "neck_pitch": -u(0, 25) * _D,
                       "spine_roll": 0.0, "spine_yaw": 0.0}
            if hang:  # arms hang down under gravity instead of swinging up with the torso
                for side in ("l", "r"):
                    targets.update({f"{side}_elev": u(0.5, 1.0) * (pitch + tilt),
                                    f"{side}_az": u(0, 20) * _D, f"{side}_elbow": u(0, 20) * _D})
        else:
            s = 1.0 if u() < 0.5 else -1.0
            targets = {"spine_roll": s * u(15, 35) * _D, "pelvis_roll": -s * u(0, 8) * _D,
                       "neck_roll": s * u(0, 15) * _D, "spine_pitch": u(-5, 10) * _D}
        end = self._go(t0, u(0.8, 1.6) / speed, targets) + u(0.2, 1.2) / speed
        if u() < 0.85:
            back = self._neutral_trunk()
            if hang:
                back.update({**self._neutral_arm("l"), **self._neutral_arm("r")})
            end = self._go(end, u(0.8, 1.6) / speed, back)
        return end

    # ---------------------------------------------------------------- kinematics

    def _pose(self, q: np.ndarray) -> np.ndarray:
        """(n, 21, 3) world joint positions from (n, K) track values."""
        def col(name: str) -> np.ndarray:
            return q[:, _K[name]]

        n, off = len(q), self._off
        g = np.zeros((n, skeleton.N_JOINTS, 3, 3))
        p = np.zeros((n, skeleton.N_JOINTS, 3))

        heading = self._facing(col("root_x"), col("root_z")) + col("yaw")
        root = np.stack([col("root_x") - col("back") * np.sin(heading),
                         col("root_z") - col("back") * np.cos(heading)], axis=-1)
        # Keep the root in the disc even when the area is too small for the balance shifts.
        rel = root - self._centre
        dist = np.linalg.norm(rel, axis=-1, keepdims=True)
        root = self._centre + rel * np.minimum(1.0, 0.999 * self._radius / np.maximum(dist, 1e-9))

        g[:, 0] = (_rot(1, heading + col("pelvis_yaw")) @ _rot(0, col("pelvis_pitch"))
                   @ _rot(2, -col("pelvis_roll")))
        spine = (_rot(1, col("spine_yaw") / 2) @ _rot(0, col("spine_pitch") / 2)
                 @ _rot(2, -col("spine_roll") / 2))
        local = {
            "Spine": spine, "Spine1": spine,
            "Neck": _rot(1, col("neck_yaw")) @ _rot(0, col("neck_pitch"))
            @ _rot(2, -col("neck_roll")),
        }
        for side, name in (("l", "Left"), ("r", "Right")):
            elev = col(f"{side}_elev")
            # The clavicle lifts once the arm rises above ~60 deg, as the scapula rotates.
            shrug = _rot(2, 0.2 * np.maximum(elev - 60 * _D, 0.0))
            arm = _swing(elev, col(f"{side}_az")) @ _rot(1, col(f"{side}_twist"))
            if side == "r":
                shrug, arm = _mirror(shrug), _mirror(arm)
            local[name + "Shoulder"] = shrug
            local[name + "Arm"] = arm
            local[name + "ForeArm"] = _rot(0, -col(f"{side}_elbow"))
        upper = [j for j in range(1, skeleton.N_JOINTS) if not skeleton.JOINTS[j].endswith(
            ("UpLeg", "Leg", "Foot", "ToeBase"))]
        for j in upper:  # parents come first in JOINTS order
            par = skeleton.PARENTS[j]
            p[:, j] = p[:, par] + _apply(g[:, par], off[j])
            if skeleton.JOINTS[j] in local:
                g[:, j] = g[:, par] @ local[skeleton.JOINTS[j]]

        # Legs: pelvis height first (both ankles reachable), then two-bone IK per leg.
        hips, ankles, feet_yaw, lift = {}, {}, {}, {}
        y = np.full(n, off[0, 1]) - col("drop")
        lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
        for side, name in (("l", "Left"), ("r", "Right")):
            hip = _apply(g[:, 0], off[_I[name + "UpLeg"]])
            lift[side] = col(f"{side}f_lift")
            ankle = np.stack([col(f"{side}f_x"), self._ankle_height + lift[side],
                              col(f"{side}f_z")], axis=-1)
            h2 = ((root[:, 0] + hip[:, 0] - ankle[:, 0]) ** 2
                  + (root[:, 1] + hip[:, 2] - ankle[:, 2]) ** 2)
            base = ankle[:, 1] - hip[:, 1]
            hi = np.minimum(hi, base + np.sqrt(np.maximum(self._reach_max**2 - h2, 0.0)))
            lo = np.maximum(lo, base + np.sqrt(np.maximum(self._reach_min**2 - h2, 0.0)))
            hips[side], ankles[side], feet_yaw[side] = hip, ankle, col(f"{side}f_yaw")
        y = np.minimum(np.maximum(y, lo), hi)
        origin = np.stack([root[:, 0], y, root[:, 1]], axis=-1)
        l1, l2 = self._thigh, self._shank
        for side, name in (("l", "Left"), ("r", "Right")):
            up, leg, foot, toe = (_I[name + s] for s in ("UpLeg", "Leg", "Foot", "ToeBase"))
            p[:, up] = hips[side]
            v = ankles[side] - (origin + hips[side])
            d = np.linalg.norm(v, axis=-1, keepdims=True)
            dc = np.clip(d, self._reach_min, self._reach_max)
            unit = v / d
            fwd = np.stack([np.sin(feet_yaw[side]), np.zeros(n), np.cos(feet_yaw[side])], -1)
            w = fwd - np.sum(fwd * unit, axis=-1, keepdims=True) * unit
            w /= np.linalg.norm(w, axis=-1, keepdims=True)
            cos_a = np.clip((l1**2 + dc**2 - l2**2) / (2 * l1 * dc), -1, 1)
            sin_a = np.sqrt(1 - cos_a**2)
            thigh = cos_a * unit + sin_a * w  # the knee bends towards the toes
            front = -sin_a * unit + cos_a * w
            g[:, up] = np.stack([np.cross(-thigh, front), -thigh, front], axis=-1)
            cos_b = (l1**2 + l2**2 - dc[:, 0] ** 2) / (2 * l1 * l2)
            knee = np.clip(np.pi - np.arccos(np.clip(cos_b, -1, 1)), 0.0, _KNEE_MAX)
            g[:, leg] = g[:, up] @ _rot(0, knee)
            # Feet stay level when planted; a lifted foot points its toes down a little.
            g[:, foot] = _rot(1, feet_yaw[side]) @ _rot(0, 2.5 * lift[side])
            p[:, leg] = p[:, up] + _apply(g[:, up], off[leg])
            p[:, foot] = p[:, leg] + _apply(g[:, leg], off[foot])
            p[:, toe] = p[:, foot] + _apply(g[:, foot], off[toe])
        return (p + origin[:, None, :]).astype(np.float32)


def generate_motion(subject: Subject, seconds: float, seed: int,
                    rig: Rig | None = None) -> np.ndarray:
    """``seconds`` of motion at ``FPS``: (round(seconds * FPS), 21, 3) float32 world metres.
    Equal to concatenated ``MotionGenerator(subject, seed, rig).next`` chunks."""
    if not (isinstance(seconds, (int, float, np.number)) and np.isfinite(seconds)
            and seconds >= 0):
        raise MotionError(f"seconds {seconds!r} must be a finite non-negative number")
    return MotionGenerator(subject, seed, rig).next(int(round(seconds * FPS)))
