"""Training data: every window of a data set in memory, splits, and the batch sampler.

- A data set is a folder of session folders (``bgm2pose simulate`` or recordings) or an
  AMPL preprocessed CSV. ``load_windows`` returns one ``WindowSet``: base features
  (N, 9, 12, 128), normalised poses (N, 12, 63) and, per window, subject, track, genre and
  music excerpt.
- Cache: a session's windows are saved as ``<session>/.windows/<key>.npz``; the key hashes
  the session files' names, sizes and modification times, the window hop and
  ``CACHE_VERSION``, so an edited session or a changed window layout is recomputed and a
  re-run loads in seconds. A read-only session folder simply is not cached.
- Genre: the part of the track name before the first "-" ("ambient-0001" -> "ambient"),
  the naming of the generated tracks; other names are their own genre. AMPL rows use
  their ``music_type`` as track and genre.
- Excerpt: ``"<track>@<first music sample>"``; windows with the same excerpt heard the same
  music (each session plays its track from the start). AMPL rows: ``"<music_type>@<label>"``.
- ``ExcerptBatchSampler``: BGM hard negatives (REFERENCE.md): each batch is made of whole
  groups of windows sharing an excerpt (recorded with different subjects or takes), so
  the CLIP term must tell poses apart that the music cannot. Groups are shuffled per
  epoch; a batch closes when the next group would not fit, so batches hold at most
  ``batch_size`` windows and only a group larger than a batch is split. With
  ``hard_negatives=False`` batches are plain random draws. For DistributedDataParallel
  every rank computes the same epoch plan from (seed, epoch) and takes every
  ``world``-th batch, the plan trimmed to a multiple of ``world`` so ranks step together.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from bgm2pose.models.ampl import read_ampl
from bgm2pose.models.windows import session_windows
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.features import FRAMES_PER_WINDOW, FeatureStats
from bgm2pose.sensing.session import MIC_FILE, POSES_FILE, REFERENCE_FILE, SESSION_FILE, find_sessions, read_session

CACHE_VERSION = 1
CACHE_DIR = ".windows"


class DataError(UserError, ValueError):
    """A data set or a selection of it that training cannot use."""


@dataclass
class WindowSet:
    base: np.ndarray  # (N, 9, 12, 128) float32 base features
    poses: np.ndarray  # (N, 12, 63) float32, normalised per frame
    subject: np.ndarray  # (N,) str
    track: np.ndarray  # (N,) str
    genre: np.ndarray  # (N,) str
    excerpt: np.ndarray  # (N,) str, "<track>@<music sample>"

    def __len__(self) -> int:
        return len(self.base)

    def subset(self, index: np.ndarray) -> WindowSet:
        return WindowSet(*(getattr(self, f)[index] for f in self.__dataclass_fields__))

    def fingerprint(self) -> str:
        """A hash of the content (features, poses, labels), so results computed on other data
        are recognised as such even when the folder and the counts are the same."""
        h = hashlib.blake2b(digest_size=12)
        for name in self.__dataclass_fields__:
            a = np.ascontiguousarray(getattr(self, name))
            h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
            h.update(a.tobytes() if a.dtype.kind not in "OU" else "\0".join(map(str, a.ravel())).encode())
        return h.hexdigest()

    def describe(self, index: np.ndarray | None = None) -> dict:
        """Counts for a model card of all windows or of ``index``: windows, subjects, tracks,
        genres (from the labels only, so no features are copied)."""
        rows = slice(None) if index is None else np.asarray(index)
        names = {name: sorted(set(getattr(self, name)[rows].tolist())) for name in ("subject", "track", "genre")}
        return {"windows": len(self.subject[rows]), "subjects": names["subject"], "tracks": names["track"],
                "genres": names["genre"]}


def genre_of(track: str) -> str:
    return track.split("-", 1)[0] if "-" in track else track


def _cache_key(folder: Path, hop_frames: int) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}/hop{hop_frames}".encode())
    for name in (SESSION_FILE, MIC_FILE, REFERENCE_FILE, POSES_FILE):
        path = folder / name
        if path.is_file():
            st = path.stat()
            h.update(f"/{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def _session_arrays(folder: Path, hop_frames: int) -> dict[str, np.ndarray]:
    cache = folder / CACHE_DIR / f"{_cache_key(folder, hop_frames)}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            return dict(z)
    session = read_session(folder)
    if session.poses is None:
        raise DataError(f"session {folder} has no poses.npy, so it cannot train or test a model; "
                        "move unannotated sessions out of the data set folder.")
    w = session_windows(session, hop_frames)
    music_start = w.start_sample - int(round(session.info.latency_samples))
    arrays = {"base": w.base, "poses": w.poses, "subject": np.array(w.subject), "track": np.array(w.track),
              "music_start": music_start}
    try:
        cache.parent.mkdir(exist_ok=True)
        # Unique temporary name + atomic rename: several processes (DDP ranks) may cache at once.
        tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, cache)
    except OSError:
        pass  # read-only data set: windows are recomputed next time
    return arrays


def _from_sessions(root: Path, hop_frames: int, progress: bool) -> WindowSet:
    folders = find_sessions(root)
    if not folders:
        raise DataError(f"no session folders under {root}; create some with 'bgm2pose simulate' "
                        "or pass an AMPL CSV.")
    parts = [_session_arrays(f, hop_frames)
             for f in tqdm(folders, desc="windows", unit="session", disable=not progress)]
    parts = [p for p in parts if len(p["base"])]
    if not parts:
        raise DataError(f"the sessions under {root} are all shorter than one 0.6 s window with poses.")
    n = [len(p["base"]) for p in parts]
    track = np.concatenate([[str(p["track"])] * k for p, k in zip(parts, n)])
    return WindowSet(
        base=np.concatenate([p["base"] for p in parts]),
        poses=np.concatenate([p["poses"] for p in parts]),
        subject=np.concatenate([[str(p["subject"])] * k for p, k in zip(parts, n)]),
        track=track,
        genre=np.array([genre_of(t) for t in track]),
        excerpt=np.concatenate([[f"{p['track']}@{s}" for s in p["music_start"]] for p in parts]),
    )


def _from_ampl(csv_path: Path) -> WindowSet:
    a = read_ampl(csv_path)
    return WindowSet(base=a.base, poses=a.poses, subject=a.testee, track=a.music_type,
                     genre=a.music_type.copy(),
                     excerpt=np.array([f"{m}@{lab}" for m, lab in zip(a.music_type, a.label)]))


def load_windows(source: str | Path, hop_frames: int = FRAMES_PER_WINDOW, progress: bool = True) -> WindowSet:
    """All annotated windows of a data set folder (sessions) or an AMPL CSV."""
    source = Path(source)
    if not 1 <= hop_frames <= FRAMES_PER_WINDOW:
        raise DataError(f"hop_frames is {hop_frames}; use 1..{FRAMES_PER_WINDOW} (12 = no overlap).")
    if source.suffix.lower() == ".csv":
        return _from_ampl(source)
    if not source.is_dir():
        raise DataError(f"data set {source} is neither a folder of sessions nor an AMPL CSV file.")
    return _from_sessions(source, hop_frames, progress)


def select(windows: WindowSet, *, subjects=None, tracks=None, genres=None, exclude_subjects=None) -> np.ndarray:
    """Indices of the windows matching every given filter (each a collection of names)."""
    keep = np.ones(len(windows), bool)
    for values, column in ((subjects, windows.subject), (tracks, windows.track), (genres, windows.genre)):
        if values is not None:
            keep &= np.isin(column, list(values))
    if exclude_subjects is not None:
        keep &= ~np.isin(windows.subject, list(exclude_subjects))
    return np.flatnonzero(keep)


def fit_stats(windows: WindowSet, train: np.ndarray) -> FeatureStats:
    """Feature standardisation from the training windows only."""
    if len(train) == 0:
        raise DataError("the training split is empty; check the subjects and tracks of the split.")
    return FeatureStats.fit(windows.base[train])


class ExcerptBatchSampler:
    """Batches of training positions 0..len(excerpts)-1; see the module docstring."""

    def __init__(self, excerpts: np.ndarray, batch_size: int, *, hard_negatives: bool = True, seed: int = 0,
                 rank: int = 0, world: int = 1):
        if batch_size < 2:
            raise DataError(f"batch size is {batch_size}; the CLIP term and batch norm need at least 2.")
        if not 0 <= rank < world:
            raise DataError(f"rank {rank} is outside a world of {world} processes.")
        _, self._group_of = np.unique(np.asarray(excerpts), return_inverse=True)
        self.batch_size, self.hard_negatives, self.seed = batch_size, hard_negatives, seed
        self.rank, self.world = rank, world
        self.epoch = 0
        if len(self._plan()) < world:
            raise DataError(f"{len(excerpts)} training windows make fewer batches than the {world} "
                            "processes; use more data, a smaller batch or fewer processes.")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _plan(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        n, b = len(self._group_of), self.batch_size
        if not self.hard_negatives:
            order = rng.permutation(n)
            batches = [order[i : i + b] for i in range(0, n, b)]
        else:
            by_group = np.argsort(self._group_of, kind="stable")
            bounds = np.flatnonzero(np.diff(self._group_of[by_group])) + 1
            groups = [rng.permutation(g) for g in np.split(by_group, bounds)]
            batches, current = [], []
            for g in (groups[i] for i in rng.permutation(len(groups))):
                if current and len(current) + len(g) > b:
                    batches.append(np.array(current))
                    current = []
                while len(g) > b:
                    batches.append(g[:b])
                    g = g[b:]
                current.extend(g.tolist())
            batches.append(np.array(current, dtype=np.int64))
        # One-window batches teach nothing through CLIP and break batch norm.
        batches = [x for x in batches if len(x) >= 2]
        return batches[: len(batches) - len(batches) % self.world]

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self._plan()[self.rank :: self.world])

    def __len__(self) -> int:
        return len(self._plan()) // self.world


def validation_split(windows: WindowSet, train_index: np.ndarray, subjects=None) -> tuple[np.ndarray, np.ndarray]:
    """(fit, validation) indices of the training windows ``train_index``: validation = the
    windows of ``subjects`` (None: the last training subject in sorted order; empty: no
    validation), fit = the rest. Whole subjects, not a share of each one's sessions: the test
    asks how the model does on people it never heard, and a held-out training subject asks
    the same of the training data, where windows of known people would reward memorising
    them and stop late. Only training windows can be chosen, so a test subject or track never
    validates."""
    train_index = np.asarray(train_index)
    names = sorted(set(windows.subject[train_index].tolist()))
    if subjects is None:
        if len(names) < 2:
            raise DataError(f"the training windows are all {names[0]}'s, so no training subject is left to "
                            "validate on; add subjects or train without validation (--val-subjects with no names).")
        subjects = names[-1:]
    subjects = list(subjects)
    unknown = sorted(set(subjects) - set(names))
    if unknown:
        raise DataError(f"validation subjects {unknown} are not training subjects (held out for the test, or not "
                        f"in the data set); choose among {names}.")
    if subjects and set(subjects) == set(names):
        raise DataError(f"validating on every training subject ({', '.join(names)}) leaves none to train on; "
                        "validate on fewer.")
    validate = np.isin(windows.subject[train_index], subjects)
    return train_index[~validate], train_index[validate]


def hold_out(windows: WindowSet, subjects=(), tracks=()) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: test = windows of the held-out subjects *and* tracks (either
    filter may be empty = any), train = windows of neither (nothing of a held-out subject
    or track is seen in training)."""
    subjects, tracks = list(subjects), list(tracks)
    for name, wanted, column in (("subjects", subjects, windows.subject), ("tracks", tracks, windows.track)):
        unknown = sorted(set(wanted) - set(column.tolist()))
        if unknown:
            raise DataError(f"held-out {name} {unknown} are not in the data set; it has "
                            f"{sorted(set(column.tolist()))}.")
    in_subject = np.isin(windows.subject, subjects)
    in_track = np.isin(windows.track, tracks)
    test = (in_subject | (not subjects)) & (in_track | (not tracks)) if (subjects or tracks) else np.zeros(len(windows), bool)
    train = ~in_subject & ~in_track
    if not train.any():
        raise DataError("holding out these subjects and tracks leaves no training windows; hold out fewer.")
    return np.flatnonzero(train), np.flatnonzero(test)
