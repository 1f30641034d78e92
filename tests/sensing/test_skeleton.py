import numpy as np
import pytest

from bgm2pose.sensing.skeleton import (
    BONES, INDEX, JOINTS, LEFT, N_JOINTS, PARENTS, PARTS, RIGHT, SkeletonError, as_joints,
    bone_lengths, normalise,
)


def test_parents_form_a_tree_rooted_at_hips():
    assert N_JOINTS == 21 and len(PARENTS) == 21
    assert [j for j, p in enumerate(PARENTS) if p < 0] == [INDEX["Hips"]]
    for j in range(N_JOINTS):
        seen = {j}
        while PARENTS[j] >= 0:
            j = PARENTS[j]
            assert j not in seen, "cycle in PARENTS"
            seen.add(j)
        assert j == INDEX["Hips"]


def test_bones():
    assert len(BONES) == 20
    assert len({c for _, c in BONES}) == 20
    assert all(PARENTS[c] == p for p, c in BONES)
    named = {(JOINTS[p], JOINTS[c]) for p, c in BONES}
    for pair in [("Hips", "Spine"), ("Neck", "Head"), ("Spine1", "LeftShoulder"),
                 ("LeftForeArm", "LeftHand"), ("Hips", "RightUpLeg"),
                 ("RightFoot", "RightToeBase")]:
        assert pair in named


def test_parts_cover_the_right_joints():
    name = {part: {JOINTS[j] for j in joints} for part, joints in PARTS.items()}
    assert name["body"] == {"Hips", "Spine", "Spine1", "Neck", "Head"}
    assert name["arm"] == {f"{side}{j}" for side in ("Left", "Right")
                           for j in ("Shoulder", "Arm", "ForeArm", "Hand")}
    assert name["leg"] == {f"{side}{j}" for side in ("Left", "Right")
                           for j in ("UpLeg", "Leg", "Foot", "ToeBase")}
    assert name["all"] == set(JOINTS) == name["body"] | name["arm"] | name["leg"]
    assert len(PARTS["arm"]) + len(PARTS["leg"]) + len(PARTS["body"]) == N_JOINTS


def test_left_right_mirror():
    assert len(LEFT) == len(RIGHT) == 8
    assert [JOINTS[j].replace("Left", "") for j in LEFT] == \
           [JOINTS[j].replace("Right", "") for j in RIGHT]


def _random_poses(rng, shape):
    return rng.normal(0, 0.4, size=(*shape, N_JOINTS, 3)) + rng.normal(0, 3, size=(*shape, 1, 3))


@pytest.mark.parametrize("flat", [False, True])
def test_normalise_random_poses(flat):
    rng = np.random.default_rng(0)
    poses = _random_poses(rng, (4, 12))
    given = poses.reshape(4, 12, 63) if flat else poses
    out = normalise(given)
    assert out.shape == given.shape
    j = as_joints(out)
    hips, spine = j[..., INDEX["Hips"], :], j[..., INDEX["Spine"], :]
    # Hips at the origin in the floor plane; the y shift puts the lowest joint on y = 0.
    np.testing.assert_allclose(hips[..., [0, 2]], 0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(spine - hips, axis=-1), 1, rtol=1e-5)
    np.testing.assert_allclose(j[..., 1].min(axis=-1), 0, atol=1e-5)
    assert (j[..., 1] >= -1e-6).all()
    # The hip-spine bone is 1 in bone_lengths too.
    np.testing.assert_allclose(bone_lengths(out)[..., BONES.index((0, 1))], 1, rtol=1e-5)


def test_normalise_undoes_translation_and_scale_per_frame():
    rng = np.random.default_rng(1)
    poses = _random_poses(rng, (5,))
    scale = rng.uniform(0.5, 20, size=(5, 1, 1))
    shift = rng.normal(0, 10, size=(5, 1, 3))
    np.testing.assert_allclose(normalise(poses * scale + shift), normalise(poses), atol=1e-9)
    # Float32 input stays float32, float64 stays float64.
    assert normalise(poses.astype(np.float32)).dtype == np.float32
    assert normalise(poses).dtype == np.float64


def test_degenerate_frames_raise():
    rng = np.random.default_rng(2)
    poses = _random_poses(rng, (3,))
    poses[1, INDEX["Spine"]] = poses[1, INDEX["Hips"]]
    with pytest.raises(SkeletonError, match="Spine on top of Hips"):
        normalise(poses)
    poses = _random_poses(rng, (3,))
    poses[2, INDEX["Spine"], 0] = np.nan
    with pytest.raises(SkeletonError):
        normalise(poses.reshape(3, 63))


@pytest.mark.parametrize("shape", [(12, 62), (12, 20, 3), (63, 2)])
def test_wrong_shapes_raise(shape):
    with pytest.raises(SkeletonError, match="21 joints"):
        as_joints(np.zeros(shape))
