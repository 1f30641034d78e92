"""MediaPipe Pose's 33 landmarks -> the project's 21 joints: the one place the mapping lives.

MediaPipe world landmarks (``pose_world_landmarks``) are metres with the origin between the
hips, x to the image's right, y down the image and z away from the camera, and each landmark
names the person's own side (landmark 11, left shoulder, is on the image's right when the
person faces the camera; checked on scikit-image's astronaut photograph). Turning them by
180 deg about x, (x, y, z) -> (x, -y, -z), keeps the sides and gives the project's frame:
y up, and a person facing the camera faces +z with their left at +x, as the virtual
subjects' body frame (``sim.subjects``). A camera whose frames are mirrored (a selfie
preview) swaps the sides and must be un-mirrored first.

| joint                    | from landmarks                                                  |
|--------------------------|-----------------------------------------------------------------|
| Hips, Spine, Spine1, Neck | on the midline from the hip midpoint (23, 24) to the shoulder  |
|                          | midpoint (11, 12), at the fractions of ``TRUNK``                |
| Head                     | ear midpoint (7, 8): the centre of the head                     |
| Left/RightShoulder       | clavicle joint: at ``CLAVICLE``'s fraction up the midline, and  |
|                          | its lateral fraction of the way out to shoulder 11 / 12         |
| Left/RightArm            | shoulder 11 / 12                                                |
| Left/RightForeArm        | elbow 13 / 14                                                   |
| Left/RightHand           | wrist 15 / 16                                                   |
| Left/RightUpLeg          | hip 23 / 24                                                     |
| Left/RightLeg            | knee 25 / 26                                                    |
| Left/RightFoot           | ankle 27 / 28                                                   |
| Left/RightToeBase        | foot index 31 / 32 (the toes)                                   |

The fractions are read off the average virtual subject's rest pose, whose proportions are the
anthropometric table the data sets are simulated with (hip-spine 9.2 cm at 1.75 m, AMPL's
mean), so a taught pose normalises (hips origin, hip-spine = 1) to the same scale as the
training data. A joint's confidence is its landmark's visibility, or the least visibility of
the landmarks it is built from.

Every joint is a fixed weighted mean of landmarks, so the same mapping places the joints on
the camera image (``image_joints``), for a preview of what the teacher teaches.
"""

from __future__ import annotations

import numpy as np

from bgm2pose.sensing.sim.subjects import Subject
from bgm2pose.sensing.skeleton import INDEX, N_JOINTS

N_LANDMARKS = 33
# MediaPipe Pose landmark indices used here.
_L_EAR, _R_EAR = 7, 8
_L_SHOULDER, _R_SHOULDER = 11, 12
_L_HIP, _R_HIP = 23, 24
# Joints that are one landmark each.
DIRECT: dict[str, int] = {
    "LeftArm": 11, "LeftForeArm": 13, "LeftHand": 15,
    "RightArm": 12, "RightForeArm": 14, "RightHand": 16,
    "LeftUpLeg": 23, "LeftLeg": 25, "LeftFoot": 27, "LeftToeBase": 31,
    "RightUpLeg": 24, "RightLeg": 26, "RightFoot": 28, "RightToeBase": 32,
}
# MediaPipe's frame -> the project's: 180 deg about x (a rotation, so sides are kept).
_TO_PROJECT = np.array([1.0, -1.0, -1.0])


def _rest_fractions() -> tuple[dict[str, float], tuple[float, float]]:
    rest = Subject("average", 1.75).rest_pose()
    hip = (rest[INDEX["LeftUpLeg"]] + rest[INDEX["RightUpLeg"]]) / 2
    shoulder = (rest[INDEX["LeftArm"]] + rest[INDEX["RightArm"]]) / 2
    axis = shoulder - hip

    def up(name: str) -> float:
        return float(np.dot(rest[INDEX[name]] - hip, axis) / np.dot(axis, axis))

    out = (rest[INDEX["LeftShoulder"], 0] - shoulder[0]) / (rest[INDEX["LeftArm"], 0] - shoulder[0])
    return ({name: up(name) for name in ("Hips", "Spine", "Spine1", "Neck")},
            (up("LeftShoulder"), float(out)))


# TRUNK[joint]: fraction of the way from the hip midpoint to the shoulder midpoint (about
# 0.08, 0.25, 0.64, 1.11); CLAVICLE: (fraction up, fraction out towards the shoulder).
TRUNK, CLAVICLE = _rest_fractions()


def joints_from_landmarks(world: np.ndarray, visibility: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 33, 3) MediaPipe world landmarks and (..., 33) visibilities -> (..., 21, 3) joints
    in the project's frame (metres, y up, hips-centred as MediaPipe's) and (..., 21)
    confidences in [0, 1]."""
    world = np.asarray(world, np.float64)
    visibility = np.asarray(visibility, np.float64)
    if world.shape[-2:] != (N_LANDMARKS, 3) or visibility.shape != world.shape[:-1]:
        raise ValueError(f"landmarks of shape {world.shape} and visibilities of shape "
                         f"{visibility.shape} are not MediaPipe Pose's 33 landmarks")
    lm = world * _TO_PROJECT
    vis = np.clip(visibility, 0.0, 1.0)
    joints = np.zeros((*lm.shape[:-2], N_JOINTS, 3))
    conf = np.zeros((*lm.shape[:-2], N_JOINTS))
    for name, k in DIRECT.items():
        joints[..., INDEX[name], :] = lm[..., k, :]
        conf[..., INDEX[name]] = vis[..., k]

    hip = (lm[..., _L_HIP, :] + lm[..., _R_HIP, :]) / 2
    shoulder = (lm[..., _L_SHOULDER, :] + lm[..., _R_SHOULDER, :]) / 2
    trunk_conf = vis[..., [_L_HIP, _R_HIP, _L_SHOULDER, _R_SHOULDER]].min(axis=-1)
    for name, a in TRUNK.items():
        joints[..., INDEX[name], :] = hip + a * (shoulder - hip)
        conf[..., INDEX[name]] = trunk_conf
    up, out = CLAVICLE
    base = hip + up * (shoulder - hip)
    for side, k in (("Left", _L_SHOULDER), ("Right", _R_SHOULDER)):
        joints[..., INDEX[side + "Shoulder"], :] = base + out * (lm[..., k, :] - shoulder)
        conf[..., INDEX[side + "Shoulder"]] = trunk_conf
    joints[..., INDEX["Head"], :] = (lm[..., _L_EAR, :] + lm[..., _R_EAR, :]) / 2
    conf[..., INDEX["Head"]] = np.minimum(vis[..., _L_EAR], vis[..., _R_EAR])
    return joints.astype(np.float32), conf.astype(np.float32)


def image_joints(image: np.ndarray, visibility: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(33, 2) landmark image positions (fractions of width and height, y down) and (33,)
    visibilities -> (21, 2) joint image positions (the same) and (21,) confidences."""
    image = np.asarray(image, np.float64)
    flat = np.concatenate([image, np.zeros((*image.shape[:-1], 1))], axis=-1)
    joints, conf = joints_from_landmarks(flat, visibility)
    return joints[..., :2] * _TO_PROJECT[:2], conf
