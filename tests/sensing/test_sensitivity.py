import numpy as np
import pytest

from bgm2pose.sensing.sim.motion import SUBJECTS, generate_motion
from bgm2pose.sensing.sim.rig import Rig
from bgm2pose.sensing.sim.sensitivity import (
    BANDS_HZ, Change, body_path_variants, markdown, rest_pose, signature, straight_arm,
    variants_markdown,
)
from bgm2pose.sensing.skeleton import INDEX


@pytest.fixture(scope="module")
def rest():
    return rest_pose(generate_motion(SUBJECTS[0], 20.0, seed=5, rig=Rig()))


def test_rest_pose_has_the_lowest_hands(rest):
    joints = generate_motion(SUBJECTS[0], 20.0, seed=5, rig=Rig())
    lowest = (joints[:, INDEX["LeftHand"], 1] + joints[:, INDEX["RightHand"], 1]
              - 2 * joints[:, INDEX["Hips"], 1]).min()
    assert rest[INDEX["LeftHand"], 1] + rest[INDEX["RightHand"], 1] - 2 * rest[0, 1] == pytest.approx(lowest)


def test_straight_arm_keeps_bone_lengths_and_points_where_asked(rest):
    raised = straight_arm(rest, "Right", [0, 2, 0])
    chain = [INDEX[n] for n in ("RightArm", "RightForeArm", "RightHand")]
    for a, b in zip(chain, chain[1:]):
        assert np.linalg.norm(raised[b] - raised[a]) == pytest.approx(np.linalg.norm(rest[b] - rest[a]))
        np.testing.assert_allclose((raised[b] - raised[a]) / np.linalg.norm(raised[b] - raised[a]),
                                   [0, 1, 0], atol=1e-12)
    untouched = [i for i in range(21) if i not in chain[1:]]
    np.testing.assert_array_equal(raised[untouched], rest[untouched])


def test_arm_moves_stand_out_of_the_noise_and_steps_are_as_loud(rest):
    changes = {c.name: c for c in signature(Rig(), rest)}
    x, band = 1, 1  # channel X, 1-4 kHz: direct sound dominates, the body's cues are largest
    assert BANDS_HZ[band] == (1000, 4000)
    noise = changes["another take of the sensor and background noise"].db[x, band]
    arms = [c for c in changes.values() if not c.nuisance]
    assert len(arms) == 4
    for c in arms:
        assert c.db[x, band] > 3 * noise, c.name
    # A 10 cm step, invisible to the hip-relative target, moves the features as much as an
    # arm: the nuisance a pose estimator has to see through.
    step = changes["whole body 10 cm sideways"].db[x, band]
    assert step > 0.5 * max(c.db[x, band] for c in arms)
    table = markdown(list(changes.values()))
    assert table.count("\n") == 2 + len(changes)


def test_body_path_variants_leave_out_each_surface_of_the_rig_in_turn():
    variants = dict(body_path_variants(Rig(body_paths=("floor", "wall_z0"))))
    assert list(variants) == ["as simulated", "direct path only", "without the floor",
                              "without the wall z0"]
    assert variants["direct path only"].body_surfaces == ()
    assert variants["without the floor"].body_surfaces == ("wall_z0",)
    assert [label for label, _ in body_path_variants(Rig(body_paths="direct"))] == [
        "as simulated", "direct path only"]


def test_variants_table_averages_1_to_12_khz_and_shows_z_alone():
    db = np.zeros((4, len(BANDS_HZ)))
    db[:, 1:3] = 1.0  # 1-4 and 4-12 kHz
    db[3, 1:3] = 3.0  # Z
    rows = [("as simulated", [Change("arms up", False, db)]),
            ("direct path only", [Change("arms up", False, db / 2)])]
    lines = variants_markdown(rows).splitlines()
    assert lines[0] == "| rig | arms up | Z only: arms up |"
    assert lines[2] == "| as simulated | 1.50 | 3.00 |"
    assert lines[3] == "| direct path only | 0.75 | 1.50 |"
