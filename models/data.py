"""Training data: every window of a data set (memory-mapped from its cache), splits, and the
batch sampler.

- A data set is a folder of session folders (``bgm2pose simulate`` or recordings) or an
  AMPL preprocessed CSV. ``load_windows`` returns one ``WindowSet``: base features
  (N, 9, 12, 128), channel features (N, 17, 12, 128), normalised poses (N, 12, 63) and, per
  window, subject, track, genre and music excerpt. ``model_features`` gives the ones a model
  reads (``models.inputs``).
- Cache, so a run spends its time in the network, not in decoding audio or computing
  features: the whole data set's features and poses are saved once as
  ``<data set>/.windows/set-<key>/`` (``base.npy``, ``channel.npy``, ``poses.npy``, ``labels.npz``,
  ``meta.json``) and every later load (train, evaluate, benchmark workers, DDP ranks)
  memory-maps them: it takes no time, and processes share the pages. The key hashes the
  session files' *content* (each file hashed once, remembered by size and mtime in
  ``<session>/.windows/digests.json``), the session folders' names and
  ``feature_settings`` (hop, STFT and mel settings, ``CACHE_VERSION``): an edited, added or
  removed session or another hop is a new key; a copied data set or a touched file is not.
  Writing a set removes the sets of the same settings made from older data. Building a set
  reads each session's own cache, ``<session>/.windows/<key>.npz`` (same key scheme), so a
  grown data set computes only its new sessions. A read-only data set is not cached and is
  loaded into memory. An AMPL CSV is read as it is: its windows are feature files already,
  listed by the CSV, so there is nothing to decode or compute.
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
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from tqdm import tqdm

from bgm2pose.models.ampl import read_ampl
from bgm2pose.models.inputs import input_channels
from bgm2pose.models.windows import session_windows
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.channel import CHANNELS as CHANNEL_CHANNELS
from bgm2pose.sensing.features import CHANNELS, FRAMES_PER_WINDOW, HOP, N_FFT, N_MELS, SAMPLE_RATE, FeatureStats
from bgm2pose.sensing.session import MIC_FILE, POSES_FILE, REFERENCE_FILE, SESSION_FILE, find_sessions, read_session

# 2: keys of content hashes and feature settings; data-set caches beside the session caches.
# 3: channel features (sensing.channel) beside the base features.
# 4: channel differences weighted by how well the music excited each bin.
# 5: a teacher's labels scaled by the session's hip-spine length (models.windows).
CACHE_VERSION = 5
CACHE_DIR = ".windows"
SESSION_FILES = (SESSION_FILE, MIC_FILE, REFERENCE_FILE, POSES_FILE)
DIGESTS_FILE = "digests.json"
SET_PREFIX = "set-"
SET_META = "meta.json"
SET_LABELS = "labels.npz"
LABEL_FIELDS = ("subject", "track", "genre", "excerpt")


class DataError(UserError, ValueError):
    """A data set or a selection of it that training cannot use."""


@dataclass
class WindowSet:
    base: np.ndarray  # (N, 9, 12, 128) float32 base features; read-only when memory-mapped
    # (N, 17, 12, 128) float32 channel features (sensing.channel); (N, 0, 12, 128) for AMPL,
    # whose release has only the paper's features.
    channel: np.ndarray
    poses: np.ndarray  # (N, 12, 63) float32, normalised per frame; read-only when memory-mapped
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
            # The array itself, not a bytes copy: a memory-mapped data set may not fit in memory twice.
            h.update(a if a.dtype.kind not in "OU" else "\0".join(map(str, a.ravel())).encode())
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


def feature_settings(hop_frames: int) -> dict:
    """Everything besides the session files that a window's arrays depend on; a change to any
    of it gives every cache a new key."""
    return {"cache_version": CACHE_VERSION, "hop_frames": hop_frames, "sample_rate": SAMPLE_RATE,
            "n_fft": N_FFT, "stft_hop": HOP, "n_mels": N_MELS, "frames_per_window": FRAMES_PER_WINDOW,
            "channels": list(CHANNELS), "channel_channels": list(CHANNEL_CHANNELS)}


def _key(*parts) -> str:
    return hashlib.blake2b(json.dumps(parts, sort_keys=True).encode(), digest_size=12).hexdigest()


def _hash_file(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    """Write ``path`` through a unique temporary name: several processes (DDP ranks, benchmark
    workers) may write it at once. A read-only data set is left as it is."""
    try:
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        pass


def _digests(folder: Path) -> dict[str, str]:
    """Content hash of each file of the session ``folder``. Hashes are remembered in
    ``folder/.windows/digests.json`` under the file's size and modification time, so an
    unchanged file is read once, and a file rewritten with the same content (a copied data
    set) keeps its caches."""
    memo_path = folder / CACHE_DIR / DIGESTS_FILE
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    digests, changed = {}, False
    for name in SESSION_FILES:
        path = folder / name
        if not path.is_file():
            continue
        st = path.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        if memo.get(name, [])[:2] != stamp:
            memo[name], changed = [*stamp, _hash_file(path)], True
        digests[name] = memo[name][2]
    if changed:
        _write_atomic(memo_path, json.dumps(memo))
    return digests


def _compute_session(folder: Path, hop_frames: int, cache: Path) -> dict[str, np.ndarray]:
    """A session's windows from its audio and poses, saved to ``cache`` when it can be."""
    session = read_session(folder)
    if session.poses is None:
        raise DataError(f"session {folder} has no pose labels (it was recorded without a "
                        "teacher), so it cannot train or evaluate a model; move unlabelled "
                        "sessions out of the data set folder.")
    w = session_windows(session, hop_frames)
    music_start = w.start_sample - int(round(session.info.latency_samples))
    arrays = {"base": w.base, "channel": w.channel, "poses": w.poses, "subject": np.array(w.subject), "track": np.array(w.track),
              "music_start": music_start}
    try:
        cache.parent.mkdir(exist_ok=True)
        tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, cache)
    except OSError:
        pass  # read-only data set: windows are recomputed next time
    return arrays


def _labels(arrays) -> dict[str, np.ndarray]:
    """Per-window labels of one session's arrays (computed, or an open cache file)."""
    subject, track, music_start = str(arrays["subject"]), str(arrays["track"]), arrays["music_start"]
    n = len(music_start)
    return {"subject": np.full(n, subject), "track": np.full(n, track), "genre": np.full(n, genre_of(track)),
            "excerpt": np.array([f"{track}@{s}" for s in music_start], dtype=str)}


def _from_sessions(root: Path, hop_frames: int, progress: bool) -> WindowSet:
    folders = find_sessions(root)
    if not folders:
        raise DataError(f"no session folders under {root}; create some with 'bgm2pose simulate' "
                        "or pass an AMPL CSV.")
    settings = feature_settings(hop_frames)
    caches = [f / CACHE_DIR / f"{_key(settings, _digests(f))}.npz" for f in folders]
    key = _key(settings, [[str(f.relative_to(root)), c.stem] for f, c in zip(folders, caches)])
    meta = {"settings": settings, "sessions": len(folders)}
    found = _open_set(root / CACHE_DIR, key)
    if found is not None:
        return found
    # First pass: features of the sessions not cached yet, and every window's labels; only a
    # session that could not be cached stays in memory.
    labels, unsaved = [], {}
    for i, (folder, cache) in enumerate(tqdm(list(zip(folders, caches)), desc="windows", unit="session",
                                             disable=not progress)):
        if cache.is_file():
            with np.load(cache) as z:
                labels.append(_labels(z))
        else:
            arrays = _compute_session(folder, hop_frames, cache)
            labels.append(_labels(arrays))
            if not cache.is_file():
                unsaved[i] = arrays
    if not sum(len(part["subject"]) for part in labels):
        raise DataError(f"the sessions under {root} are all shorter than one 0.6 s window with poses.")

    def arrays():
        for i, cache in enumerate(caches):
            if i in unsaved:
                yield unsaved[i]["base"], unsaved[i]["channel"], unsaved[i]["poses"]
            else:
                with np.load(cache) as z:
                    yield z["base"], z["channel"], z["poses"]

    return _cached_set(root / CACHE_DIR, key, meta, arrays, labels, progress)


def _from_ampl(csv_path: Path) -> WindowSet:
    a = read_ampl(csv_path)
    return WindowSet(base=a.base, channel=np.zeros((len(a.base), 0, FRAMES_PER_WINDOW, N_MELS), np.float32),
                     poses=a.poses, subject=a.testee, track=a.music_type,
                     genre=a.music_type.copy(),
                     excerpt=np.array([f"{m}@{lab}" for m, lab in zip(a.music_type, a.label)]))


def _open_set(folder: Path, key: str) -> WindowSet | None:
    """The cached data set ``key`` in ``folder``, its arrays memory-mapped; None if absent."""
    path = folder / f"{SET_PREFIX}{key}"
    if not (path / SET_META).is_file():
        return None
    with np.load(path / SET_LABELS) as z:
        labels = {name: z[name] for name in LABEL_FIELDS}
    return WindowSet(base=np.load(path / "base.npy", mmap_mode="r"),
                     channel=np.load(path / "channel.npy", mmap_mode="r"),
                     poses=np.load(path / "poses.npy", mmap_mode="r"), **labels)


def _cached_set(folder: Path, key: str, meta: dict,
                arrays: Callable[[], Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]],
                labels: list[dict], progress: bool) -> WindowSet:
    """Write the data set ``key`` (features and poses as .npy, the labels, ``meta``) into
    ``folder`` and open it memory-mapped; ``arrays()`` yields each part's (base, channel, poses) in the
    order of ``labels``. Sets of the same settings made from other data are removed. A data
    set that cannot be written is returned in memory."""
    # Plain str arrays: np.load reads them back without pickle.
    label_arrays = {name: np.concatenate([part[name] for part in labels]).astype(str) for name in LABEL_FIELDS}
    n = len(label_arrays["subject"])
    path = folder / f"{SET_PREFIX}{key}"
    tmp = folder / f"{SET_PREFIX}{key}.{os.getpid()}.tmp"
    try:
        tmp.mkdir(parents=True)
        shapes = {"base": (len(CHANNELS), FRAMES_PER_WINDOW, N_MELS),
                  "channel": (len(CHANNEL_CHANNELS), FRAMES_PER_WINDOW, N_MELS), "poses": (FRAMES_PER_WINDOW, 63)}
        out = [np.lib.format.open_memmap(tmp / f"{name}.npy", "w+", np.float32, (n, *shape))
               for name, shape in shapes.items()]
        at = 0
        for part in tqdm(arrays(), total=len(labels), desc="caching", unit="part", disable=not progress):
            for array, values in zip(out, part):
                array[at : at + len(values)] = values
            at += len(part[0])
        for array in out:
            array.flush()
        del out
        np.savez(tmp / SET_LABELS, **label_arrays)
        (tmp / SET_META).write_text(json.dumps({**meta, "windows": n}, indent=1) + "\n")
        os.replace(tmp, path)
    except OSError:
        # Read-only or full disk; or another process wrote the same set first (the rename
        # onto its folder fails), which is then the one to use.
        shutil.rmtree(tmp, ignore_errors=True)
        found = _open_set(folder, key)
        if found is not None:
            return found
        base, channel, poses = (np.concatenate(column) for column in zip(*arrays()))
        return WindowSet(base=base, channel=channel, poses=poses, **label_arrays)
    for old in folder.glob(f"{SET_PREFIX}*"):
        if old != path and not old.name.endswith(".tmp") and _superseded(old, meta):
            shutil.rmtree(old, ignore_errors=True)
    return _open_set(folder, key)


def _superseded(folder: Path, meta: dict) -> bool:
    """Whether the cached set ``folder`` has the settings of ``meta``, so the data it was made
    from has changed since."""
    try:
        return json.loads((folder / SET_META).read_text()).get("settings") == meta["settings"]
    except (OSError, ValueError):
        return False


def load_windows(source: str | Path, hop_frames: int = FRAMES_PER_WINDOW, progress: bool = True) -> WindowSet:
    """All annotated windows of a data set folder (sessions; features and poses memory-mapped
    from the data set's cache, see the module docstring) or an AMPL CSV."""
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


def model_features(windows: WindowSet, rows, inputs: str = "paper") -> np.ndarray:
    """The features a model reading ``inputs`` (``models.inputs``) takes, of the windows ``rows``:
    (n, C, 12, 128) float32."""
    input_channels(inputs)
    if inputs != "paper" and windows.channel.shape[1] == 0:
        raise DataError(f"this data set has no channel features (an AMPL release holds only the paper's), "
                        f"so a model reading '{inputs}' inputs cannot use it; train with --inputs paper.")
    if inputs == "paper":
        return windows.base[rows]
    if inputs == "channel":
        return windows.channel[rows]
    return np.concatenate([windows.base[rows], windows.channel[rows]], axis=1)


def fit_stats(windows: WindowSet, train: np.ndarray, inputs: str = "paper") -> FeatureStats:
    """Feature standardisation of a model's inputs from the training windows only."""
    if len(train) == 0:
        raise DataError("the training split is empty; check the subjects and tracks of the split.")
    return FeatureStats.fit(model_features(windows, train, inputs), channels=input_channels(inputs))


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
