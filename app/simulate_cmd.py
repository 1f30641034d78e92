"""``bgm2pose simulate``: write a synthetic data set with the virtual rig.

``--music FILE...`` renders the sessions with the user's own music instead of generated
tracks, each file a track named after it. Every file is checked before anything is written
(``audiofile.check_music``): each one that cannot be played is one sentence (file, cause,
fix), and the command exits 2 without creating the output folder.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from bgm2pose.sensing.audiofile import AudioFileError
from bgm2pose.sensing.sim.dataset import (
    DEFAULT_TRACKS, MusicFile, SimulationPlan, is_done, parse_shard, plan_jobs, render_job,
    shard,
)
from bgm2pose.sensing.sim.motion import SUBJECTS
from bgm2pose.sensing.sim.render import BACKGROUND_NOISE_DB, SENSOR_NOISE_DB
from bgm2pose.sensing.sim.rig import read_rig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", type=Path, help="folder to write the sessions into (created)")
    p.add_argument("--subjects", nargs="+", default=[s.name for s in SUBJECTS],
                   help="virtual subjects (default: all, %(default)s)")
    music = p.add_mutually_exclusive_group()
    music.add_argument("--tracks", nargs="+", default=list(DEFAULT_TRACKS),
                       help="generated tracks as <genre>-<seed>, genre ambient or jazz "
                            "(default: %(default)s, the AMPL mix of 3 ambient + 1 jazz)")
    music.add_argument("--music", nargs="+", type=Path, metavar="FILE", default=[],
                       help="your own music files instead of generated tracks (WAV, FLAC, "
                            "OGG, MP3, ... as the playlist reads them; decoded to 48 kHz "
                            "stereo), each a track named after the file, e.g. song.flac -> "
                            "song")
    p.add_argument("--minutes", type=float,
                   help="length of each session in minutes (default: 2 for generated tracks; "
                        "with --music each file's own length, or its first MINUTES if longer)")
    p.add_argument("--takes", type=int, default=1,
                   help="sessions per subject and track (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="data-set seed (default: %(default)s)")
    p.add_argument("--rig", type=Path, metavar="JSON",
                   help="file of rig settings overriding the default rig, e.g. "
                        '{"rt60": 0.2, "speaker_directivity_db": 9}; names as in the [rig] table of '
                        "a session's session.toml (default: the built-in rig)")
    p.add_argument("--randomise-rig", action="store_true",
                   help="vary room, RT60 and speaker/mic placement per session (around --rig)")
    p.add_argument("--sensor-noise-db", type=float, default=SENSOR_NOISE_DB,
                   help="white sensor noise per mic channel, dBFS RMS (default: %(default)s)")
    p.add_argument("--background-noise-db", type=float, default=BACKGROUND_NOISE_DB,
                   help="diffuse background noise, dBFS RMS (default: %(default)s)")
    p.add_argument("--shard", default="0/1", metavar="I/N",
                   help="render only every N-th session starting at I, so N processes or "
                        "machines can split the work (default: %(default)s)")
    p.add_argument("--workers", type=int, default=1,
                   help="parallel processes on this machine (default: %(default)s)")


def _advance(bar: tqdm, sample_rate: int):
    """A render progress callback (samples done, total) that moves ``bar`` in seconds."""
    last = 0

    def step(done: int, total: int) -> None:
        nonlocal last
        bar.update((done - last) / sample_rate)
        last = done

    return step


def _render(args_tuple):
    job, out, plan = args_tuple
    return render_job(job, out, plan)


def run(args: argparse.Namespace) -> int:
    music, problems = [], []
    for path in args.music:  # all of them, so one run names every file to fix
        try:
            music.append(MusicFile.of(path, args.minutes))
        except AudioFileError as exc:
            problems.append(exc)
    for problem in problems:
        print(f"bgm2pose simulate: error: {problem}", file=sys.stderr)
    if problems:
        return 2
    plan = SimulationPlan(
        subjects=tuple(args.subjects), tracks=tuple(args.tracks), music=tuple(music),
        minutes=SimulationPlan.minutes if args.minutes is None else args.minutes,
        takes=args.takes, seed=args.seed, randomise_rig=args.randomise_rig, rig=read_rig(args.rig),
        sensor_noise_db=args.sensor_noise_db, background_noise_db=args.background_noise_db,
    )
    index, count = parse_shard(args.shard)
    jobs = shard(plan_jobs(plan), index, count)
    todo = [j for j in jobs if not is_done(j, args.out)]
    seconds = sum(job.track.seconds for job in todo)
    print(f"simulate: {len(jobs)} sessions in shard {index}/{count}, "
          f"{len(jobs) - len(todo)} already done, {len(todo)} to render "
          f"({seconds / 60:.1f} min of audio) into {args.out}")
    args.out.mkdir(parents=True, exist_ok=True)
    with tqdm(total=seconds, unit="s audio", unit_scale=True, dynamic_ncols=True) as bar:
        if args.workers <= 1:
            for job in todo:
                bar.set_postfix_str(job.key)
                render_job(job, args.out, plan, progress=_advance(bar, job.rig.sample_rate))
        else:
            with ProcessPoolExecutor(args.workers) as pool:
                for job, _ in zip(todo, pool.map(_render, [(j, args.out, plan) for j in todo])):
                    bar.set_postfix_str(job.key)
                    bar.update(job.track.seconds)
    print(f"simulate: done, {len(jobs)} sessions in {args.out}")
    return 0
