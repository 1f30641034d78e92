"""``bgm2pose learnability``: probes of pose from features on unseen subjects, and the size
of the pose's acoustic signature on the data set's rig; with several data sets, a table of
what each rig's physics brings (each named by how its rig differs from the first's)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bgm2pose.models.data import load_windows
from bgm2pose.models.learnability import (
    MLP_EPOCHS, PROBES, ProbeResult, comparison_markdown, leave_one_subject_out, report_markdown,
)
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.session import find_sessions, read_session
from bgm2pose.sensing.sim import sensitivity
from bgm2pose.sensing.sim.rig import Rig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("datasets", type=Path, nargs="+", metavar="dataset",
                   help="folder of session folders (bgm2pose simulate); with several, the "
                        "first is reported in full and a table compares the probes on all, "
                        "each labelled by its rig's differences from the first's (e.g. the "
                        "same data set simulated with another --rig)")
    p.add_argument("--alpha", type=float, default=10.0,
                   help="ridge strength, relative to the mean feature variance (default: %(default)s)")
    p.add_argument("--mlp-epochs", type=int, default=MLP_EPOCHS,
                   help="training epochs of the MLP probe per held-out subject; 0 runs the "
                        "ridge probes only, minutes instead of hours on a large data set "
                        "(default: %(default)s)")
    p.add_argument("--body-paths", action="store_true",
                   help="also the pose's signature with the direct sound only meeting the body "
                        "and with each surface's first-order paths left out in turn, on the "
                        "first data set's rig and subject: what each path brings, without a "
                        "data set per variant")
    p.add_argument("--out", type=Path,
                   help="markdown report (default: <first dataset>/learnability.md)")


def run(args: argparse.Namespace) -> int:
    if args.mlp_epochs < 0:
        raise UserError(f"--mlp-epochs {args.mlp_epochs} must be 0 (ridge probes only) or more")
    probed = [_probe(dataset, args) for dataset in args.datasets]
    first, folders, results = probed[0]
    text = report_markdown(results, f"Learnability of pose from features: {first}",
                           args.alpha, args.mlp_epochs)
    if len(probed) > 1:
        base_rig = _rig_settings(folders[0])
        rows = [(f"`{dataset}`" + _difference(base_rig, _rig_settings(f[0])), r)
                for dataset, f, r in probed]
        comparison = ("\n## Data sets compared\n\nThe same probes on each data set "
                      "(rigs as they differ from the first's):\n\n" + comparison_markdown(rows))
        head, rest = text.split("\n## Summary", 1)
        text = head + comparison + "\n## Summary" + rest
    text += _signature_section(folders[0], args.body_paths)
    out = args.out or first / "learnability.md"
    out.write_text(text)
    print(text)
    print(f"learnability: wrote {out}")
    return 0


def _probe(dataset: Path, args: argparse.Namespace
           ) -> tuple[Path, list[Path], list[ProbeResult]]:
    folders = find_sessions(dataset)
    if not folders:
        raise UserError(f"no session folders under {dataset}; create some with 'bgm2pose simulate'")
    # The data set's window cache, as training's: a second report on it costs the probes only.
    windows = load_windows(dataset)
    if len(set(windows.subject)) < 2:
        raise UserError(f"the probe holds out one subject at a time and needs sessions of at "
                        f"least two subjects; {dataset} has one: simulate more subjects")
    per_track: dict[str, set] = {}
    for subject, track in set(zip(windows.subject.tolist(), windows.track.tolist())):
        per_track.setdefault(track, set()).add(subject)
    if min(len(s) for s in per_track.values()) < 3:
        print(f"learnability: warning: some tracks of {dataset} were played by fewer than 3 "
              "subjects; with a subject held out, their excerpts have one training session or "
              "none, so the excerpt probes see no body signature there", file=sys.stderr)
    with tqdm(total=len(set(windows.subject)), desc="held-out subjects", unit="subject") as bar:
        results = leave_one_subject_out(np.asarray(windows.base), np.asarray(windows.poses),
                                        windows.subject, windows.excerpt, alpha=args.alpha,
                                        mlp_epochs=args.mlp_epochs,
                                        probes=tuple(p for p in PROBES
                                                     if args.mlp_epochs or p[1] == "ridge"),
                                        channel=np.asarray(windows.channel),
                                        progress=lambda _: bar.update())
    return dataset, folders, results


def _rig_settings(folder: Path) -> dict:
    return read_session(folder).info.rig or {}


def _difference(base: dict, rig: dict) -> str:
    """`` (name value, ...)`` for each rig setting of ``rig`` that differs from ``base``."""
    changed = [f"{k} {_plain(v)}" for k, v in rig.items() if base.get(k) != v]
    return f" ({', '.join(changed)})" if changed else ""


def _plain(value) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def _signature_section(folder: Path, variants: bool = False) -> str:
    """How far canonical pose changes, and changes the target cannot see, move the features
    on the rig and subject of the data set's first session (and, with ``variants``, on that
    rig with fewer paths meeting the body)."""
    session = read_session(folder)
    if not session.info.rig or session.poses is None:
        return ("\n(No acoustic signature section: the first session, "
                f"`{folder.name}`, was not simulated.)\n")
    subject = session.info.subject
    rig, rest = Rig.from_dict(session.info.rig), sensitivity.rest_pose(session.poses)
    size = dict(height=float(subject.get("height", 1.75)), build=float(subject.get("build", 1.0)))
    changes = sensitivity.signature(rig, rest, **size)
    text = ("\n## The pose's acoustic signature on this rig\n\n"
            f"Rig and subject of `{folder.name}`, standing still in their rest pose; each "
            "speaker plays white noise (about -26 dBFS). Mean absolute change of the "
            "time-averaged log-mel per band "
            "(`bgm2pose.sensing.sim.sensitivity`):\n\n" + sensitivity.markdown(changes))
    if not variants:
        return text
    rows = [(label, changes if variant == rig else sensitivity.signature(variant, rest, **size))
            for label, variant in tqdm(sensitivity.body_path_variants(rig),
                                       desc="rig variants", unit="rig")]
    return (text + "\n## What each path brings\n\nThe same changes on this rig with fewer "
            "of the room's paths meeting the body (`Rig.body_paths`): mean absolute log-mel "
            "change over W, X, Y, Z from 1 to 12 kHz, in dB (the last column: Z, the mic's up "
            "axis, alone):\n\n" + sensitivity.variants_markdown(rows))
