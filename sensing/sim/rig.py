"""Geometry of the sensing rig: room, two speakers, one first-order ambisonic microphone.

World frame (shared with the poses): metres, right-handed, **y up**, the floor at y = 0 and the
room the box [0, Lx] x [0, Ly] x [0, Lz]. The microphone looks at the speakers; by default it
faces +z, so the listener's left is +x. "Left" and "right" speaker are named from the
microphone's (listener's) point of view.

The microphone's B-format axes follow the ambisonic convention of its own frame: X = front,
Y = left, Z = up. ``Rig.mic_axes`` maps world vectors to those axes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bgm2pose.sensing.bformat import plane_wave_gains
from bgm2pose.sensing.errors import UserError

SAMPLE_RATE = 48_000
SPEED_OF_SOUND = 343.0  # m/s, the value pyroomacoustics uses as well


Vec3 = tuple[float, float, float]

# The room's six surfaces, by the world axis they face: the walls at x = 0 and x = Lx, the
# floor and the ceiling (y), the walls at z = 0 and z = Lz. In the default rig the wall
# at z = 0 is behind the microphone, the one at z = Lz behind the speakers.
SURFACES = ("wall_x0", "wall_x1", "floor", "ceiling", "wall_z0", "wall_z1")


class RigError(UserError, ValueError):
    """A rig geometry that cannot be simulated."""


@dataclass(frozen=True)
class Rig:
    room_size: Vec3 = (7.0, 3.0, 6.0)
    # Reverberation time of the room (s); absorption is derived from it (Sabine).
    rt60: float = 0.5
    # Directivity index of the speakers (dB), both aimed at the microphone. A speaker with
    # directivity factor Q = 10^(DI/10) puts 1/Q of an omni's power into the room for the
    # same level on its axis, so the diffuse reverberation is DI dB weaker against the direct
    # sound. 6 dB is a typical small two-way speaker above ~1 kHz; 0 is an omni source.
    speaker_directivity_db: float = 6.0
    # Acoustic level of the speakers re their digital feed (amplifier and speaker
    # sensitivity): with the 4 pi output scale of ``render`` (1/3 at 3 m) the mic peaks near
    # -6 dBFS on the generated music.
    speaker_gain_db: float = -4.0
    speaker_left: Vec3 = (4.0, 1.2, 4.5)
    speaker_right: Vec3 = (3.0, 1.2, 4.5)
    mic: Vec3 = (3.5, 1.2, 1.5)
    # Where the person stands: a disc on the floor between speakers and microphone. Small,
    # as in AMPL, where subjects acted on the spot: the pose, not the position, is the target,
    # and a 10 cm step moves the features as much as raising both arms (learnability report).
    # 0.15 m leaves the feet's planted spots within ~5 cm plus the balance shifts.
    area_center: Vec3 = (3.5, 0.0, 3.0)
    area_radius: float = 0.15
    sample_rate: int = SAMPLE_RATE
    # Which of the room's paths meet the body (shadowed by it, and lighting it):
    # "first_order" the direct sound and its six first-order reflections, "direct" the
    # direct sound only (the rig before the first-order paths, kept measurable), or a list
    # of surfaces (``SURFACES``) whose first-order reflections do, besides the direct sound.
    body_paths: str | tuple[str, ...] = "first_order"

    def __post_init__(self) -> None:
        size = np.asarray(self.room_size, float)
        if size.shape != (3,) or np.any(size <= 0):
            raise RigError(f"room size {self.room_size} must be three positive lengths in metres")
        for name in ("speaker_left", "speaker_right", "mic"):
            p = np.asarray(getattr(self, name), float)
            if p.shape != (3,) or np.any(p <= 0) or np.any(p >= size):
                raise RigError(
                    f"{name.replace('_', ' ')} at {tuple(p.tolist())} is outside the room "
                    f"{tuple(size.tolist())}; place it strictly inside"
                )
        if not 0.05 <= self.rt60 <= 5.0:
            raise RigError(f"RT60 {self.rt60} s is out of range; use 0.05 to 5 s")
        if isinstance(self.body_paths, str):
            if self.body_paths not in ("direct", "first_order"):
                raise RigError(f"body paths {self.body_paths!r} are unknown; use 'first_order', "
                               f"'direct' or a list of surfaces from {list(SURFACES)}")
        elif not set(self.body_paths) <= set(SURFACES):
            raise RigError(f"body paths {list(self.body_paths)} name unknown surfaces "
                           f"{sorted(set(self.body_paths) - set(SURFACES))}; use {list(SURFACES)}")
        if not 0.0 <= self.speaker_directivity_db <= 15.0:
            raise RigError(f"speaker directivity index {self.speaker_directivity_db} dB is out "
                           "of range; use 0 (omni) to 15 dB")

    @property
    def body_surfaces(self) -> tuple[str, ...]:
        """The surfaces whose first-order reflections meet the body."""
        if self.body_paths == "first_order":
            return SURFACES
        return () if self.body_paths == "direct" else tuple(self.body_paths)

    @property
    def speakers(self) -> np.ndarray:
        """(2, 3) speaker positions, left then right."""
        return np.array([self.speaker_left, self.speaker_right], float)

    @property
    def mic_position(self) -> np.ndarray:
        return np.asarray(self.mic, float)

    @property
    def mic_axes(self) -> np.ndarray:
        """(3, 3) rows = world directions of the mic's X (front), Y (left), Z (up) axes.
        The mic faces the speakers' midpoint, level with the floor."""
        up = np.array([0.0, 1.0, 0.0])
        front = self.speakers.mean(axis=0) - self.mic_position
        front[1] = 0.0
        norm = np.linalg.norm(front)
        if norm < 1e-6:
            raise RigError("the microphone sits directly below or above the speakers; move it")
        front /= norm
        left = np.cross(up, front)  # facing +z with y up, left is +x
        return np.stack([front, left, up])

    def encode(self, directions: np.ndarray) -> np.ndarray:
        """B-format gains (W, X, Y, Z) for sound arriving from world ``directions``
        (..., 3), unit vectors pointing from the mic towards the source. Shape (..., 4)."""
        return plane_wave_gains(np.asarray(directions, float) @ self.mic_axes.T)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Rig":
        """The rig of ``d`` (as ``to_dict`` writes it); missing settings keep their defaults."""
        if not isinstance(d, dict):
            raise RigError(f"rig settings must be a JSON object of name: value, got {type(d).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise RigError(f"unknown rig settings {sorted(unknown)}; known: {sorted(known)}")
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
        except TypeError as exc:  # e.g. a string where a number belongs
            raise RigError(f"bad rig setting value ({exc}); use numbers, and lists of three for positions") from None


def read_rig(path: str | Path | None) -> Rig:
    """The rig of a JSON file of settings over the defaults (names as ``Rig.to_dict``
    writes them, e.g. ``{"body_paths": "direct"}``); the default rig for None."""
    if path is None:
        return Rig()
    path = Path(path)
    try:
        settings = json.loads(path.read_text())
    except OSError as exc:
        raise RigError(f"cannot read the rig file {path} ({exc.strerror}); check the "
                       "path") from None
    except UnicodeDecodeError:
        raise RigError(f"the rig file {path} is not text; write a JSON object such as "
                       '{"rt60": 0.2}') from None
    except json.JSONDecodeError as exc:
        raise RigError(f"the rig file {path} is not valid JSON ({exc.msg}, line "
                       f"{exc.lineno}); write an object such as {{\"rt60\": 0.2}}") from None
    return Rig.from_dict(settings)
