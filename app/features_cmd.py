"""``bgm2pose features``: the AMPL features of a session folder, saved as .npz."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bgm2pose.models.windows import session_windows
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.features import CHANNELS
from bgm2pose.sensing.session import read_session


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", type=Path, help="session folder (session.toml, mic.flac, ...)")
    p.add_argument("-o", "--out", type=Path,
                   help="output .npz (default: <session>/features.npz)")
    p.add_argument("--hop-frames", type=int, default=12,
                   help="window hop in 50 ms frames; 12 = non-overlapping 0.6 s windows "
                        "(default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    session = read_session(args.session)
    windows = session_windows(session, hop_frames=args.hop_frames)
    if not len(windows):
        with_poses = "" if session.poses is None else " with poses"
        raise UserError(f"session {args.session} holds no whole 0.6 s window of audio{with_poses} "
                        f"(its mic and reference share {windows.seconds:.2f} s); record or "
                        "simulate a longer session")
    out = args.out or args.session / "features.npz"
    # An unlabelled session's windows carry placeholder poses, which must not pass for labels.
    labels = {} if session.poses is None else {"poses": windows.poses}
    np.savez_compressed(
        out, base=windows.base, start_sample=windows.start_sample,
        channels=np.array(CHANNELS), subject=windows.subject, track=windows.track, **labels,
    )
    b = windows.base
    print(f"features: {len(windows)} windows of {b.shape[1:]} (channel, frame, mel) "
          f"from {windows.seconds:.1f} s of {args.session}")
    if session.poses is None:
        print("features: the session has no pose labels (recorded without a teacher), so the "
              "file holds no poses")
    for c, name in enumerate(CHANNELS):
        v = b[:, c]
        print(f"  {name:12s} mean {v.mean():9.3f}  std {v.std():8.3f}  "
              f"min {v.min():9.3f}  max {v.max():9.3f}")
    print(f"features: wrote {out}")
    return 0
