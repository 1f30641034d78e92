"""The 21-joint skeleton of the AMPL data set: joint order, bones, part groups, normalisation.

Poses are arrays of shape (..., 21, 3) in the order of ``JOINTS``, x, y, z per joint, y up.
The flat layout used by the data set and the networks is (..., 63) = x0, y0, z0, x1, ...

It lives in ``sensing`` beside what senses and simulates poses (the virtual rig dresses it
with capsules, the teachers map landmarks onto it), so that ``sensing`` imports nothing of
``models``; and it is plain numpy, so none of them pulls in torch.
"""

from __future__ import annotations

import numpy as np

from bgm2pose.sensing.errors import UserError

JOINTS: tuple[str, ...] = (
    "Hips", "Spine", "Spine1", "Neck", "Head",
    "LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand",
    "RightShoulder", "RightArm", "RightForeArm", "RightHand",
    "LeftUpLeg", "LeftLeg", "LeftFoot", "LeftToeBase",
    "RightUpLeg", "RightLeg", "RightFoot", "RightToeBase",
)
N_JOINTS = len(JOINTS)
INDEX: dict[str, int] = {name: i for i, name in enumerate(JOINTS)}

_PARENT_NAMES: dict[str, str | None] = {
    "Hips": None, "Spine": "Hips", "Spine1": "Spine", "Neck": "Spine1", "Head": "Neck",
    "LeftShoulder": "Spine1", "LeftArm": "LeftShoulder", "LeftForeArm": "LeftArm",
    "LeftHand": "LeftForeArm",
    "RightShoulder": "Spine1", "RightArm": "RightShoulder", "RightForeArm": "RightArm",
    "RightHand": "RightForeArm",
    "LeftUpLeg": "Hips", "LeftLeg": "LeftUpLeg", "LeftFoot": "LeftLeg",
    "LeftToeBase": "LeftFoot",
    "RightUpLeg": "Hips", "RightLeg": "RightUpLeg", "RightFoot": "RightLeg",
    "RightToeBase": "RightFoot",
}
# PARENTS[j] is the index of joint j's parent, -1 for the root (Hips).
PARENTS: tuple[int, ...] = tuple(
    -1 if _PARENT_NAMES[n] is None else INDEX[_PARENT_NAMES[n]] for n in JOINTS
)
# One (parent, child) pair per bone: 20 bones.
BONES: tuple[tuple[int, int], ...] = tuple((p, j) for j, p in enumerate(PARENTS) if p >= 0)

# Per-part groups for the metrics (REFERENCE.md): arms = shoulder..hand, legs = up-leg..toe.
PARTS: dict[str, tuple[int, ...]] = {
    "all": tuple(range(N_JOINTS)),
    "arm": tuple(range(INDEX["LeftShoulder"], INDEX["RightHand"] + 1)),
    "leg": tuple(range(INDEX["LeftUpLeg"], INDEX["RightToeBase"] + 1)),
    "body": tuple(INDEX[n] for n in ("Hips", "Spine", "Spine1", "Neck", "Head")),
}
# Body sides, for drawing left and right in distinct colours.
LEFT: tuple[int, ...] = tuple(i for i, n in enumerate(JOINTS) if n.startswith("Left"))
RIGHT: tuple[int, ...] = tuple(i for i, n in enumerate(JOINTS) if n.startswith("Right"))


class SkeletonError(UserError, ValueError):
    """A pose array that cannot be a 21-joint skeleton."""


def as_joints(poses: np.ndarray) -> np.ndarray:
    """View (..., 63) or (..., 21, 3) poses as (..., 21, 3)."""
    poses = np.asarray(poses)
    if poses.shape[-2:] == (N_JOINTS, 3):
        return poses
    if poses.shape[-1:] == (3 * N_JOINTS,):
        return poses.reshape(*poses.shape[:-1], N_JOINTS, 3)
    raise SkeletonError(
        f"pose array of shape {poses.shape} is not 21 joints x 3 coordinates; "
        "expected (..., 21, 3) or (..., 63)"
    )


def normalise(poses: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Per-frame normalisation of REFERENCE.md: Hips at the origin, |Spine - Hips| = 1,
    then y shifted so the lowest joint lies on y = 0. Keeps the input's shape. ``scale``
    divides by a fixed |Spine - Hips| instead of each frame's (``hip_spine_length``)."""
    poses = np.asarray(poses)
    joints = as_joints(poses).astype(np.result_type(poses.dtype, np.float32), copy=True)
    if not np.all(np.isfinite(joints)):
        raise SkeletonError("pose data contains NaN or inf joints; fill or drop those frames first")
    joints -= joints[..., INDEX["Hips"] : INDEX["Hips"] + 1, :]
    if scale is None:
        scale = np.linalg.norm(joints[..., INDEX["Spine"], :], axis=-1)
    else:
        scale = np.full(joints.shape[:-2], scale, joints.dtype)
    if np.any(~np.isfinite(scale)) or np.any(scale <= 1e-9):
        raise SkeletonError(
            "a frame has Spine on top of Hips, so it cannot be normalised; check the joint "
            "order and units of the pose data"
        )
    joints /= scale[..., None, None]
    joints[..., 1] -= joints[..., 1].min(axis=-1, keepdims=True)
    return joints.reshape(poses.shape)


def hip_spine_length(poses: np.ndarray) -> float:
    """The median |Spine - Hips| over the finite frames of (F, 21, 3) poses: the person's,
    for labels whose every frame carries a few cm of noise on a ~10 cm bone (a camera
    teacher's), where dividing by each frame's own length would scale every joint's error
    with its distance from the hips."""
    joints = as_joints(poses)
    length = np.linalg.norm(joints[..., INDEX["Spine"], :] - joints[..., INDEX["Hips"], :], axis=-1)
    length = length[np.isfinite(length)]
    if not length.size or not np.median(length) > 1e-9:
        raise SkeletonError("no frame has Spine apart from Hips, so the poses cannot be "
                            "normalised; check the joint order and units of the pose data")
    return float(np.median(length))


def bone_lengths(poses: np.ndarray) -> np.ndarray:
    """Length of each bone in ``BONES`` order, shape (..., 20)."""
    joints = as_joints(poses)
    parents = np.array([p for p, _ in BONES])
    children = np.array([c for _, c in BONES])
    return np.linalg.norm(joints[..., children, :] - joints[..., parents, :], axis=-1)
