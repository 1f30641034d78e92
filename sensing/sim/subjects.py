"""Virtual subjects: body size and proportions, and the rest-pose skeleton they give.

Rest pose: standing upright, arms hanging at the sides, facing +z, feet on the floor. Body frame
(also the frame of every bone offset): +x is the subject's left, +y up, +z front. Offsets are in
metres, one per joint in ``skeleton.JOINTS`` order, each relative to the parent joint; the root's
offset is the Hips position above the floor point between the feet.

Proportions are fractions of the standing height H for an average adult (Drillis & Contini
segment table: shoulder 0.818 H, elbow 0.63 H, wrist 0.485 H, knee 0.285 H, ankle 0.039 H),
with Hips at ~0.53 H and Hips-Spine at ~0.0526 H (9.2 cm at 1.75 m; the AMPL mean is 9.21 cm).
The joint centres sit inside the body, so the top of the head is a further 0.065 H above the
Head joint (the centre of the head). Per-subject ratios stretch the legs, torso and arms; the
result is rescaled so the top of the head is exactly at ``height``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bgm2pose.sensing import skeleton

_I = skeleton.INDEX
# Height of the ToeBase joint (ball of the foot) above the floor, fraction of H (~1.4 cm).
TOE_HEIGHT = 0.008
_ANKLE_HEIGHT = 0.039
_HEAD_TOP = 0.065  # top of the head above the Head joint


class SubjectError(ValueError):
    """Body measurements that no person has."""


@dataclass(frozen=True)
class Subject:
    name: str
    height: float  # standing height, m
    # Girth factor, 1.0 = average; the renderer scales body capsule radii with it.
    build: float = 1.0
    leg: float = 1.0  # thigh and shank length ratio
    torso: float = 1.0  # pelvis-to-neck length ratio
    arm: float = 1.0  # upper arm and forearm length ratio
    shoulder_width: float = 0.23  # between the shoulder (LeftArm/RightArm) joints, x height
    hip_width: float = 0.105  # between the hip (UpLeg) joints, x height

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SubjectError(f"subject name {self.name!r} must be a non-empty string")
        checks = (
            ("height", self.height, 1.2, 2.2, "m"),
            ("build", self.build, 0.6, 1.6, ""),
            ("leg", self.leg, 0.85, 1.15, ""),
            ("torso", self.torso, 0.85, 1.15, ""),
            ("arm", self.arm, 0.85, 1.15, ""),
            ("shoulder_width", self.shoulder_width, 0.18, 0.28, "x height"),
            ("hip_width", self.hip_width, 0.08, 0.14, "x height"),
        )
        for field, value, lo, hi, unit in checks:
            if not (isinstance(value, (int, float)) and lo <= value <= hi):
                raise SubjectError(
                    f"subject {self.name!r}: {field} {value!r} is outside the human range; "
                    f"use {lo}..{hi} {unit}".rstrip()
                )

    def offsets(self) -> np.ndarray:
        """(21, 3) rest-pose bone offsets in metres (see the module docstring)."""
        t, lg, a = self.torso, self.leg, self.arm
        thigh, shank = 0.222 * lg, 0.246 * lg
        off = np.zeros((skeleton.N_JOINTS, 3))
        off[_I["Spine"]] = (0, 0.0526 * t, 0)
        off[_I["Spine1"]] = (0, 0.120 * t, 0)
        off[_I["Neck"]] = (0, 0.147 * t, 0)
        off[_I["Head"]] = (0, 0.085, 0.010)
        for side, s in (("Left", 1.0), ("Right", -1.0)):
            # The clavicle starts beside the sternum top and ends at the shoulder joint.
            off[_I[side + "Shoulder"]] = (s * 0.020, 0.107 * t, 0)
            off[_I[side + "Arm"]] = (s * (self.shoulder_width / 2 - 0.020), 0.005, 0)
            off[_I[side + "ForeArm"]] = (0, -0.186 * a, 0)
            off[_I[side + "Hand"]] = (0, -0.146 * a, 0)
            off[_I[side + "UpLeg"]] = (s * self.hip_width / 2, -0.025, 0)
            off[_I[side + "Leg"]] = (0, -thigh, 0)
            off[_I[side + "Foot"]] = (0, -shank, 0)
            off[_I[side + "ToeBase"]] = (0, TOE_HEIGHT - _ANKLE_HEIGHT, 0.085)
        off[_I["Hips"]] = (0, 0.025 + thigh + shank + _ANKLE_HEIGHT, 0)
        top = off[[_I["Hips"], _I["Spine"], _I["Spine1"], _I["Neck"], _I["Head"]], 1].sum()
        return off * (self.height / (top + _HEAD_TOP))

    def rest_pose(self) -> np.ndarray:
        """(21, 3) joint positions of the rest pose, Hips above the origin, y up."""
        off = self.offsets()
        pos = np.zeros_like(off)
        for j, p in enumerate(skeleton.PARENTS):
            pos[j] = off[j] if p < 0 else pos[p] + off[j]
        return pos


# Eight fixed virtual subjects spanning heights, builds and proportions of adults.
SUBJECTS: tuple[Subject, ...] = (
    Subject("S1", 1.75, 1.00, 1.00, 1.00, 1.00, 0.230, 0.105),
    Subject("S2", 1.58, 0.90, 0.98, 1.02, 0.98, 0.215, 0.112),
    Subject("S3", 1.88, 1.10, 1.03, 0.98, 1.02, 0.240, 0.100),
    Subject("S4", 1.66, 1.20, 0.96, 1.04, 0.99, 0.235, 0.110),
    Subject("S5", 1.92, 0.87, 1.04, 0.97, 1.04, 0.225, 0.098),
    Subject("S6", 1.55, 1.05, 0.97, 1.01, 0.97, 0.220, 0.114),
    Subject("S7", 1.81, 0.95, 1.01, 0.99, 1.03, 0.232, 0.104),
    Subject("S8", 1.70, 1.15, 0.99, 1.03, 0.96, 0.238, 0.108),
)


def random_subject(rng: np.random.Generator) -> Subject:
    """A fresh adult for rig randomisation, named "R" plus a hex tag drawn from ``rng``."""
    u = rng.uniform
    return Subject(
        name=f"R{int(rng.integers(16**6)):06x}",
        height=round(float(u(1.55, 1.92)), 3),
        build=round(float(u(0.85, 1.2)), 3),
        leg=round(float(u(0.95, 1.05)), 3),
        torso=round(float(u(0.95, 1.05)), 3),
        arm=round(float(u(0.95, 1.05)), 3),
        shoulder_width=round(float(u(0.21, 0.245)), 4),
        hip_width=round(float(u(0.095, 0.115)), 4),
    )
