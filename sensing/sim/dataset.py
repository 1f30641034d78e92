"""Synthetic AMPL-like data sets: a plan of sessions (subject x track x take), sharded,
each rendered by the virtual rig and written as a session folder.

Tracks are generated music (``TrackSpec``, by name) or the user's own music files
(``MusicFile``: a track named after the file's stem, decoded to 48 kHz stereo as the player
decodes it), so a model can be tried on a playlist before a rig is built.

Every session plays its track from the start, so windows at the same offset of the same
track share the music excerpt across subjects: what BGM hard-negative sampling needs.
Each job's randomness derives from (seed, job key) only, so a job renders the same bytes
whichever shard or machine runs it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from bgm2pose.sensing.audiofile import check_music, read_music
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.session import SESSION_FILE, SessionInfo, write_session
from bgm2pose.sensing.sim.motion import SUBJECTS, Subject, generate_motion
from bgm2pose.sensing.sim.music import TrackSpec, generate
from bgm2pose.sensing.sim.render import BACKGROUND_NOISE_DB, SENSOR_NOISE_DB, render_session
from bgm2pose.sensing.sim.rig import Rig

# The AMPL recordings used three ambient tracks and one jazz track.
DEFAULT_TRACKS = ("ambient-0000", "ambient-0001", "ambient-0002", "jazz-0000")


class DatasetError(UserError, ValueError):
    """A data-set request that cannot be carried out."""


@dataclass(frozen=True)
class MusicFile:
    """A music file as a data-set track: its first ``seconds``, named after the file."""

    path: Path
    seconds: float

    @classmethod
    def of(cls, path: str | Path, minutes: float | None = None) -> MusicFile:
        """The whole file, or its first ``minutes`` if it is longer; ``AudioFileError`` (one
        sentence: the file, the cause, the fix) if it cannot be played."""
        length = check_music(path).duration_s
        return cls(Path(path), length if minutes is None else min(minutes * 60, length))

    @property
    def name(self) -> str:
        return self.path.stem

    def audio(self) -> np.ndarray:
        """(2, N) float32 at 48 kHz, N = ``seconds`` of samples (or the file's, if the
        resampler gave one fewer)."""
        return read_music(self.path, self.seconds)


@dataclass(frozen=True)
class SimulationPlan:
    subjects: tuple[str, ...] = tuple(s.name for s in SUBJECTS)
    tracks: tuple[str, ...] = DEFAULT_TRACKS  # generated tracks, by name
    music: tuple[MusicFile, ...] = ()  # music files: replace the generated tracks if given
    minutes: float = 2.0  # of each generated track
    takes: int = 1
    seed: int = 0
    randomise_rig: bool = False
    # The rig of every session, or the base the randomised rigs vary around.
    rig: Rig = Rig()
    sensor_noise_db: float = SENSOR_NOISE_DB
    background_noise_db: float = BACKGROUND_NOISE_DB


@dataclass(frozen=True)
class SessionJob:
    key: str  # folder name, unique in the plan: <subject>_<track>_t<take>
    subject: Subject
    track: TrackSpec | MusicFile
    take: int
    seed: int  # derived from (plan seed, key)
    rig: Rig


def _derived_seed(seed: int, key: str) -> int:
    digest = hashlib.sha256(f"{seed}/{key}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def randomised_rig(rng: np.random.Generator, base: Rig = Rig()) -> Rig:
    """A plausible variation of ``base``: room size and RT60, speaker spread and distance,
    heights; the sensing area stays between speakers and microphone."""
    room = np.asarray(base.room_size) * rng.uniform([0.85, 0.9, 0.85], [1.3, 1.2, 1.3])
    cx = room[0] / 2
    mic_z = rng.uniform(1.2, 1.8)
    distance = rng.uniform(2.6, 3.4)
    spread = rng.uniform(0.35, 0.7)
    height = rng.uniform(1.0, 1.4)
    spk_z = mic_z + distance
    return Rig(
        room_size=tuple(room),
        rt60=float(rng.uniform(0.3, 0.8)),
        speaker_left=(cx + spread, height + rng.uniform(-0.1, 0.1), spk_z),
        speaker_right=(cx - spread, height + rng.uniform(-0.1, 0.1), spk_z),
        mic=(cx + rng.uniform(-0.1, 0.1), height + rng.uniform(-0.1, 0.1), mic_z),
        area_center=(cx, 0.0, mic_z + distance / 2),
        area_radius=base.area_radius,
        speaker_directivity_db=float(rng.uniform(3.0, 9.0)),
        speaker_gain_db=base.speaker_gain_db,
    )


def plan_jobs(plan: SimulationPlan) -> list[SessionJob]:
    by_name = {s.name: s for s in SUBJECTS}
    unknown = [s for s in plan.subjects if s not in by_name]
    if unknown:
        raise DatasetError(f"unknown subjects {unknown}; choose from {', '.join(by_name)}")
    if plan.minutes <= 0 or plan.takes < 1:
        raise DatasetError("minutes must be positive and takes at least 1")
    tracks = plan.music or [_generated(name, plan.minutes) for name in plan.tracks]
    names: dict[str, Path] = {}  # session folders are keyed by track name: no two alike
    for track in plan.music:
        if track.name in names:
            raise DatasetError(f"music files {names[track.name]} and {track.path} would both be "
                               f"track {track.name!r} (tracks are named after their file); "
                               "give each file once, renaming one of two of the same name")
        names[track.name] = track.path
    jobs = []
    for subject in plan.subjects:
        for track in tracks:
            for take in range(plan.takes):
                key = f"{subject}_{track.name}_t{take}"
                seed = _derived_seed(plan.seed, key)
                rig = (randomised_rig(np.random.default_rng(seed), plan.rig) if plan.randomise_rig
                       else plan.rig)
                jobs.append(SessionJob(key, by_name[subject], track, take, seed, rig))
    return jobs


def _generated(name: str, minutes: float) -> TrackSpec:
    try:
        return replace(TrackSpec.from_name(name), seconds=minutes * 60)
    except ValueError as exc:
        raise DatasetError(f"bad track name {name!r}: {exc}") from None


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise DatasetError(f"shard {text!r} is not of the form i/n (e.g. 0/4)") from None
    if not 0 <= i < n:
        raise DatasetError(f"shard {text!r} needs 0 <= i < n")
    return i, n


def shard(jobs: list[SessionJob], index: int, count: int) -> list[SessionJob]:
    """Round-robin split: shards are disjoint and together cover every job."""
    return jobs[index::count]


def render_job(job: SessionJob, out_root: Path, plan: SimulationPlan,
               progress: Callable[[int, int], None] | None = None) -> Path:
    """Render one session and write it; returns its folder."""
    seconds = job.track.seconds
    music = generate(job.track) if isinstance(job.track, TrackSpec) else job.track.audio()
    joints = generate_motion(job.subject, seconds, seed=job.seed, rig=job.rig)
    mic = render_session(
        job.rig, music, joints,
        height=job.subject.height, build=job.subject.build,
        sensor_noise_db=plan.sensor_noise_db, background_noise_db=plan.background_noise_db,
        seed=job.seed, progress=progress,
    )
    info = SessionInfo(
        rig=job.rig.to_dict(),
        subject={"name": job.subject.name, "height": job.subject.height, "build": job.subject.build},
        track=job.track.name,
        provenance={
            "tool": "bgm2pose simulate",
            "seed": job.seed,
            "plan_seed": plan.seed,
            "take": job.take,
            **({} if isinstance(job.track, TrackSpec)
               else {"music_file": str(job.track.path.absolute())}),
            "sensor_noise_db": plan.sensor_noise_db,
            "background_noise_db": plan.background_noise_db,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    return write_session(out_root / job.key, info, mic, music, joints)


def is_done(job: SessionJob, out_root: Path) -> bool:
    return (out_root / job.key / SESSION_FILE).is_file()
