"""The ``bgm2pose`` command line: one verb per job, each in its own module.

Verb modules are imported only when their verb runs, so ``bgm2pose --help`` stays fast
(torch and Qt take seconds to import). A verb module provides ``add_arguments(parser)``
and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from importlib.metadata import PackageNotFoundError, version

from bgm2pose.sensing.errors import InputWarning, UserError

# verb -> (module, one-line help, description)
VERBS: dict[str, tuple[str, str, str]] = {
    "demo": (
        "bgm2pose.app.demo_cmd",
        "the app on the built-in virtual rig: a virtual person moves, the skeleton follows",
        "Open the app on the built-in virtual rig (a virtual person moving between two "
        "speakers playing generated music, heard by a virtual ambisonic mic) with the shipped "
        "model, live; the person and the music are ones the model never trained on, and its "
        "live MAE is shown beside the mean-pose predictor's. Without a display it runs "
        "headless for --seconds, prints the live figures and writes a PNG of the window it "
        "would have shown.",
    ),
    "app": (
        "bgm2pose.app.app_cmd",
        "the desktop app: playlist, devices, calibration, live 3D skeleton",
        "Open the desktop app: a playlist (files given here replace the saved one), the "
        "audio devices or the virtual rig, the calibration wizard, recording, and the live "
        "3D skeleton with spectrograms, mic levels and the live figures.",
    ),
    "simulate": (
        "bgm2pose.app.simulate_cmd",
        "write a synthetic data set of sessions with the virtual rig",
        "Render sessions (subjects x tracks x minutes) with the virtual rig: physically "
        "based room, body shadowing and reflections, procedural motion and music, or your "
        "own music files with --music. Deterministic per seed; --shard i/n splits the work "
        "between processes or machines.",
    ),
    "teacher-latency": (
        "bgm2pose.app.teacher_latency_cmd",
        "a camera teacher's latency, from claps in a taught session",
        "Measure how late a camera teacher's poses are: record a session with --teacher camera "
        "while the person claps a few times in view, a second apart; the mic hears each clap, "
        "the camera sees the hands meet, and the median difference is the latency to pass as "
        "run --teacher-latency.",
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
    "run": (
        "bgm2pose.app.run_cmd",
        "estimate poses live, headless (virtual rig, one duplex device or split devices)",
        "Play music, record the B-format mic and estimate 3D poses live with an exported "
        "model; prints a status line and a summary, optionally records the session and "
        "writes the poses as JSON lines (one per frame, with capture times).",
    ),
    "calibrate": (
        "bgm2pose.app.calibrate_cmd",
        "measure speaker -> mic latency with sweeps, check the mic, save a profile",
        "Play a quiet sine sweep through each speaker in turn, deconvolve the 4 mic channels "
        "into impulse responses, report each speaker's latency (device round trip + flight), "
        "the distances implied, the SNR and mic/speaker findings; --save keeps it as the "
        "profile of those devices, --plot draws the responses.",
    ),
    "learnability": (
        "bgm2pose.app.learnability_cmd",
        "check that pose is recoverable from a data set's features (linear probe)",
        "Ridge regression from features to poses, leave-one-subject-out, against the "
        "mean-pose predictor and against the same ridge on audio shuffled across windows. "
        "Writes a markdown report.",
    ),
    "train": (
        "bgm2pose.app.train_cmd",
        "train BGM2Pose or a baseline on a data set (torchrun for several processes)",
        "Train a network (BGM2Pose, Jiang, Ginosar or Shibata; ablation switches) on the "
        "windows of a data set with MSE + 100 x velocity + CLIP, Adam and a cosine schedule, "
        "until the validation loss of a held-out training subject stops improving (--patience) "
        "or --epochs is reached; keeps the average of the 3 epochs up to the best in a resumable "
        "checkpoint, and metrics.json records epochs run, wall time, stop reason and learning "
        "curves. Held-out subjects and tracks are evaluated at the end. Under 'torchrun "
        "--nproc_per_node=N' it trains with DistributedDataParallel.",
    ),
    "export": (
        "bgm2pose.app.export_cmd",
        "export a training checkpoint to ONNX with its JSON model card",
        "Write NAME.onnx (input: raw base features, standardisation inside; dynamic batch) "
        "and NAME.json (preset, config, data, metrics, git revision); checks torch against "
        "onnxruntime.",
    ),
    "evaluate": (
        "bgm2pose.app.evaluate_cmd",
        "evaluate an exported model on a data set (MAE, RMSE, PCKh, per part)",
        "Run an ONNX model on every window of a data set (or chosen subjects and tracks) and "
        "print RMSE, MAE, PCKh at 0.5..2.0 and per-part errors next to the mean-pose predictor.",
    ),
    "benchmark": (
        "bgm2pose.app.benchmark_cmd",
        "run the paper's evaluation protocol and write the report (tables, curves, figures)",
        "Settings (a) single-music, (b) cross-music, (c) cross-genre; leave-one-subject-out "
        "folds and seeds; every method, the ablations and two controls (mean pose, shuffled "
        "audio), each trained with the same budget until its validation loss stops improving "
        "(--patience) or --epochs. Prints the plan and its estimated time first, a line per "
        "finished job, and resumes after an interruption. Writes markdown tables in the "
        "paper's format with each row's epochs and stop reason, per-part errors, learning "
        "curves, PCKh curves and skeleton figures as PNG.",
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


def _warning_printer(verb: str):
    """``warnings.showwarning`` that prints an ``InputWarning`` as one line naming the verb,
    like the errors, instead of Python's file:line and source text."""
    show = warnings.showwarning

    def printer(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, InputWarning):
            print(f"bgm2pose {verb}: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)
    return printer


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
    with warnings.catch_warnings():
        warnings.showwarning = _warning_printer(args.verb)
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
