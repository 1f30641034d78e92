"""MediaPipe's 33 landmarks -> the 21 joints (``sensing.teacher.mapping``): on synthetic
landmarks made from the virtual subjects' moving skeletons, as MediaPipe would report them
(metres, origin between the hips, y down, z away from the camera), and with the real MediaPipe
Pose model on a real photograph of a person (scikit-image's astronaut, Eileen Collins facing
the camera), which checks that convention."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from bgm2pose.sensing.sim.motion import MotionGenerator
from bgm2pose.sensing.sim.rig import Rig
from bgm2pose.sensing.sim.subjects import SUBJECTS
from bgm2pose.sensing.skeleton import BONES, INDEX, JOINTS, normalise
from bgm2pose.sensing.teacher.camera import PoseDetector
from bgm2pose.sensing.teacher.mapping import DIRECT, joints_from_landmarks

# Where a person looking at the photograph puts them, pixels (x right, y down) of the 512 x 512
# image; the person's left is on the image's right.
ANNOTATED = {
    "nose": (0, (222, 122)),
    "left shoulder": (11, (330, 265)), "right shoulder": (12, (95, 255)),
    "left elbow": (13, (335, 395)), "right elbow": (14, (55, 415)),
}
# A landmark is on the person's joint within a fifth of the shoulder width (~235 px).
TOLERANCE_PX = 47


@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()


def test_mediapipe_puts_head_shoulders_and_elbows_on_the_astronaut(astronaut):
    detector = PoseDetector(still=True)
    try:
        world, image, visibility = detector.landmarks(astronaut)
        joints, confidence = detector.detect(astronaut)
    finally:
        detector.close()
    h, w, _ = astronaut.shape
    for name, (k, (x, y)) in ANNOTATED.items():
        got = image[k] * (w, h)
        assert np.hypot(*(got - (x, y))) < TOLERANCE_PX, (name, got)
    ears = (image[7] + image[8]) / 2 * (w, h)  # the Head joint, between the ears
    assert np.hypot(*(ears - (225, 115))) < TOLERANCE_PX, ears

    j = {name: joints[INDEX[name]] for name in INDEX}
    for name in ("Head", "LeftArm", "RightArm"):
        assert confidence[INDEX[name]] > 0.9, name
    # y up: head above neck above hips; sides are the person's: the left shoulder on their left,
    # so left x up points where the face does.
    assert j["Head"][1] > j["Neck"][1] > j["Hips"][1]
    assert j["LeftArm"][0] > j["RightArm"][0]  # facing the camera: their left at +x
    nose = world[0] * np.array([1.0, -1.0, -1.0])
    facing = np.cross(j["LeftArm"] - j["RightArm"], j["Neck"] - j["Hips"])
    assert np.dot(facing, nose - j["Head"]) > 0
    assert facing[2] > 0  # towards the camera
    # Metres: an adult's shoulders are 0.25-0.45 m apart, the upper arm 0.2-0.4 m long.
    assert 0.25 < np.linalg.norm(j["LeftArm"] - j["RightArm"]) < 0.45
    for side in ("Left", "Right"):
        assert 0.2 < np.linalg.norm(j[side + "ForeArm"] - j[side + "Arm"]) < 0.4, side

TRUNK_JOINTS = ("Hips", "Spine", "Spine1", "Neck", "LeftShoulder", "RightShoulder")


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def landmarks_of(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F, 33, 3) MediaPipe world landmarks and (F, 33) visibilities of (F, 21, 3) poses in
    the project's frame: joints where MediaPipe has them, the face and hand points around the
    head and the wrists."""
    j = {name: poses[:, INDEX[name]] for name in JOINTS}
    left = _unit(j["LeftUpLeg"] - j["RightUpLeg"])
    up = _unit(j["Neck"] - j["Hips"])
    front = _unit(np.cross(left, up))  # body frame: x left, y up, z front
    lm = np.zeros((len(poses), 33, 3))
    for name, k in DIRECT.items():
        lm[:, k] = j[name]
    head = j["Head"]
    lm[:, 0] = head + 0.09 * front  # nose
    for k, (side, height) in enumerate([(0.02, 0.03), (0.035, 0.03), (0.05, 0.03)]):
        lm[:, 1 + k] = head + side * left + height * up + 0.08 * front  # left eye
        lm[:, 4 + k] = head - side * left + height * up + 0.08 * front  # right eye
    lm[:, 7] = head + 0.075 * left  # ears
    lm[:, 8] = head - 0.075 * left
    lm[:, 9] = head + 0.025 * left - 0.04 * up + 0.08 * front  # mouth
    lm[:, 10] = head - 0.025 * left - 0.04 * up + 0.08 * front
    for side, hand, fore in (("Left", (17, 19, 21), "LeftForeArm"),
                             ("Right", (18, 20, 22), "RightForeArm")):
        reach = _unit(j[side + "Hand"] - j[fore])
        for k in hand:
            lm[:, k] = j[side + "Hand"] + 0.07 * reach
    for side, heel in (("Left", 29), ("Right", 30)):
        lm[:, heel] = j[side + "Foot"] - 0.4 * (j[side + "ToeBase"] - j[side + "Foot"])
    origin = (lm[:, 23] + lm[:, 24]) / 2
    mediapipe = (lm - origin[:, None]) * np.array([1.0, -1.0, -1.0])
    return mediapipe, np.full(mediapipe.shape[:2], 0.9)


@pytest.fixture(scope="module")
def moving():
    """Each virtual subject moving for 2 s (every 10th frame at 120 fps), world frame."""
    return {s.name: MotionGenerator(s, 3, Rig()).next(240)[::10] for s in SUBJECTS}


def hip_centred(poses: np.ndarray) -> np.ndarray:
    return poses - (poses[:, [INDEX["LeftUpLeg"]]] + poses[:, [INDEX["RightUpLeg"]]]) / 2


def test_every_joint_lands_where_the_subject_has_it_and_normalises_alike(moving):
    for name, truth in moving.items():
        joints, conf = joints_from_landmarks(*landmarks_of(truth))
        truth = hip_centred(truth)
        error = np.linalg.norm(joints - truth, axis=-1)
        direct = [INDEX[n] for n in DIRECT] + [INDEX["Head"]]
        assert error[:, direct].max() < 1e-5, name
        # Trunk joints lie on a straight midline at the average subject's proportions; the
        # subject's own and a bending spine put them up to ~2 cm elsewhere (measured 1.7-2.2).
        assert error.max() < 0.03, (name, JOINTS[int(error.max(axis=0).argmax())])
        # Normalised poses (hip-spine = 1) as the networks see them: measured 0.06-0.08 (the
        # demo model errs by 0.57).
        assert np.abs(normalise(joints) - normalise(truth)).mean() < 0.1, name
        np.testing.assert_allclose(conf, 0.9, atol=1e-6)


def test_bones_are_as_long_as_the_subjects(moving):
    for name, truth in moving.items():
        joints, _ = joints_from_landmarks(*landmarks_of(truth))
        for parent, child in BONES:
            got = np.linalg.norm(joints[:, child] - joints[:, parent], axis=-1)
            want = np.linalg.norm(truth[:, child] - truth[:, parent], axis=-1)
            np.testing.assert_allclose(got, want, rtol=0.15, atol=0.01,
                                       err_msg=f"{name} {JOINTS[parent]}-{JOINTS[child]}")


def test_y_is_up_and_the_sides_are_the_persons_own():
    """A person standing before the camera (facing it, and with the back to it): the head is
    above the hips and the feet below, and the left joints are on the person's left: the face
    points along left x up, whichever way the person faces the camera."""
    rest = SUBJECTS[0].rest_pose()  # facing +z, left at +x
    back_turned = rest * np.array([-1.0, 1.0, -1.0])  # turned 180 deg about y
    for pose, left_at in ((rest, +1), (back_turned, -1)):
        world, vis = landmarks_of(pose[None])
        joints, _ = joints_from_landmarks(world, vis)
        j = {n: joints[0, INDEX[n]] for n in JOINTS}
        assert j["Head"][1] > j["Neck"][1] > j["Hips"][1] > j["LeftLeg"][1] > j["LeftFoot"][1]
        assert np.sign(j["LeftArm"][0] - j["RightArm"][0]) == left_at
        nose = world[0, 0] * np.array([1.0, -1.0, -1.0])
        facing = np.cross(j["LeftArm"] - j["RightArm"], j["Neck"] - j["Hips"])
        assert np.dot(facing, nose - j["Head"]) > 0


def test_a_joint_is_as_confident_as_its_least_visible_landmark(moving):
    world, vis = landmarks_of(moving["S2"])
    vis[:, 7] = 0.3  # left ear
    vis[:, 23] = 0.1  # left hip
    vis[:, 13] = 0.6  # left elbow
    _, conf = joints_from_landmarks(world, vis)
    assert np.all(conf[:, INDEX["Head"]] == pytest.approx(0.3))
    assert np.all(conf[:, INDEX["LeftForeArm"]] == pytest.approx(0.6))
    for name in TRUNK_JOINTS + ("LeftUpLeg",):
        assert np.all(conf[:, INDEX[name]] == pytest.approx(0.1)), name
    assert np.all(conf[:, INDEX["RightUpLeg"]] == pytest.approx(0.9))


def test_anything_but_33_landmarks_is_refused():
    with pytest.raises(ValueError, match="not MediaPipe Pose's 33 landmarks"):
        joints_from_landmarks(np.zeros((17, 3)), np.zeros(17))
