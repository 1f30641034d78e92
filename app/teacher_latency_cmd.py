"""``bgm2pose teacher-latency SESSION``: a camera teacher's latency from claps in a session
recorded with ``run --teacher camera`` (``sensing.teacher.latency``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.session import read_session
from bgm2pose.sensing.teacher.latency import heard_claps, measure, seen_claps


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", type=Path,
                   help="session folder recorded with --teacher camera while the person claps a "
                        "few times, a second apart")


def run(args: argparse.Namespace) -> int:
    session = read_session(args.session)
    if session.poses is None:
        raise UserError(f"session {args.session} has no poses to see the claps in; record it "
                        "with --teacher camera while the person claps")
    setting = session.info.provenance.get("teacher", {}).get("latency_setting_s", 0.0)
    info = session.info
    heard = heard_claps(session.mic[0], info.sample_rate)
    # Poses stamped with a latency already taken off would hide that much of it.
    seen = seen_claps(session.poses, info.pose_fps, info.pose_offset_s) + setting
    m = measure(heard, seen)
    print(f"teacher-latency: {m.claps} claps ({m.heard} heard, {m.seen} seen): the camera is "
          f"{m.latency_s * 1000:.0f} ms late (spread {m.spread_s * 1000:.0f} ms); record with "
          f"--teacher-latency {m.latency_s:.3f}")
    return 0
