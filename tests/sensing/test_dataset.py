import numpy as np
import pytest

from bgm2pose.sensing.session import read_session
from bgm2pose.sensing.sim.dataset import (
    DatasetError, SimulationPlan, parse_shard, plan_jobs, render_job, shard,
)
from bgm2pose.sensing.sim.rig import Rig


def test_shards_are_disjoint_and_cover_every_job():
    jobs = plan_jobs(SimulationPlan(takes=2))
    assert len(jobs) == 8 * 4 * 2
    keys = [j.key for j in jobs]
    assert len(set(keys)) == len(keys)
    for n in (1, 3, 7):
        parts = [[j.key for j in shard(jobs, i, n)] for i in range(n)]
        flat = [k for p in parts for k in p]
        assert sorted(flat) == sorted(keys)
        assert len(flat) == len(set(flat))


def test_job_seeds_depend_on_plan_seed_and_key_only():
    a = {j.key: j.seed for j in plan_jobs(SimulationPlan(seed=1))}
    b = {j.key: j.seed for j in plan_jobs(SimulationPlan(seed=1, subjects=("S3",)))}
    c = {j.key: j.seed for j in plan_jobs(SimulationPlan(seed=2))}
    assert all(a[k] == v for k, v in b.items())
    assert all(a[k] != c[k] for k in a)


def test_randomised_rigs_differ_per_session_and_stay_valid():
    jobs = plan_jobs(SimulationPlan(randomise_rig=True, subjects=("S1", "S2")))
    rigs = {j.rig for j in jobs}
    assert len(rigs) == len(jobs)
    for rig in rigs:
        # The sensing area lies between the mic and the speakers.
        assert rig.mic[2] < rig.area_center[2] < rig.speaker_left[2]


def test_the_plan_rig_is_every_session_rig_and_the_centre_of_randomised_ones():
    dry = Rig(rt60=0.2, speaker_directivity_db=9.0)
    assert {j.rig for j in plan_jobs(SimulationPlan(rig=dry))} == {dry}
    wide = Rig(room_size=(12.0, 3.0, 10.0), speaker_left=(7.0, 1.2, 4.5),
               speaker_right=(5.0, 1.2, 4.5), mic=(6.0, 1.2, 1.5), area_center=(6.0, 0.0, 3.0))
    for job in plan_jobs(SimulationPlan(rig=wide, randomise_rig=True, subjects=("S1",))):
        # Randomised rooms scale the base room (0.85-1.3 x), so they follow it.
        assert job.rig.room_size[0] > 0.85 * 12.0 - 1e-9


@pytest.mark.parametrize("text", ["1", "a/b", "2/2", "-1/3"])
def test_bad_shard_is_refused(text):
    with pytest.raises(DatasetError):
        parse_shard(text)


def test_same_seed_renders_identical_sessions(tmp_path):
    plan = SimulationPlan(subjects=("S2",), tracks=("jazz-0003",), minutes=2 / 60, seed=5)
    (job,) = plan_jobs(plan)
    a = read_session(render_job(job, tmp_path / "a", plan))
    b = read_session(render_job(job, tmp_path / "b", plan))
    np.testing.assert_array_equal(a.mic, b.mic)
    np.testing.assert_array_equal(a.poses, b.poses)
    assert a.mic.shape == (4, 96000) and a.poses.shape == (240, 21, 3)
    assert np.sqrt(np.mean(a.mic[0] ** 2)) > 1e-3  # the mic hears the music
    (other,) = plan_jobs(SimulationPlan(subjects=("S2",), tracks=("jazz-0003",),
                                        minutes=2 / 60, seed=6))
    c = read_session(render_job(other, tmp_path / "c", plan))
    assert not np.array_equal(a.poses, c.poses)
