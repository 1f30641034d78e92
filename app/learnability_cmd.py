"""``bgm2pose learnability``: linear probe of pose from features on unseen subjects."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bgm2pose.models.learnability import leave_one_subject_out, report_markdown
from bgm2pose.models.windows import session_windows
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.session import find_sessions, read_session


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", type=Path, help="folder of session folders (bgm2pose simulate)")
    p.add_argument("--alpha", type=float, default=10.0,
                   help="ridge strength, relative to the mean feature variance (default: %(default)s)")
    p.add_argument("--out", type=Path, help="markdown report (default: <dataset>/learnability.md)")


def run(args: argparse.Namespace) -> int:
    folders = find_sessions(args.dataset)
    if not folders:
        raise UserError(f"no session folders under {args.dataset}; create some with 'bgm2pose simulate'")
    parts = [session_windows(read_session(f)) for f in tqdm(folders, desc="features", unit="session")]
    subjects = np.concatenate([[w.subject] * len(w) for w in parts])
    if len(set(subjects)) < 2:
        raise UserError("the probe holds out one subject at a time and needs sessions of at "
                        "least two subjects; simulate more subjects")
    base = np.concatenate([w.base for w in parts])
    poses = np.concatenate([w.poses for w in parts])
    excerpts = np.concatenate([[f"{w.track}@{s}" for s in w.start_sample] for w in parts])
    results = leave_one_subject_out(base, poses, subjects, excerpts, alpha=args.alpha)
    text = report_markdown(results, f"Learnability of pose from features: {args.dataset}",
                           args.alpha)
    out = args.out or args.dataset / "learnability.md"
    out.write_text(text)
    print(text)
    print(f"learnability: wrote {out}")
    return 0
