"""The evaluation protocol: settings from the tracks, leave-one-subject-out splits with a
validation subject, controls, job digests, estimates, aggregation and the report's parts.
The benchmark command end to end (resume, shards, plan, report) is in test_benchmark.py."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from bgm2pose.models.data import DataError, WindowSet
from bgm2pose.models.metrics import mae
from bgm2pose.models.grid import makespan
from bgm2pose.models.protocol import (
    ROW_BY_LABEL, ROWS, Budget, Job, Speed, _shuffled, aggregate, estimate_seconds, job_digest, job_sizes,
    make_plan, protocol_settings, run_job, split,
)
from bgm2pose.models.report import findings

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
    with pytest.raises(DataError, match="not in the data set"):
        make_plan(w, ["S9"], [0], Budget())
    ampl = replace(w, channel=w.channel[:, :0])
    assert {j.row.label for j in make_plan(ampl, ["S3"], [0], Budget()).jobs} == \
        {r.label for r in ROWS} - {"BGM2Pose, channel input", "BGM2Pose, both inputs"}
    with pytest.raises(DataError, match="at least three subjects"):
        make_plan(_windows(subjects=("S1", "S2")), ["S2"], [0], Budget())


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


def test_run_job_validates_on_a_training_subject_and_the_mean_pose_is_the_fit_mean():
    w = _windows(per=6)
    setting = protocol_settings(w)[0]
    budget = Budget(epochs=2, patience=1, batch_size=8)
    mean_job = Job(setting, "S3", 0, ROW_BY_LABEL["mean pose"])
    result = run_job(w, mean_job, budget)
    fit = np.flatnonzero((w.subject == "S1") & (w.track == setting.train_tracks[0]))
    _, test = split(w, mean_job)
    expected = mae(np.broadcast_to(w.poses[fit].mean(axis=(0, 1)), (len(test), 12, 63)), w.poses[test])
    assert result["metrics"]["mae"] == pytest.approx(expected)
    assert result["train_windows"] == len(fit) and result["training"] is None
    assert result["validation"]["subjects"] == ["S2"]  # the last training subject, never S3
    trained = run_job(w, Job(setting, "S3", 0, ROW_BY_LABEL["Jiang"]), budget)
    training = trained["training"]
    assert training["stop"] in ("plateau", "cap") and 1 <= training["epochs_run"] <= 2
    assert all(set(h) == {"epoch", "loss", "pose", "val_pose"} for h in training["history"])
    assert len(trained["examples"]["pred"]) == 3
    agg = aggregate([result, {**result, "metrics": {**result["metrics"], "mae": expected + 0.2}}])
    mean, std, n = agg[("a", "mean pose")]["mae"]
    assert n == 2 and mean == pytest.approx(expected + 0.1) and std == pytest.approx(0.1)


class _Killed(Exception):
    pass


def test_a_job_killed_mid_way_resumes_from_its_checkpoint_to_the_same_result(tmp_path, monkeypatch):
    import bgm2pose.models.train as train_module

    w = _windows(per=6)
    job = Job(protocol_settings(w)[0], "S3", 0, ROW_BY_LABEL["Jiang"])
    budget = Budget(epochs=3, patience=3, batch_size=4)
    full = run_job(w, job, budget, tmp_path / "full")
    save = train_module._save

    def die_after_the_first_epoch(path, ckpt):
        save(path, ckpt)
        raise _Killed

    monkeypatch.setattr(train_module, "_save", die_after_the_first_epoch)
    with pytest.raises(_Killed):
        run_job(w, job, budget, tmp_path / "killed")
    monkeypatch.setattr(train_module, "_save", save)
    resumed = run_job(w, job, budget, tmp_path / "killed")
    assert resumed["training"]["epochs_run"] == 3 and resumed["training"]["history"] == full["training"]["history"]
    assert resumed["metrics"] == full["metrics"]


def test_a_result_digest_changes_with_the_data_the_job_and_the_budget_only():
    w = _windows()
    job = Job(protocol_settings(w)[0], "S3", 0, ROW_BY_LABEL["mean pose"])
    budget = Budget(epochs=1, batch_size=8)
    data = w.fingerprint()
    digest = job_digest(job, budget, data)
    assert digest == job_digest(Job(*protocol_settings(w)[:1], "S3", 0, ROW_BY_LABEL["mean pose"]), budget, data)
    assert digest != job_digest(job, replace(budget, patience=2), data)
    assert digest != job_digest(replace(job, seed=1), budget, data)
    # The same folder re-simulated: same counts and labels, other audio.
    other = replace(w, base=w.base.copy())
    other.base[5, 0, 0, 0] += 1.0
    assert other.describe() == w.describe() and other.fingerprint() != data
    assert job_digest(job, budget, other.fingerprint()) != digest


def test_estimates_scale_with_the_windows_and_the_cap():
    w = _windows(per=50)
    job = Job(protocol_settings(w)[1], "S3", 0, ROW_BY_LABEL["Jiang"])
    sizes = job_sizes(w, job)
    assert sizes == (150, 150, 50)  # (b): 3 tracks of S1 to fit, of S2 to validate; S3's test track
    speed = Speed(train=0.01, predict=0.002)
    assert estimate_seconds(sizes, speed, 10) == pytest.approx(10 * (1.5 + 0.3) + 0.1)
    assert estimate_seconds(sizes, None, 10) == 0
    assert makespan([5, 4, 3, 3], 2) == 8 and makespan([5, 4], 1) == 9


def _result(job, mae_value, epochs=3, stop="plateau", pose=None):
    metrics = {"rmse": 1.0, "mae": mae_value, "pckh@0.5": 0.4, "pckh@1.0": 0.6, "pckh@1.5": 0.7, "pckh@2.0": 0.8}
    metrics.update({f"{p}/{m}": 0.3 for p in ("all", "arm", "leg", "body") for m in ("rmse", "mae", "pckh@0.5")})
    training = None if job.row.method is None else {
        "epochs_run": epochs, "max_epochs": 30, "patience": 5, "stop": stop, "best_epoch": 1, "wall_seconds": 1.0,
        "history": [{"epoch": e + 1, "loss": 1.0, "pose": 1.0 / (e + 1), "val_pose": 1.2} for e in range(epochs)]}
    return {"key": job.key, "setting": job.setting.key, "row": job.row.label, "test_subject": job.test_subject,
            "seed": job.seed, "metrics": metrics, "training": training, "seconds": 1.0,
            "examples": {"pred": [pose] * 3, "truth": [pose] * 3}}


def test_findings_are_written_from_the_numbers():
    w = _windows()
    plan = make_plan(w, ["S3"], [0], Budget())
    maes = {"Jiang": 0.60, "Ginosar": 0.70, "Shibata": 0.66, "BGM2Pose": 0.62, "mean pose": 0.65,
            "BGM2Pose, shuffled audio": 0.64, "w/o FA": 0.68}
    results = [_result(j, maes.get(j.row.label, 0.63), stop="cap" if j.row.label == "Ginosar" else "plateau")
               for j in plan.jobs]
    lines = findings(aggregate(results), results, ["a", "b", "c"], runs=1)
    text = "\n".join(lines)
    assert "(a) single-music: lowest MAE **Jiang**, 0.600 = 0.92x the mean pose's 0.650." in text
    assert "BGM2Pose ranks 2 of 6: 0.620, +0.020 against Jiang" in text
    assert "Below the mean pose: Jiang; BGM2Pose; BGM2Pose, channel input; BGM2Pose, both inputs. Not below: " \
           "Shibata; Ginosar." in text
    assert "Shuffled audio: 0.640 = 0.98x the mean pose's 0.650; below the mean pose's" in text
    assert "(a) ablations, MAE against the full BGM2Pose (0.620): w/o FA +0.060" in text
    assert "at the epoch cap, so perhaps not converged: Ginosar (a); Ginosar (b); Ginosar (c)" in text
    assert lines[-1].startswith("- One run per cell")
    # A second fold gives a spread to judge the gaps by.
    again = [{**r, "test_subject": "S2", "metrics": {**r["metrics"], "mae": r["metrics"]["mae"] + 0.1 * (
        r["row"] == "Jiang")}} for r in results]
    text = "\n".join(findings(aggregate(results + again), results + again, ["a"], runs=2))
    assert "lowest MAE **BGM2Pose**, 0.620 = 0.95x the mean pose's 0.650, a gap larger than the spread" in text
    assert "Shuffled audio: 0.640 = 0.98x the mean pose's 0.650, a gap larger than the spread" in text
    assert "One run per cell" not in text
