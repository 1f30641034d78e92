"""The ``bgm2pose`` command line: one verb per job, each in its own module.

Verb modules are imported only when their verb runs, so ``bgm2pose --help`` stays fast
(torch and Qt take seconds to import). A verb module provides ``add_arguments(parser)``
and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import PackageNotFoundError, version

from bgm2pose.sensing.errors import UserError

# verb -> (module, one-line help, description)
VERBS: dict[str, tuple[str, str, str]] = {
    "demo": (
        "bgm2pose.app.demo_cmd",
        "show the pipeline end to end on the built-in virtual rig",
        "Simulate a short take on the built-in virtual rig (a virtual person moving between "
        "two speakers playing generated music, heard by a virtual ambisonic mic), extract "
        "the AMPL features from it and report what the model input looks like.",
    ),
    "simulate": (
        "bgm2pose.app.simulate_cmd",
        "write a synthetic data set of sessions with the virtual rig",
        "Render sessions (subjects x tracks x minutes) with the virtual rig: physically "
        "based room, body shadowing and reflections, procedural motion and music. "
        "Deterministic per seed; --shard i/n splits the work between processes or machines.",
    ),
    "features": (
        "bgm2pose.app.features_cmd",
        "extract AMPL features (log-mel + intensity) from a session folder",
        "Compute the 9 base feature channels (4 mic log-mel, 2 music log-mel, 3 intensity) "
        "for every 50 ms frame of a session and save them with the window poses as .npz.",
    ),
    "devices": (
        "bgm2pose.app.devices_cmd",
        "list audio devices and whether they can serve as the rig (4 in, 2 out)",
        "List every audio device PortAudio sees (JACK clients included) with its channel "
        "counts and default rate, and mark those with a 4-channel input and 2 outputs.",
    ),
    "virtual-room": (
        "bgm2pose.sensing.virtual_room",
        "run the virtual rig as a JACK client (2 speaker inputs, 4 mic outputs)",
        "Run the virtual rig (simulated room with a moving person) as a JACK client named "
        "'room': 2 speaker inputs, 4 B-format mic outputs, so the real PortAudio/JACK path "
        "can be exercised without hardware.",
    ),
    "learnability": (
        "bgm2pose.app.learnability_cmd",
        "check that pose is recoverable from a data set's features (linear probe)",
        "Ridge regression from features to poses, leave-one-subject-out, against the "
        "mean-pose predictor and against the same ridge on audio shuffled across windows. "
        "Writes a markdown report.",
    ),
}


def _version() -> str:
    try:
        return version("bgm2pose")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(
        prog="bgm2pose",
        description="Live 3D human pose estimation from ordinary background music, "
        "heard by a first-order ambisonic microphone (BGM2Pose).",
        epilog="Run 'bgm2pose <verb> --help' for the options of one verb.",
    )
    parser.add_argument("--version", action="version", version=f"bgm2pose {_version()}")
    sub = parser.add_subparsers(dest="verb", metavar="<verb>")
    for verb, (_, short, description) in VERBS.items():
        sub.add_parser(verb, help=short, description=description)
    return parser, sub


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser, sub = build_parser()
    verb = next((a for a in argv if not a.startswith("-")), None)
    if verb in VERBS:
        module = importlib.import_module(VERBS[verb][0])
        module.add_arguments(sub.choices[verb])
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 0
    try:
        return int(module.run(args) or 0)
    except UserError as exc:
        print(f"bgm2pose {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bgm2pose {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
