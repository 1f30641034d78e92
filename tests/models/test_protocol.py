"""The evaluation protocol: settings from the tracks, leave-one-subject-out splits, controls,
the quick budget, aggregation and the report."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from bgm2pose.models.data import DataError, WindowSet
from bgm2pose.models.metrics import mae
from bgm2pose.models.protocol import (
    ROW_BY_LABEL, ROWS, Budget, Job, _shuffled, aggregate, estimate_seconds, make_plan,
    load_result, protocol_settings, quick_budget, run_job, save_result, split,
)
from bgm2pose.models.report import write_report

torch.set_num_threads(1)
TRACKS = ("ambient-0000", "ambient-0001", "ambient-0002", "jazz-0000")


def _windows(subjects=("S1", "S2", "S3"), per=4) -> WindowSet:
    rows = [(s, t, i) for s in subjects for t in TRACKS for i in range(per)]
    rng = np.random.default_rng(0)
    n = len(rows)
    poses = rng.normal(size=(n, 12, 21, 3)).astype(np.float32)
    poses[..., 1] += np.arange(21, dtype=np.float32)[:, None].T  # heads above necks: PCKh defined
    return WindowSet(
        base=rng.normal(size=(n, 9, 12, 128)).astype(np.float32) * 10 - 50,
        channel=rng.normal(size=(n, 17, 12, 128)).astype(np.float32),
        poses=poses.reshape(n, 12, 63),
        subject=np.array([r[0] for r in rows]), track=np.array([r[1] for r in rows]),
        genre=np.array([r[1].split("-")[0] for r in rows]),
        excerpt=np.array([f"{r[1]}@{r[2] * 28800}" for r in rows]),
    )


def test_settings_follow_the_paper():
    s = {x.key: x for x in protocol_settings(_windows())}
    assert s["a"].train_tracks == s["a"].test_tracks == ("ambient-0000",)
    assert set(s["b"].train_tracks) == {"ambient-0000", "ambient-0001", "jazz-0000"}
    assert s["b"].test_tracks == ("ambient-0002",)
    assert s["c"].train_tracks == TRACKS[:3] and s["c"].test_tracks == ("jazz-0000",)
    one_track = _windows()
    keep = one_track.track == "ambient-0000"
    assert [x.key for x in protocol_settings(one_track.subset(np.flatnonzero(keep)))] == ["a"]


def test_plan_and_leave_one_subject_out_splits():
    w = _windows()
    plan = make_plan(w, ["S2", "S3"], [0, 1], Budget())
    per_fold_seed = sum(1 for r in ROWS if r.group != "ablation") * 3 + sum(1 for r in ROWS if r.group == "ablation") * 2
    assert len(plan.jobs) == 4 * per_fold_seed
    assert not any(j.row.group == "ablation" and j.setting.key == "c" for j in plan.jobs)
    for job in plan.jobs[:: len(ROWS)]:
        train, test = split(w, job)
        assert job.test_subject not in set(w.subject[train]) and set(w.subject[test]) == {job.test_subject}
        assert set(w.track[train]) == set(job.setting.train_tracks)
        assert set(w.track[test]) == set(job.setting.test_tracks)
    with pytest.raises(DataError):
        make_plan(w, ["S9"], [0], Budget())
    job = plan.jobs[0]
    half, _ = split(w, job, fraction=0.5)
    full, _ = split(w, job)
    assert len(half) == len(full) // 2 and set(half) <= set(full)


def test_shuffled_control_breaks_the_pairing_only():
    w = _windows()
    job = make_plan(w, ["S1"], [0], Budget()).jobs[0]
    train, test = split(w, replace(job, setting=protocol_settings(w)[2]))
    sub, tr, te = _shuffled(w, train, test, seed=0)
    np.testing.assert_array_equal(sub.poses[tr], w.poses[train])
    assert not np.array_equal(sub.base[tr], w.base[train])
    # The same windows' audio, in another order: sums over each part are unchanged.
    np.testing.assert_allclose(sub.base[tr].sum(0), w.base[train].sum(0), rtol=1e-5)
    np.testing.assert_allclose(sub.base[te].sum(0), w.base[test].sum(0), rtol=1e-5)


def test_run_job_mean_pose_and_a_trained_baseline():
    w = _windows(per=6)
    setting = protocol_settings(w)[0]
    budget = Budget(epochs=1, batch_size=8)
    mean_job = Job(setting, "S3", 0, ROW_BY_LABEL["mean pose"])
    result = run_job(w, mean_job, budget)
    train, test = split(w, mean_job)
    expected = mae(np.broadcast_to(w.poses[train].mean(axis=(0, 1)), (len(test), 12, 63)), w.poses[test])
    assert result["metrics"]["mae"] == pytest.approx(expected)
    assert result["train_windows"] == len(train) and result["final_loss"] is None
    trained = run_job(w, Job(setting, "S3", 0, ROW_BY_LABEL["Jiang"]), budget)
    assert np.isfinite(trained["final_loss"]) and len(trained["examples"]["pred"]) == 3
    agg = aggregate([result, {**result, "metrics": {**result["metrics"], "mae": expected + 0.2}}])
    mean, std, n = agg[("a", "mean pose")]["mae"]
    assert n == 2 and mean == pytest.approx(expected + 0.1) and std == pytest.approx(0.1)


def test_saved_results_are_reused_only_for_the_same_budget_and_data(tmp_path):
    w = _windows()
    job = Job(protocol_settings(w)[0], "S3", 0, ROW_BY_LABEL["mean pose"])
    budget = Budget(epochs=1, batch_size=8)
    data = w.fingerprint()
    save_result(tmp_path, {**run_job(w, job, budget), "data": data})
    assert load_result(tmp_path, job, budget, data)["key"] == job.key
    assert load_result(tmp_path, job, replace(budget, epochs=2), data) is None
    # The same folder re-simulated: same counts and labels, other audio.
    other = replace(w, base=w.base.copy())
    other.base[5, 0, 0, 0] += 1.0
    assert other.describe() == w.describe() and other.fingerprint() != data
    assert load_result(tmp_path, job, budget, other.fingerprint()) is None
    assert replace(w, poses=w.poses.copy()).fingerprint() == data


def test_quick_budget_fits_the_time():
    w = _windows(per=50)
    plan = make_plan(w, ["S2", "S3"], [0], Budget())
    speeds = {r.label: 20.0 for r in ROWS if r.method}
    for minutes in (30.0, 0.5):
        budget = quick_budget(w, plan, speeds, minutes, workers=2)
        plan.budget = budget
        assert estimate_seconds(w, plan, speeds, 2) <= 0.9 * minutes * 60 + 1e-6
        assert budget.epochs >= 1
    assert budget.train_fraction < 1  # 0.5 min cannot hold one full epoch


def test_report_tables_and_figures(tmp_path):
    w = _windows()
    plan = make_plan(w, ["S2", "S3"], [0], Budget(epochs=1))
    results = []
    rng = np.random.default_rng(1)
    for job in plan.jobs:
        metrics = {"rmse": 1.0, "mae": 0.5 + 0.1 * rng.random(), "pckh@0.5": 0.4, "pckh@1.0": 0.6,
                   "pckh@1.5": 0.7, "pckh@2.0": 0.8}
        metrics.update({f"{p}/{m}": 0.3 for p in ("all", "arm", "leg", "body") for m in ("rmse", "mae", "pckh@0.5")})
        pose = w.poses[0].tolist()
        results.append({"key": job.key, "setting": job.setting.key, "row": job.row.label,
                        "test_subject": job.test_subject, "metrics": metrics,
                        "examples": {"pred": [pose] * 3, "truth": [pose] * 3}})
    readme = write_report(tmp_path, plan, results, "# test")
    text = readme.read_text()
    assert "## Table 1" in text and "## Table 2" in text and "## Table 3" in text
    assert "| w/o FA |" in text and "(c) RMSE" not in text.split("## Table 2")[1].split("## Table 3")[0]
    for s in "abc":
        assert (tmp_path / f"pckh_{s}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / f"skeletons_{s}.png").stat().st_size > 1000
