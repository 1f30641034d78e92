"""The 21-joint skeleton dressed as capsules, the shapes the acoustic model sees.

A capsule is the set of points within ``radius`` of its axis segment ``a``-``b``; a sphere is
a capsule with ``a == b``. Positions are world metres (y up, ``bgm2pose.sensing.sim.rig``),
one row per frame. Radii are PHYSICS.md's (torso 0.15 m, head 0.09, upper arm 0.05,
forearm 0.04, thigh 0.07, shin 0.05, foot 0.04; hands are small spheres) for a 1.75 m person
of average build, scaled by ``build`` and ``height / 1.75``. Lengths come from the joints.

Joints follow the usual mocap placement: Head is the base of the skull, Hand the wrist,
Neck the base of the neck. So the head and hand spheres sit one radius beyond those
joints, and the torso's rounded top ends at the Neck joint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.skeleton import INDEX, N_JOINTS

REFERENCE_HEIGHT = 1.75  # m, the height the base radii are for


class BodyError(UserError, ValueError):
    """Joints or body proportions that cannot be dressed."""


@dataclass(frozen=True)
class Body:
    a: np.ndarray  # (F, K, 3) capsule axis start per frame (world, m)
    b: np.ndarray  # (F, K, 3) capsule axis end (a == b for a sphere)
    radius: np.ndarray  # (K,) m
    names: tuple[str, ...]  # K segment names


# (name, from joint, to joint, base radius in m). Head, torso and hands are placed specially.
_LIMBS: tuple[tuple[str, str, str, float], ...] = (
    ("left_upper_arm", "LeftArm", "LeftForeArm", 0.05),
    ("left_forearm", "LeftForeArm", "LeftHand", 0.04),
    ("right_upper_arm", "RightArm", "RightForeArm", 0.05),
    ("right_forearm", "RightForeArm", "RightHand", 0.04),
    ("left_thigh", "LeftUpLeg", "LeftLeg", 0.07),
    ("left_shin", "LeftLeg", "LeftFoot", 0.05),
    ("left_foot", "LeftFoot", "LeftToeBase", 0.04),
    ("right_thigh", "RightUpLeg", "RightLeg", 0.07),
    ("right_shin", "RightLeg", "RightFoot", 0.05),
    ("right_foot", "RightFoot", "RightToeBase", 0.04),
)
_TORSO_RADIUS = 0.15
_HEAD_RADIUS = 0.09
_HAND_RADIUS = 0.045

SEGMENT_NAMES: tuple[str, ...] = (
    ("torso", "head") + tuple(n for n, *_ in _LIMBS) + ("left_hand", "right_hand")
)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-9)


def dress(joints: np.ndarray, height: float = REFERENCE_HEIGHT, build: float = 1.0) -> Body:
    """Capsules for ``joints`` (F, 21, 3) or (21, 3) in ``skeleton.JOINTS`` order, world metres.

    ``height`` (m) and ``build`` (1 = average) scale the radii only."""
    j = np.asarray(joints, dtype=float)
    if j.ndim == 2:
        j = j[None]
    if j.ndim != 3 or j.shape[1:] != (N_JOINTS, 3):
        raise BodyError(
            f"joints of shape {np.shape(joints)} are not 21 joints x 3 coordinates; "
            "pass (frames, 21, 3) or (21, 3) world positions in metres"
        )
    if not np.all(np.isfinite(j)):
        raise BodyError("joints contain NaN or infinite values; clean the pose data first")
    if not (0.5 <= height <= 2.5) or not (0.3 <= build <= 3.0):
        raise BodyError(
            f"height {height} m or build {build} is out of range; use 0.5-2.5 m and 0.3-3"
        )
    scale = build * height / REFERENCE_HEIGHT

    def at(name: str) -> np.ndarray:
        return j[:, INDEX[name]]

    segments: list[tuple[np.ndarray, np.ndarray, float]] = []  # (start, end, radius)

    hips, neck = at("Hips"), at("Neck")
    r = _TORSO_RADIUS * scale
    span = np.linalg.norm(neck - hips, axis=-1, keepdims=True)
    # The rounded top reaches the Neck joint; keep at least half the spine as cylinder
    # for very short (or very wide) torsos.
    segments.append((hips, neck - _unit(neck - hips) * np.minimum(r, 0.5 * span), r))

    head_joint = at("Head")
    r = _HEAD_RADIUS * scale
    centre = head_joint + _unit(head_joint - neck) * r
    segments.append((centre, centre, r))

    for _, first, second, base in _LIMBS:
        segments.append((at(first), at(second), base * scale))

    r = _HAND_RADIUS * scale
    for side in ("Left", "Right"):
        wrist = at(f"{side}Hand")
        centre = wrist + _unit(wrist - at(f"{side}ForeArm")) * r
        segments.append((centre, centre, r))

    return Body(
        a=np.stack([start for start, _, _ in segments], axis=1),
        b=np.stack([end for _, end, _ in segments], axis=1),
        radius=np.array([r for _, _, r in segments], dtype=float),
        names=SEGMENT_NAMES,
    )
