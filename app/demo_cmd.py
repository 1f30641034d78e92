"""``bgm2pose demo``: the pipeline end to end on the built-in virtual rig.

Until the live engine and the trained demo model land, the demo renders a short take of a
virtual person with the virtual rig, writes it as a session folder, and extracts the
features the network reads from it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bgm2pose.app.features_cmd import run as run_features
from bgm2pose.sensing.sim.dataset import SimulationPlan, plan_jobs, render_job


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=12.0,
                   help="length of the simulated take (default: %(default)s)")
    p.add_argument("--subject", default="S1", help="virtual subject (default: %(default)s)")
    p.add_argument("--track", default="jazz-0000",
                   help="generated track <genre>-<seed> (default: %(default)s)")
    p.add_argument("--out", type=Path,
                   help="folder for the session (default: a temporary folder)")


def run(args: argparse.Namespace) -> int:
    out = args.out or Path(tempfile.mkdtemp(prefix="bgm2pose-demo-"))
    plan = SimulationPlan(subjects=(args.subject,), tracks=(args.track,),
                          minutes=args.seconds / 60)
    (job,) = plan_jobs(plan)
    print(f"demo: rendering {args.seconds:.0f} s of {job.track.name} heard by the virtual "
          f"ambisonic mic while {job.subject.name} ({job.subject.height:.2f} m) moves "
          "between the speakers and the mic")
    folder = render_job(job, out, plan)
    print(f"demo: session written to {folder}")
    return run_features(argparse.Namespace(session=folder, out=None, hop_frames=12))
