"""``bgm2pose learnability``: probes of pose from features on unseen subjects, and the size
of the pose's acoustic signature on the data set's rig."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bgm2pose.models.learnability import MLP_EPOCHS, leave_one_subject_out, report_markdown
from bgm2pose.models.windows import session_windows
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.session import find_sessions, read_session
from bgm2pose.sensing.sim import sensitivity
from bgm2pose.sensing.sim.rig import Rig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", type=Path, help="folder of session folders (bgm2pose simulate)")
    p.add_argument("--alpha", type=float, default=10.0,
                   help="ridge strength, relative to the mean feature variance (default: %(default)s)")
    p.add_argument("--mlp-epochs", type=int, default=MLP_EPOCHS,
                   help="training epochs of the MLP probe per held-out subject "
                        "(default: %(default)s)")
    p.add_argument("--out", type=Path, help="markdown report (default: <dataset>/learnability.md)")


def run(args: argparse.Namespace) -> int:
    if args.mlp_epochs < 1:
        raise UserError(f"--mlp-epochs {args.mlp_epochs} must be at least 1")
    folders = find_sessions(args.dataset)
    if not folders:
        raise UserError(f"no session folders under {args.dataset}; create some with 'bgm2pose simulate'")
    parts = [session_windows(read_session(f)) for f in tqdm(folders, desc="features", unit="session")]
    subjects = np.concatenate([[w.subject] * len(w) for w in parts])
    if len(set(subjects)) < 2:
        raise UserError("the probe holds out one subject at a time and needs sessions of at "
                        "least two subjects; simulate more subjects")
    per_track: dict[str, set] = {}
    for w in parts:
        per_track.setdefault(w.track, set()).add(w.subject)
    if min(len(s) for s in per_track.values()) < 3:
        print("learnability: warning: some tracks were played by fewer than 3 subjects; with a "
              "subject held out, their excerpts have one training session or none, so the "
              "excerpt probes see no body signature there", file=sys.stderr)
    base = np.concatenate([w.base for w in parts])
    poses = np.concatenate([w.poses for w in parts])
    excerpts = np.concatenate([[f"{w.track}@{s}" for s in w.start_sample] for w in parts])
    with tqdm(total=len(set(subjects)), desc="held-out subjects", unit="subject") as bar:
        results = leave_one_subject_out(base, poses, subjects, excerpts, alpha=args.alpha,
                                        mlp_epochs=args.mlp_epochs,
                                        progress=lambda _: bar.update())
    text = report_markdown(results, f"Learnability of pose from features: {args.dataset}",
                           args.alpha, args.mlp_epochs) + _signature_section(folders[0])
    out = args.out or args.dataset / "learnability.md"
    out.write_text(text)
    print(text)
    print(f"learnability: wrote {out}")
    return 0


def _signature_section(folder: Path) -> str:
    """How far canonical pose changes, and changes the target cannot see, move the features
    on the rig and subject of the data set's first session."""
    session = read_session(folder)
    if not session.info.rig or session.poses is None:
        return ("\n(No acoustic signature section: the first session, "
                f"`{folder.name}`, was not simulated.)\n")
    subject = session.info.subject
    changes = sensitivity.signature(
        Rig.from_dict(session.info.rig), sensitivity.rest_pose(session.poses),
        height=float(subject.get("height", 1.75)), build=float(subject.get("build", 1.0)))
    return ("\n## The pose's acoustic signature on this rig\n\n"
            f"Rig and subject of `{folder.name}`, standing still in their rest pose; each "
            "speaker plays white noise (about -26 dBFS). Mean absolute change of the "
            "time-averaged log-mel per band "
            "(`bgm2pose.sensing.sim.sensitivity`):\n\n" + sensitivity.markdown(changes))
