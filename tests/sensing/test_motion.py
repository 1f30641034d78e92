"""Procedural motion: rigid skeletons, joint limits, floor and area constraints, determinism,
streaming == offline, and enough variety to learn from."""

import numpy as np
import pytest

from bgm2pose.sensing import skeleton
from bgm2pose.sensing.sim.motion import FPS, MotionError, MotionGenerator, generate_motion
from bgm2pose.sensing.sim.rig import Rig
from bgm2pose.sensing.sim.subjects import SUBJECTS, Subject, SubjectError, random_subject

J = skeleton.INDEX
FEET = [J[n] for n in ("LeftFoot", "LeftToeBase", "RightFoot", "RightToeBase")]
HANDS = [J["LeftHand"], J["RightHand"]]


@pytest.fixture(scope="module")
def long_motion():
    """Five minutes of one subject: the 'long random sequence'."""
    return generate_motion(SUBJECTS[0], 300, seed=11).astype(np.float64)


@pytest.fixture(scope="module")
def minute():
    return generate_motion(SUBJECTS[3], 60, seed=5).astype(np.float64)


def _angle(p, a, b, c):
    """Flexion at joint b (deg): 0 when a-b-c is straight."""
    u, v = p[:, b] - p[:, a], p[:, c] - p[:, b]
    cos = np.sum(u * v, -1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def test_rest_pose_anthropometry():
    for s in SUBJECTS:
        p = s.rest_pose()
        assert 0.51 < p[J["Hips"], 1] / s.height < 0.55
        assert 0.075 < np.linalg.norm(p[J["Spine"]] - p[J["Hips"]]) < 0.11
        width = p[J["LeftArm"], 0] - p[J["RightArm"], 0]  # left is +x
        assert 0.2 < width / s.height < 0.25
        assert 0.0 <= p[FEET, 1].min() < 0.02
        assert p[J["Head"], 1] < s.height < p[J["Head"], 1] + 0.15


def test_subjects_differ():
    assert [s.name for s in SUBJECTS] == [f"S{i}" for i in range(1, 9)]
    heights = np.array([s.height for s in SUBJECTS])
    assert heights.min() <= 1.6 and heights.max() >= 1.88
    head = np.array([s.rest_pose()[J["Head"], 1] for s in SUBJECTS])
    np.testing.assert_array_equal(np.argsort(head), np.argsort(heights))
    # Proportions differ too, not only scale: leg length as a fraction of height.
    legs = [np.linalg.norm(s.offsets()[J["LeftLeg"]]) / s.height for s in SUBJECTS]
    assert np.ptp(legs) > 0.01
    assert {s.build for s in SUBJECTS} >= {0.87, 1.2}
    rng = np.random.default_rng(0)
    randoms = [random_subject(rng) for _ in range(20)]
    assert len({r.name for r in randoms}) == 20
    assert all(1.55 <= r.height <= 1.92 and 0.85 <= r.build <= 1.2 for r in randoms)


def test_bone_lengths_constant_for_every_subject():
    for i, s in enumerate(SUBJECTS):
        p = generate_motion(s, 15, seed=i)
        lengths = skeleton.bone_lengths(p.astype(np.float64))
        rest = skeleton.bone_lengths(s.rest_pose())
        assert np.abs(lengths - rest).max() < 1e-5, s.name


def test_elbows_and_knees_within_limits(long_motion):
    p = long_motion
    for side in ("Left", "Right"):
        elbow = _angle(p, J[side + "Arm"], J[side + "ForeArm"], J[side + "Hand"])
        knee = _angle(p, J[side + "UpLeg"], J[side + "Leg"], J[side + "Foot"])
        assert elbow.max() <= 150.01 and knee.max() <= 150.01
        assert elbow.max() > 60 and knee.max() > 60  # the limits are actually exercised
        # Knees bend forward only: the shank swings back about the pelvis' left axis.
        thigh = p[:, J[side + "Leg"]] - p[:, J[side + "UpLeg"]]
        shank = p[:, J[side + "Foot"]] - p[:, J[side + "Leg"]]
        left = p[:, J["LeftUpLeg"]] - p[:, J["RightUpLeg"]]
        assert (np.sum(np.cross(thigh, shank) * left, -1) > 0).all()


def test_root_inside_area_facing_mic_and_feet_on_floor(long_motion):
    rig = Rig()
    p = long_motion
    centre = np.array(rig.area_center)[[0, 2]]
    dist = np.linalg.norm(p[:, J["Hips"], [0, 2]] - centre, axis=-1)
    assert dist.max() <= rig.area_radius
    assert dist.max() - dist.min() > 0.5 * rig.area_radius  # and it does move around
    feet = p[:, FEET, 1]
    assert feet.min() >= 0.0
    assert feet.min(axis=1).max() <= 0.02  # one foot always stands on the floor
    assert feet.max() > 0.1  # and feet lift when stepping
    left = p[:, J["LeftUpLeg"]] - p[:, J["RightUpLeg"]]
    front = np.cross(left, [0.0, 1.0, 0.0])
    to_mic = np.array(rig.mic) - p[:, J["Hips"]]
    off = np.degrees(np.arctan2(front[:, 0], front[:, 2]) - np.arctan2(to_mic[:, 0], to_mic[:, 2]))
    off = (off + 180) % 360 - 180
    assert np.abs(off).max() < 50 and off.std() > 8


def test_other_rig_geometry():
    rig = Rig(room_size=(5.0, 3.0, 8.0), speaker_left=(1.0, 1.0, 1.0),
              speaker_right=(2.0, 1.0, 1.0), mic=(1.5, 1.5, 6.5),
              area_center=(1.5, 0.0, 3.5), area_radius=0.3)
    p = generate_motion(SUBJECTS[5], 60, seed=2, rig=rig).astype(np.float64)
    dist = np.linalg.norm(p[:, J["Hips"], [0, 2]] - [1.5, 3.5], axis=-1)
    assert dist.max() <= 0.3
    assert p[:, FEET, 1].min() >= 0.0
    # This mic is at +z from the area: the person faces +z (front = left x up).
    left = p[:, J["LeftUpLeg"]] - p[:, J["RightUpLeg"]]
    front = np.cross(left, [0.0, 1.0, 0.0])
    assert (front[:, 2] > np.abs(front[:, 0]) * np.tan(np.radians(40))).all()


def test_same_seed_same_motion_different_seed_different():
    a = generate_motion(SUBJECTS[1], 10, seed=3)
    b = generate_motion(SUBJECTS[1], 10, seed=3)
    c = generate_motion(SUBJECTS[1], 10, seed=4)
    assert a.shape == (10 * FPS, 21, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.1


def test_streaming_chunks_equal_offline():
    subject, seed = SUBJECTS[2], 9
    offline = generate_motion(subject, 45, seed)
    rng = np.random.default_rng(1)
    for sizes in ((0, 1, 7, 100, 511), (4096, 4097, 333)):
        gen, parts, done = MotionGenerator(subject, seed), [], 0
        while done < len(offline):
            k = min(int(rng.choice(sizes)), len(offline) - done)
            parts.append(gen.next(k))
            done += k
        assert gen.frame == len(offline)
        np.testing.assert_allclose(np.concatenate(parts), offline, rtol=0, atol=1e-6)


def test_a_minute_is_diverse(minute):
    p = minute
    assert np.isfinite(p).all()
    head = p[:, J["Head"], 1]
    assert (p[:, HANDS, 1].max(axis=1) > head).any()  # a hand rises above the head
    hips = p[:, J["Hips"], 1]
    assert np.percentile(hips, 90) - hips.min() > 0.10  # squats
    speed = np.linalg.norm(np.diff(p[:, HANDS], axis=0), axis=-1) * FPS
    assert 0.5 < speed.max() < 6.0
    # The trunk bends and twists: Neck leaves the vertical above Hips by > 25 deg at times.
    spine = p[:, J["Neck"]] - p[:, J["Hips"]]
    tilt = np.degrees(np.arccos(spine[:, 1] / np.linalg.norm(spine, axis=-1)))
    assert tilt.max() > 25


def test_normalised_poses_vary(minute):
    normed = skeleton.normalise(minute)
    std = np.linalg.norm(normed.std(axis=0), axis=-1)  # per joint, hip-spine units
    assert std[HANDS].min() > 2.0  # hands roam by more than ~20 cm
    assert std[[J["LeftLeg"], J["RightLeg"]]].min() > 0.5
    assert std[J["Head"]] > 1.0


def test_bad_arguments():
    with pytest.raises(MotionError, match="seconds"):
        generate_motion(SUBJECTS[0], -1, seed=0)
    with pytest.raises(MotionError, match="seed"):
        MotionGenerator(SUBJECTS[0], seed=-3)
    with pytest.raises(MotionError, match="Subject"):
        MotionGenerator("S1", seed=0)
    with pytest.raises(MotionError, match="n_frames"):
        MotionGenerator(SUBJECTS[0], seed=0).next(-1)
    with pytest.raises(MotionError, match="radius"):
        MotionGenerator(SUBJECTS[0], seed=0, rig=Rig(area_radius=0.05))
    with pytest.raises(MotionError, match="microphone"):
        MotionGenerator(SUBJECTS[0], seed=0, rig=Rig(mic=(3.5, 1.2, 3.2)))
    with pytest.raises(SubjectError, match="height"):
        Subject("tall", height=2.6)
    assert generate_motion(SUBJECTS[0], 0, seed=0).shape == (0, 21, 3)
