"""Training data: loading and caching session windows, splits, the hard-negative sampler."""

import os
import shutil
from collections import Counter

import numpy as np
import pytest

from bgm2pose.models.data import (
    CACHE_DIR, DataError, ExcerptBatchSampler, WindowSet, fit_stats, genre_of, load_windows, select,
)
from bgm2pose.models.windows import session_windows
from bgm2pose.sensing.session import SessionInfo, read_session, write_session
from bgm2pose.sensing.sim.motion import SUBJECTS, generate_motion

SR = 48_000
SECONDS = 3.0  # 5 windows per session


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """3 subjects x 2 tracks of noise "recordings" with real motion; the music of a track is
    the same in every session, the mic differs."""
    root = tmp_path_factory.mktemp("data")
    n = int(SECONDS * SR)
    for ti, track in enumerate(("ambient-0000", "jazz-0000")):
        music = 0.1 * np.random.default_rng(ti).standard_normal((2, n)).astype(np.float32)
        for si, subject in enumerate(SUBJECTS[:3]):
            rng = np.random.default_rng(10 * ti + si)
            mic = 0.1 * rng.standard_normal((4, n)).astype(np.float32)
            poses = generate_motion(subject, SECONDS, seed=si)
            info = SessionInfo(subject={"name": subject.name}, track=track)
            write_session(root / f"{subject.name}_{track}", info, mic, music, poses)
    return root


def test_loads_all_windows_with_labels_and_caches_them(dataset):
    w = load_windows(dataset, progress=False)
    assert len(w) == 6 * 5
    assert w.base.shape == (30, 9, 12, 128) and w.poses.shape == (30, 12, 63)
    assert Counter(w.subject.tolist()) == {"S1": 10, "S2": 10, "S3": 10}
    assert set(w.genre.tolist()) == {"ambient", "jazz"}
    # Each session's windows match what models.windows computes directly.
    folder = dataset / "S2_jazz-0000"
    direct = session_windows(read_session(folder))
    rows = select(w, subjects=["S2"], tracks=["jazz-0000"])
    np.testing.assert_array_equal(w.base[rows], direct.base)
    np.testing.assert_array_equal(w.poses[rows], direct.poses)
    assert [f"jazz-0000@{s}" for s in direct.start_sample] == w.excerpt[rows].tolist()
    cached = list((folder / CACHE_DIR).glob("*.npz"))
    assert len(cached) == 1
    # A second load reads the cache; a changed hop is a different key.
    again = load_windows(dataset, progress=False)
    np.testing.assert_array_equal(again.base, w.base)
    half = load_windows(dataset, hop_frames=6, progress=False)
    assert len(half) == 6 * 9 and len(list((folder / CACHE_DIR).glob("*.npz"))) == 2


def test_stale_cache_is_not_used(tmp_path, dataset):
    folder = shutil.copytree(dataset / "S1_ambient-0000", tmp_path / "S1_ambient-0000")
    before = load_windows(tmp_path, progress=False)
    poses = np.load(folder / "poses.npy")
    np.save(folder / "poses.npy", poses * 1.5 + np.array([0.0, 0.0, 1.0], np.float32))
    after = load_windows(tmp_path, progress=False)
    # Normalisation removes scale and the hips offset; a mirrored z does not vanish.
    np.save(folder / "poses.npy", poses * np.array([1.0, 1.0, -1.0], np.float32))
    mirrored = load_windows(tmp_path, progress=False)
    np.testing.assert_allclose(after.poses, before.poses, atol=1e-4)
    assert np.abs(mirrored.poses - before.poses).max() > 0.1


@pytest.fixture
def computed(monkeypatch):
    """Counts the sessions whose features are computed (not read from a cache)."""
    import bgm2pose.models.data as data

    folders = []

    def counted(session, hop_frames):
        folders.append(session.folder.name)
        return session_windows(session, hop_frames)

    monkeypatch.setattr(data, "session_windows", counted)
    return folders


def _sets(root):
    return sorted(p.name for p in (root / CACHE_DIR).glob("set-*"))


def test_data_set_cache_is_memory_mapped_reused_and_keyed_by_content(tmp_path, dataset, computed, monkeypatch):
    import bgm2pose.models.data as data

    root = shutil.copytree(dataset, tmp_path / "data", ignore=shutil.ignore_patterns(CACHE_DIR))
    first = load_windows(root, progress=False)
    assert len(computed) == 6 and len(_sets(root)) == 1
    assert isinstance(first.base, np.memmap) and not first.base.flags.writeable
    base_file = root / CACHE_DIR / _sets(root)[0] / "base.npy"
    written = base_file.stat().st_mtime_ns
    # Later loads (another run, another process) only map the set: nothing computed or written.
    monkeypatch.setattr(data, "_cached_set", None)
    again = load_windows(root, progress=False)
    assert len(computed) == 6 and base_file.stat().st_mtime_ns == written
    for name in WindowSet.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
    # The key is the content: a touched file, or the data set copied with new mtimes, is the same data.
    os.utime(root / "S1_ambient-0000" / "mic.flac")
    copy = shutil.copytree(root, tmp_path / "copy", copy_function=shutil.copy)
    assert (copy / "S1_ambient-0000" / "mic.flac").stat().st_mtime_ns != (dataset / "S1_ambient-0000" / "mic.flac").stat().st_mtime_ns
    load_windows(root, progress=False)
    assert load_windows(copy, progress=False).fingerprint() == first.fingerprint()
    assert len(computed) == 6 and _sets(copy) == _sets(root)


def test_data_set_cache_is_rebuilt_when_the_data_or_the_settings_change(tmp_path, dataset, computed, monkeypatch):
    import bgm2pose.models.data as data

    root = shutil.copytree(dataset, tmp_path / "data", ignore=shutil.ignore_patterns(CACHE_DIR))
    before = load_windows(root, progress=False)
    (hop12,) = _sets(root)
    load_windows(root, hop_frames=6, progress=False)
    assert len(computed) == 12 and len(_sets(root)) == 2  # another hop: both kept
    hop6 = (set(_sets(root)) - {hop12}).pop()
    # One session's poses change: only it is recomputed, and its old set gives way to the new one.
    poses = np.load(root / "S2_jazz-0000" / "poses.npy")
    np.save(root / "S2_jazz-0000" / "poses.npy", poses * np.array([1.0, 1.0, -1.0], np.float32))
    after = load_windows(root, progress=False)
    assert computed[12:] == ["S2_jazz-0000"]
    assert hop12 not in _sets(root) and hop6 in _sets(root) and len(_sets(root)) == 2
    rows = select(after, subjects=["S2"], tracks=["jazz-0000"])
    assert np.abs(after.poses[rows] - before.poses[rows]).max() > 0.1
    np.testing.assert_array_equal(np.delete(after.base, rows, axis=0), np.delete(before.base, rows, axis=0))
    # A removed session, and changed feature settings, are new keys too.
    shutil.rmtree(root / "S3_jazz-0000")
    assert len(load_windows(root, progress=False)) == 25 and len(computed) == 13
    monkeypatch.setattr(data, "CACHE_VERSION", data.CACHE_VERSION + 1)
    load_windows(root, progress=False)
    assert len(computed) == 18


def test_selection_and_stats_use_only_the_training_split(dataset):
    w = load_windows(dataset, progress=False)
    train = select(w, genres=["ambient"], exclude_subjects=["S3"])
    assert set(w.subject[train]) == {"S1", "S2"} and set(w.track[train]) == {"ambient-0000"}
    stats = fit_stats(w, train)
    np.testing.assert_allclose(stats.mean, w.base[train].mean(axis=(0, 2, 3)), rtol=1e-5)
    assert not np.allclose(stats.mean, w.base.mean(axis=(0, 2, 3)), rtol=1e-5)
    with pytest.raises(DataError):
        fit_stats(w, np.array([], dtype=int))
    assert genre_of("jazz-0003") == "jazz" and genre_of("mysong") == "mysong"


def _excerpts(n_excerpts: int, per: int, seed: int = 0) -> np.ndarray:
    keys = np.repeat([f"track@{i * 28800}" for i in range(n_excerpts)], per)
    return keys[np.random.default_rng(seed).permutation(len(keys))]


def test_sampler_batches_whole_excerpt_groups(dataset):
    w = load_windows(dataset, progress=False)
    sampler = ExcerptBatchSampler(w.excerpt, batch_size=7, seed=3)
    batches = list(sampler)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(len(w)))  # each window once per epoch
    for b in batches:
        assert 2 <= len(b) <= 7
        counts = Counter(w.excerpt[b].tolist())
        # Every excerpt in a batch comes with all of its windows: the 3 subjects' takes.
        assert all(c == 3 for c in counts.values())
        for key in counts:
            assert set(w.subject[b][w.excerpt[b] == key]) == {"S1", "S2", "S3"}


def test_sampler_shuffles_per_epoch_and_splits_large_groups():
    excerpts = _excerpts(40, per=5)
    sampler = ExcerptBatchSampler(excerpts, batch_size=12, seed=0)
    first = [b.tolist() for b in sampler]
    sampler.set_epoch(1)
    second = [b.tolist() for b in sampler]
    assert first != second and sorted(sum(first, [])) == sorted(sum(second, []))
    # 5-window groups in 12-window batches: two groups per batch, never a split group.
    assert all(len(b) == 10 for b in first)
    big = ExcerptBatchSampler(_excerpts(3, per=20), batch_size=8, seed=0)
    for b in big:
        assert len(set(_excerpts(3, per=20)[b])) == 1  # a split group still fills batches alone


def test_random_batches_mix_excerpts():
    excerpts = _excerpts(40, per=5)
    batches = list(ExcerptBatchSampler(excerpts, batch_size=10, hard_negatives=False, seed=0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(200))
    shared = np.mean([max(Counter(excerpts[b].tolist()).values()) for b in batches])
    assert shared < 3  # random draws rarely put 3 of a 5-window excerpt together


def test_ranks_get_disjoint_equal_shares():
    excerpts = _excerpts(41, per=3)
    ranks = [list(ExcerptBatchSampler(excerpts, batch_size=9, seed=5, rank=r, world=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) > 0
    a, b = (set(np.concatenate(r).tolist()) for r in ranks)
    assert not a & b
    with pytest.raises(DataError):
        ExcerptBatchSampler(excerpts[:4], batch_size=9, world=2)
    with pytest.raises(DataError):
        ExcerptBatchSampler(excerpts, batch_size=1)


def test_bad_sources_raise_user_errors(tmp_path):
    with pytest.raises(DataError, match="no session folders"):
        load_windows(tmp_path, progress=False)
    with pytest.raises(DataError, match="neither"):
        load_windows(tmp_path / "nothing", progress=False)
