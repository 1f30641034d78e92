"""The virtual rig's ground truth as a teacher (``sensing.teacher.virtual``): the frames a
camera of the chosen rate would see, stamped late by its latency, with the chosen noise."""

from __future__ import annotations

import numpy as np
import pytest
from bgm2pose.sensing.backend_virtual import VirtualScene
from bgm2pose.sensing.teacher import TeacherError, TeacherPoses
from bgm2pose.sensing.teacher.virtual import VirtualTeacher

FRAME = 400  # samples per 120 fps pose frame at 48 kHz


@pytest.fixture(scope="module")
def tape():
    return VirtualScene(motion_seed=5).motion().next(600)


def truth_of(tape):
    """``AudioBackend.ground_truth`` of a pose tape: frames f with f * 400 in [start, start + n)."""
    def truth(start: int, n: int) -> np.ndarray:
        return tape[-(-start // FRAME): -(-(start + n) // FRAME)]
    return truth


def test_a_teacher_without_flaws_sees_every_fourth_frame_at_30_fps(tape):
    got = VirtualTeacher(truth_of(tape), noise_cm=0, fps=30).poses(0, 48_000)
    np.testing.assert_array_equal(got.sample, np.arange(30) * 1600)
    np.testing.assert_array_equal(got.joints, tape[:120:4])
    assert np.all(got.confidence == 1)


def test_latency_stamps_each_pose_late_by_what_the_setting_leaves_uncorrected(tape):
    got = VirtualTeacher(truth_of(tape), noise_cm=0, latency_s=0.1, fps=30).poses(0, 48_000)
    # The pose true at frame 4k arrives 0.1 s (4800 samples) later.
    k = np.arange(27)
    np.testing.assert_array_equal(got.sample, k * 1600 + 4800)
    np.testing.assert_array_equal(got.joints, tape[4 * k])
    right = VirtualTeacher(truth_of(tape), noise_cm=0, latency_s=0.1, correction_s=0.1, fps=30)
    np.testing.assert_array_equal(right.poses(0, 48_000).sample, np.arange(30) * 1600)
    too_much = VirtualTeacher(truth_of(tape), noise_cm=0, latency_s=0.1, correction_s=0.15)
    np.testing.assert_allclose(too_much.poses(-2400, 16_000).sample, np.arange(12) * 1600 - 2400)


def test_noise_has_the_chosen_size_and_asking_twice_gives_the_same_poses(tape):
    teacher = VirtualTeacher(truth_of(tape), noise_cm=3, latency_s=0.05, fps=60, seed=2)
    whole = teacher.poses(0, 2 * 48_000)
    pieces = [teacher.poses(0, 30_001), teacher.poses(30_001, 2 * 48_000)]
    np.testing.assert_array_equal(whole.sample, np.concatenate([p.sample for p in pieces]))
    np.testing.assert_array_equal(whole.joints, np.concatenate([p.joints for p in pieces]))
    frames = np.round((whole.sample - 2400) / FRAME).astype(int)
    rms = np.sqrt(np.mean(np.sum((whole.joints - tape[frames]) ** 2, axis=-1)))
    assert rms == pytest.approx(0.03, rel=0.1)
    other = VirtualTeacher(truth_of(tape), noise_cm=3, latency_s=0.05, fps=60, seed=3)
    assert not np.allclose(other.poses(0, 48_000).joints, whole.joints[: 60 - 3])


def test_an_empty_room_teaches_nothing():
    assert len(VirtualTeacher(lambda start, n: None).poses(0, 48_000)) == 0


@pytest.mark.parametrize("setting, message", [
    ({"fps": 25}, "does not divide the rig's 120 fps"),
    ({"noise_cm": -1}, "outside 0..50 cm"),
    ({"latency_s": 5}, "latency 5 s is outside 0..2 s"),
    ({"correction_s": -0.1}, "latency setting -0.1 s is outside 0..2 s"),
    ({"sample_rate": 44_100}, "not a whole number of samples"),
])
def test_a_setting_no_camera_has_is_one_sentence(setting, message):
    with pytest.raises(TeacherError, match=message):
        VirtualTeacher(lambda start, n: None, **setting)


def test_teacher_poses_refuse_what_is_not_timestamped_poses():
    joints, conf = np.zeros((2, 21, 3)), np.ones((2, 21))
    with pytest.raises(ValueError, match="in capture order"):
        TeacherPoses(np.array([10.0, 5.0]), joints, conf)
    with pytest.raises(ValueError, match=r"\(F,\), \(F, 21, 3\) and \(F, 21\)"):
        TeacherPoses(np.array([1.0, 2.0]), np.zeros((2, 17, 3)), conf)
    with pytest.raises(ValueError, match="lie in \\[0, 1\\]"):
        TeacherPoses(np.array([1.0, 2.0]), joints, 2 * conf)
    unseen = joints.copy()
    unseen[0, 3] = np.nan
    conf[0, 3] = 0  # a joint nobody saw may be NaN
    assert len(TeacherPoses(np.array([1.0, 2.0]), unseen, conf)) == 2
