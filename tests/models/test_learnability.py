import numpy as np
import pytest

from bgm2pose.models.learnability import (
    axes_summary, comparison_markdown, excerpt_inputs, fit_ridge, leave_one_subject_out, predict_ridge, report_markdown,
    summary,
)
from bgm2pose.sensing.skeleton import PARTS


def _dataset(n_per_subject=120, subjects=4, seed=0):
    """Windows whose mic features carry only the arms' heights (y), plus a music pattern
    shared by all windows of the same excerpt; the x and z of every joint are invisible."""
    rng = np.random.default_rng(seed)
    n = n_per_subject * subjects
    # One pose held over each window, so a window's features can determine all of it; the
    # arms' heights vary most, as in the simulated motion.
    scale = np.full((21, 3), 0.2)
    scale[list(PARTS["arm"]), 1] = 1.0
    poses = np.repeat(scale * rng.normal(size=(n, 1, 21, 3)), 12, axis=1)
    heights = poses[:, 0, list(PARTS["arm"]), 1]  # (n, 8)
    excerpt_ids = np.tile(np.arange(n_per_subject), subjects)
    music = rng.normal(scale=5.0, size=(n_per_subject, 9, 12, 128))
    base = music[excerpt_ids].copy()
    mixing = rng.normal(size=(8, 7 * 12 * 128))
    base[:, [0, 1, 2, 3, 6, 7, 8]] += (heights @ mixing).reshape(n, 7, 12, 128)
    base += 0.1 * rng.normal(size=base.shape)
    subject_names = np.repeat([f"S{i + 1}" for i in range(subjects)], n_per_subject)
    excerpts = np.array([f"track@{i}" for i in excerpt_ids])
    return base.astype(np.float32), poses.reshape(n, 12, 63).astype(np.float32), subject_names, excerpts


def _channel(base: np.ndarray, poses: np.ndarray, seed=1) -> np.ndarray:
    """Channel features that carry the arms' heights as the mic features do, without music."""
    rng = np.random.default_rng(seed)
    heights = poses.reshape(len(poses), 12, 21, 3)[:, 0, list(PARTS["arm"]), 1]
    mixing = rng.normal(size=(8, 17 * 12 * 128))
    channel = (heights @ mixing).reshape(len(poses), 17, 12, 128) + 0.1 * rng.normal(size=(len(poses), 17, 12, 128))
    return channel.astype(np.float32)


@pytest.fixture(scope="module")
def results():
    base, poses, subjects, excerpts = _dataset()
    return leave_one_subject_out(base, poses, subjects, excerpts, alpha=1.0, mlp_epochs=12,
                                 channel=_channel(base, poses))


@pytest.mark.parametrize("name", ["excerpt ridge", "excerpt mlp", "channel ridge"])
def test_excerpt_probes_find_what_the_features_carry_and_shuffling_destroys_it(results, name):
    s = summary(results, name)
    assert s["mae_fit"] < 0.98 * s["mae_mean_pose"]
    assert s["mae_shuffled"] > 0.99 * s["mae_mean_pose"]


def test_axes_show_which_directions_are_recovered(results):
    arm = axes_summary(results, "excerpt ridge")["arm"]
    # Only the arms' heights are encoded: y improves a lot, x and z not.
    assert arm[1] < 0.8
    assert arm[0] > 0.98 and arm[2] > 0.98
    legs = axes_summary(results, "excerpt ridge")["leg"]
    assert np.all(legs > 0.98)


def test_ridge_primal_and_dual_forms_agree():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 30)), rng.normal(size=(40, 5))
    wide = fit_ridge(np.hstack([x, np.zeros((40, 20))]), y, 2.0)  # 50 features > 40 rows: dual
    tall = fit_ridge(x, y, 2.0 * 30 / 50)  # same penalty, primal (alpha is per mean variance)
    np.testing.assert_allclose(wide[1][:30], tall[1], atol=1e-10)
    np.testing.assert_allclose(predict_ridge(wide, np.hstack([x, np.zeros((40, 20))])),
                               predict_ridge(tall, x), atol=1e-10)


def test_excerpt_inputs_remove_the_shared_music():
    base, _, _, excerpts = _dataset(n_per_subject=10, subjects=3)
    train = np.ones(len(base), bool)
    x = excerpt_inputs(base, excerpts, train)
    plain_energy = base.astype(np.float64).var()
    # What is left is the arms' signature and noise, standardised: no excerpt-specific mean.
    keys = np.unique(excerpts)
    per_excerpt = np.stack([x[excerpts == k].mean(axis=0) for k in keys])
    assert np.abs(per_excerpt).max() < 1e-9 * max(plain_energy, 1)


def test_report_lists_folds_and_axes(results):
    text = report_markdown(results, "t", 1.0)
    assert "| S3 |" in text and "| **all** |" in text
    assert "| arm |" in text and text.count("| part | x | y | z |") == 5
    assert "| excerpt mlp |" in text


def test_comparison_has_one_row_per_data_set_with_every_probe(results):
    text = comparison_markdown([("first", results), ("second", results[:3])])
    lines = text.splitlines()
    assert lines[0].count("MAE / mean pose") == 5 and len(lines) == 4
    ratio = summary(results, "excerpt mlp")
    cell = f"{ratio['mae_fit'] / ratio['mae_mean_pose']:.3f}"
    assert lines[2].startswith("| first |") and cell in lines[2]
    assert lines[3].count("| - ") == 4  # the second has no channel probes
