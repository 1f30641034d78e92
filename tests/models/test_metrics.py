import numpy as np
import pytest

from bgm2pose.models.metrics import (
    MetricsError, evaluate, mae, mae_per_axis, pck_curve, pckh, rmse,
)
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.skeleton import INDEX, PARTS


def _two_frames():
    """A hand-checkable case. Ground truth: integer joint positions (so pred - gt is exact),
    head length |Neck - Head| = 2.5 in frame 0 and 4 in frame 1, so the PCKh thresholds
    k * 0.5 * head are 1.25, 2.5, 3.75, 5 (frame 0) and 2, 4, 6, 8 (frame 1).
    Errors (everything else exact):
      frame 0: Hips (0.75, 1, 0) |1.25|, LeftShoulder (0, 0, -3.75) |3.75|,
               LeftLeg (2.5, 0, 0) |2.5|  -- each exactly on one threshold
      frame 1: Head (0, 5, 0) |5|, RightArm (1, 0, 0) |1|
    """
    rng = np.random.default_rng(0)
    gt = rng.integers(-5, 6, size=(2, 21, 3)).astype(float)
    gt[0, INDEX["Head"]] = gt[0, INDEX["Neck"]] + [0, 2.5, 0]
    gt[1, INDEX["Head"]] = gt[1, INDEX["Neck"]] + [0, 0, 4]
    pred = gt.copy()
    pred[0, INDEX["Hips"]] += [0.75, 1, 0]
    pred[0, INDEX["LeftShoulder"]] += [0, 0, -3.75]
    pred[0, INDEX["LeftLeg"]] += [2.5, 0, 0]
    pred[1, INDEX["Head"]] += [0, 5, 0]
    pred[1, INDEX["RightArm"]] += [1, 0, 0]
    return pred, gt


def test_rmse_and_mae_by_hand():
    pred, gt = _two_frames()
    # Squared errors 1.5625 + 14.0625 + 6.25 + 25 + 1 = 47.875 over 2 x 63 coordinates.
    assert rmse(pred, gt) == pytest.approx(np.sqrt(47.875 / 126))
    # Absolute errors 1.75 + 3.75 + 2.5 + 5 + 1 = 14 over 126 coordinates.
    assert mae(pred, gt) == pytest.approx(14 / 126)


def test_mae_per_axis_by_hand():
    pred, gt = _two_frames()
    # x errors 0.75 + 2.5 + 1, y errors 1 + 5, z errors 3.75, each over 2 x 21 joints.
    np.testing.assert_allclose(mae_per_axis(pred, gt), np.array([4.25, 6, 3.75]) / 42)
    # Arms: LeftShoulder z 3.75 and RightArm x 1 over 2 x 8 joints.
    np.testing.assert_allclose(mae_per_axis(pred, gt, "arm"), np.array([1, 0, 3.75]) / 16)
    assert mae_per_axis(pred, gt).mean() == pytest.approx(mae(pred, gt))


def test_pckh_by_hand_with_strict_thresholds():
    pred, gt = _two_frames()
    # k=1: fails Hips (1.25 = thr), LeftShoulder, LeftLeg in frame 0, Head in frame 1.
    assert pckh(pred, gt) == pytest.approx(38 / 42)
    # k=2: fails LeftShoulder, LeftLeg (2.5 = thr) in frame 0, Head (5 > 4) in frame 1.
    assert pckh(pred, gt, k=2) == pytest.approx(39 / 42)
    # k=3: fails only LeftShoulder (3.75 = thr).
    assert pckh(pred, gt, k=3) == pytest.approx(41 / 42)
    assert pckh(pred, gt, k=4) == 1.0


def test_pckh_threshold_comes_from_ground_truth_head():
    pred, gt = _two_frames()
    # Swapped, frame 1's "ground-truth" head is |(0, 5, 4)| = 6.4, so the Head error 5
    # passes at k=2 (threshold 6.4) where it failed against the true head (threshold 4).
    assert pckh(gt, pred, k=2) == pytest.approx(40 / 42)


def test_pck_curve_keys_and_values():
    pred, gt = _two_frames()
    curve = pck_curve(pred, gt)
    assert list(curve) == ["pckh@0.5", "pckh@1.0", "pckh@1.5", "pckh@2.0"]
    np.testing.assert_allclose(list(curve.values()), [38 / 42, 39 / 42, 41 / 42, 1.0])
    assert pck_curve(pred, gt, ks=(0.5,)) == {"pckh@0.25": pytest.approx(pckh(pred, gt, 0.5))}


def test_evaluate_overall_and_per_part_by_hand():
    pred, gt = _two_frames()
    res = evaluate(pred, gt)
    assert all(type(v) is float for v in res.values())
    expected = {
        "rmse": np.sqrt(47.875 / 126), "mae": 14 / 126,
        "pckh@0.5": 38 / 42, "pckh@1.0": 39 / 42, "pckh@1.5": 41 / 42, "pckh@2.0": 1.0,
        # arms: 8 joints, LeftShoulder (frame 0) and RightArm (frame 1, passes).
        "arm/rmse": np.sqrt((14.0625 + 1) / 48), "arm/mae": (3.75 + 1) / 48,
        "arm/pckh@0.5": 15 / 16,
        # legs: 8 joints, LeftLeg (frame 0).
        "leg/rmse": np.sqrt(6.25 / 48), "leg/mae": 2.5 / 48, "leg/pckh@0.5": 15 / 16,
        # body: 5 joints, Hips (frame 0) and Head (frame 1), both fail at k=1.
        "body/rmse": np.sqrt((1.5625 + 25) / 30), "body/mae": (1.75 + 5) / 30,
        "body/pckh@0.5": 8 / 10,
        "all/rmse": np.sqrt(47.875 / 126), "all/mae": 14 / 126, "all/pckh@0.5": 38 / 42,
    }
    assert set(res) == set(expected)
    for key, value in expected.items():
        assert res[key] == pytest.approx(value), key
    assert set(evaluate(pred, gt, parts=False)) == {k for k in expected if "/" not in k}


def test_leading_dims_and_layout_do_not_matter():
    rng = np.random.default_rng(1)
    gt = rng.standard_normal((3, 4, 21, 3))
    pred = gt + 0.3 * rng.standard_normal(gt.shape)
    ref = evaluate(pred, gt)
    for shape in [(12, 21, 3), (12, 63), (2, 6, 63), (6, 2, 21, 3)]:
        got = evaluate(pred.reshape(shape), gt.reshape(shape))
        for key in ref:
            assert got[key] == pytest.approx(ref[key]), (shape, key)
    # A single frame works too.
    assert rmse(pred[0, 0].ravel(), gt[0, 0].ravel()) == pytest.approx(
        np.sqrt(np.mean((pred[0, 0] - gt[0, 0]) ** 2)))


def test_parts_match_skeleton_groups():
    pred, gt = _two_frames()
    for part, joints in PARTS.items():
        sub_p, sub_g = pred[:, list(joints)], gt[:, list(joints)]
        assert rmse(pred, gt, part) == pytest.approx(np.sqrt(np.mean((sub_p - sub_g) ** 2)))


@pytest.mark.parametrize(
    ("pred_shape", "gt_shape"),
    [((2, 63), (3, 63)), ((2, 12, 63), (2, 63)), ((2, 62), (2, 62)), ((4, 20, 3), (4, 20, 3))],
)
def test_shape_mismatch_is_a_clear_error(pred_shape, gt_shape):
    with pytest.raises(MetricsError) as info:
        evaluate(np.zeros(pred_shape), np.zeros(gt_shape))
    assert isinstance(info.value, ValueError) and isinstance(info.value, UserError)
    assert str(pred_shape) in str(info.value) or "21 joints" in str(info.value)
