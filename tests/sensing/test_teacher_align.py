"""Teacher poses onto the session's 120 fps frames (``sensing.teacher.align``): interpolated
between the teacher's own frames, masked where the teacher was unsure or silent."""

from __future__ import annotations

import numpy as np
import pytest
from bgm2pose.sensing.teacher import TeacherError, TeacherPoses
from bgm2pose.sensing.teacher.align import resample

FRAME = 400  # samples per 120 fps frame at 48 kHz


def moving_poses(stamps: np.ndarray) -> TeacherPoses:
    """Every joint at (t, 2t, -t) metres at sample t / 48000: linear in time, so a linear
    interpolation between any two teacher frames is exact."""
    t = stamps / 48_000
    joints = np.repeat((t[:, None] * [1.0, 2.0, -1.0])[:, None], 21, axis=1)
    return TeacherPoses(stamps, joints, np.full((len(stamps), 21), 0.9))


def test_a_30_fps_teacher_with_jitter_becomes_exact_120_fps_frames():
    rng = np.random.default_rng(0)
    stamps = np.arange(60) * 1600.0 + rng.uniform(-200, 200, 60)  # 30 fps, +-4 ms jitter
    joints, conf = resample(moving_poses(stamps), first_frame=4, n_frames=200, frame_samples=FRAME,
                            sample_rate=48_000)
    t = (4 + np.arange(200)) * FRAME / 48_000
    np.testing.assert_allclose(joints[:, 7], t[:, None] * [1.0, 2.0, -1.0], atol=1e-6)
    assert np.all(conf == pytest.approx(0.9))


def test_an_unsure_joint_masks_its_frames_and_they_stay_masked_outside_the_teachers_span():
    poses = moving_poses(np.arange(20) * 1600.0)
    poses.confidence[8, 15] = 0.3  # one foot unsure in teacher frame 8 (120 fps frame 32)
    joints, conf = resample(poses, first_frame=-4, n_frames=90, frame_samples=FRAME,
                            sample_rate=48_000, min_confidence=0.5)
    frame = np.arange(-4, 86)
    masked = ~np.isfinite(joints).all(axis=(1, 2))
    # Before the first teacher pose, after the last, and the frames interpolated from frame 8.
    expected = (frame < 0) | (frame > 19 * 4) | ((frame > 28) & (frame < 36))
    np.testing.assert_array_equal(masked, expected)
    assert np.all(conf[masked] == 0) and np.all(conf[~masked] > 0)


def test_a_stalled_camera_is_not_interpolated_across():
    stamps = np.concatenate([np.arange(10) * 1600.0, 30_000 + np.arange(10) * 1600.0])
    joints, _ = resample(moving_poses(stamps), first_frame=0, n_frames=120, frame_samples=FRAME,
                         sample_rate=48_000, max_gap_s=0.2)
    t = np.arange(120) * FRAME
    gap = (t > 14_400) & (t < 30_000)
    # Within 0.2 s of a pose on both sides only: the middle of the 0.32 s stall is masked.
    masked = ~np.isfinite(joints).all(axis=(1, 2))
    assert np.all(masked[gap & (t - 14_400 > 9600)]) and np.all(masked[gap & (30_000 - t > 9600)])
    assert not masked[~gap & (t <= 30_000 + 9 * 1600)].any()


def test_a_confidence_threshold_outside_0_1_is_one_sentence():
    with pytest.raises(TeacherError, match="outside 0..1"):
        resample(moving_poses(np.arange(3.0)), 0, 1, FRAME, 48_000, min_confidence=50)
