"""``bgm2pose run``: headless live pose estimation with a status line and a final summary.

Runs a ``LiveEngine`` for ``--seconds`` of captured audio (or until Ctrl-C, or until the
device goes away), printing a status line to stderr (carriage return) and a summary table at
the end. ``--record DIR`` keeps the session (``sensing.recorder``); ``--json-lines FILE``
(``-`` for stdout) writes one JSON object per pose frame, each frame once, in capture order:

    {"seq": 7, "t": 1.2375, "capture_time": 1.25, "pose": [[x, y, z] x 21],
     "truth": [[x, y, z] x 21]}     (truth on the virtual rig only)

``t`` is the frame's capture time and ``capture_time`` that of the last sample of the window
it came from, in seconds on the recorded clock; poses are normalised (hips origin, hip-spine
length 1). Later updates may revise a frame (policy "average", smoothing); the line holds it
as first published. Ctrl-C or SIGTERM stop cleanly (exit 130) and finish the recording; a run
that ends because the device vanished, or whose recording could not be written, keeps what
was recorded and exits with status 1 and one sentence saying why. A ``--tracks`` file that
cannot be played (``audiofile.check_music``) is a warning line and skipped, left out of the
recording's track list; when none can be played the run does not start: one sentence, exit 2,
rather than a run of silence.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TextIO

import numpy as np
from bgm2pose.app import teach
from bgm2pose.app.live_engine import BACKENDS, LiveEngine, LiveOptions
from bgm2pose.models.estimator import POLICIES
from bgm2pose.models.posefeed import LiveStats, PoseUpdate
from bgm2pose.sensing.bformat import CONVENTIONS
from bgm2pose.sensing.sim.rig import read_rig

_TICK_S = 0.05  # how often the feed is read: faster than the hop, so history never laps
_STATUS_S = 0.25


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS, default="virtual",
                   help="virtual rig in this process, one duplex device, or split devices")
    p.add_argument("--device", help="duplex device name or index (see `bgm2pose devices`)")
    p.add_argument("--output-device", help="split: the speakers' device")
    p.add_argument("--input-device", help="split: the microphone's device")
    p.add_argument("--convention", choices=CONVENTIONS, default="ambix",
                   help="the mic's channel convention (the virtual room sends 'internal')")
    p.add_argument("--seconds", type=float, default=0.0,
                   help="stop after this much captured audio (0: run until Ctrl-C)")
    p.add_argument("--model", type=Path, help="exported model .onnx (default: the demo model)")
    music = p.add_mutually_exclusive_group()
    music.add_argument("--tracks", type=Path, nargs="*", default=[],
                       help="music files to play (default: generated music, see --generated); "
                            "a file that cannot be played is skipped with a warning, and if "
                            "none can, the run stops with the reason")
    p.add_argument("--hop", type=int, default=2400, help="samples between windows (2400 = 50 ms)")
    p.add_argument("--policy", choices=POLICIES, default="latest",
                   help="publish each window's poses, or overlap-average successive windows")
    p.add_argument("--smoothing", type=float, default=0.0,
                   help="exponential smoothing of the published poses, 0 (none) .. <1")
    p.add_argument("--latency", type=float,
                   help="loopback latency in samples (default: the calibration profile)")
    p.add_argument("--seed", type=int, default=0, help="virtual rig: motion and noise seed")
    p.add_argument("--rig", type=Path, metavar="JSON",
                   help="virtual rig: file of rig settings over the built-in rig, e.g. "
                        '{"body_paths": "direct"} (as `virtual-room --rig` takes; default: the '
                        "built-in rig)")
    p.add_argument("--subject", help="virtual rig: subject S1..S8, or none (default: the "
                                     "first the model did not train on, from its card)")
    music.add_argument("--generated", nargs="+", default=[], metavar="NAME",
                       help="generated tracks to play instead of files, as <genre>-<seed>, "
                            "e.g. jazz-0003 (default: an ambient and a jazz track the model "
                            "did not train on, from its card)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    p.add_argument("--record", type=Path, metavar="DIR",
                   help="record the session (mic, reference, poses) into this new folder")
    teach.add_arguments(p)
    p.add_argument("--json-lines", metavar="FILE",
                   help="write one JSON object per pose frame to FILE ('-' for stdout)")
    p.add_argument("--fast", action="store_true",
                   help="virtual rig: run as fast as possible instead of in real time")
    p.add_argument("--quiet", action="store_true", help="no status line")


def options_from(args: argparse.Namespace) -> LiveOptions:
    return LiveOptions(backend=args.backend, device=args.device,
                       output_device=args.output_device, input_device=args.input_device,
                       convention=args.convention, model=args.model, tracks=list(args.tracks),
                       hop=args.hop, policy=args.policy, smoothing=args.smoothing,
                       generated=list(args.generated), realtime=not args.fast,
                       seed=args.seed, subject=args.subject, rig=read_rig(args.rig),
                       latency=args.latency, threads=args.threads,
                       seconds=args.seconds if args.seconds > 0 else None)


class JsonLines:
    """Writes each pose frame of the feed once, in capture order."""

    def __init__(self, out: TextIO):
        self.out = out
        self.last_seq = 0
        self.last_t = float("-inf")
        self.frames = 0

    def write(self, updates: list[PoseUpdate]) -> None:
        for update in updates:
            if update.seq <= self.last_seq:
                continue
            self.last_seq = update.seq
            for k, t in enumerate(update.times):
                if t <= self.last_t + 1e-9:
                    continue
                self.last_t = float(t)
                record = {"seq": update.seq, "t": round(float(t), 6),
                          "capture_time": round(update.capture_time, 6),
                          "pose": _rounded(update.poses[k])}
                if update.truth is not None:
                    record["truth"] = _rounded(update.truth[k])
                self.out.write(json.dumps(record, separators=(",", ":")) + "\n")
                self.frames += 1
        self.out.flush()


def _rounded(joints: np.ndarray) -> list:
    # float64 first: rounding float32 leaves binary tails that print as 17 digits.
    return joints.astype(np.float64).round(5).tolist()


def status_line(stats: LiveStats | None, captured_s: float) -> str:
    if stats is None:
        return f"{captured_s:7.1f} s  starting..."
    line = (f"{captured_s:7.1f} s  {stats.windows:6d} windows  {stats.windows_per_s:5.1f}/s  "
            f"feat {stats.features_ms:5.1f} ms  inf {stats.inference_ms:5.1f} ms  "
            f"e2e {stats.e2e_ms:5.1f} ms  xruns {stats.xruns}  dropped {stats.dropped}  "
            f"flagged {stats.flagged}")
    if stats.mae is not None:
        line += f"  {stats.mae_text()}  PCKh {stats.pckh:.3f}"
    if stats.drift_ppm is not None:
        line += f"  drift {stats.drift_ppm:+.1f} ppm"
    return line


def summary(stats: LiveStats | None, captured: int, sample_rate: int, wall_s: float) -> str:
    if stats is None:
        return "no window was estimated"
    rows = [
        ("backend", stats.backend),
        ("captured audio", f"{captured / sample_rate:.2f} s ({captured} samples)"),
        ("wall time", f"{wall_s:.2f} s"), ("windows estimated", f"{stats.windows}"),
        ("windows dropped", f"{stats.dropped}"), ("windows flagged", f"{stats.flagged}"),
        ("xruns", f"{stats.xruns}"), ("features (median)", f"{stats.features_ms:.2f} ms"),
        ("inference (median)", f"{stats.inference_ms:.2f} ms"),
        ("end to end (median)", f"{stats.e2e_ms:.1f} ms"),
        ("latency", f"{stats.latency_samples:.1f} samples"),
    ]
    if stats.drift_ppm is not None:
        rows.append(("clock drift", f"{stats.drift_ppm:+.2f} ppm"))
    if stats.mae is not None:
        rows += [("MAE (normalised)", f"{stats.mae:.4f}"), ("PCKh@0.5", f"{stats.pckh:.4f}")]
    if stats.mean_pose_mae is not None:
        rows.append(("MAE of the mean pose", f"{stats.mean_pose_mae:.4f}"))
    if stats.status:
        rows.append(("status", stats.status))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    # `kill` (SIGTERM) stops like Ctrl-C: the recording is finished, not cut.
    signal.signal(signal.SIGTERM, _interrupt)
    engine = LiveEngine(options_from(args))
    print(f"bgm2pose run: {engine.backend.name}, {engine.describe()}", file=sys.stderr)
    for warning in engine.warnings:
        print(f"bgm2pose run: warning: {warning}", file=sys.stderr)
    rate = engine.backend.sample_rate
    target = int(args.seconds * rate) if args.seconds > 0 else None
    with ExitStack() as stack:
        lines = None
        if args.json_lines:
            out = sys.stdout if args.json_lines == "-" else stack.enter_context(
                open(args.json_lines, "w"))
            lines = JsonLines(out)
        recorder = None
        teacher = teach.make_teacher(args, engine)
        if args.record:
            recorder = engine.recorder(args.record, "bgm2pose run", teacher=teacher,
                                       min_confidence=args.min_confidence)
        if teacher is not None:  # first: a video as the camera starts with the audio
            stack.callback(teacher.stop)
            teacher.start()
        t0 = time.monotonic()
        interrupted = False
        try:
            engine.start()
            if recorder is not None:  # after the device opened, long before the rings wrap
                recorder.start()
            last_status = 0.0
            while engine.running and (target is None or engine.backend.recorded.end < target):
                time.sleep(_TICK_S)
                if lines is not None:
                    lines.write(engine.feed.history(64))
                now = time.monotonic()
                if not args.quiet and now - last_status >= _STATUS_S:
                    last_status = now
                    print("\r" + status_line(engine.feed.latest()[1],
                                             engine.backend.recorded.end / rate),
                          end="", file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            engine.stop()
            if recorder is not None:
                recorder.stop(engine.aligner.latency)
        if lines is not None:
            lines.write(engine.feed.history(64))
        stats = engine.feed.latest()[1]
        if not args.quiet:
            print(file=sys.stderr)
        print(summary(stats, engine.backend.recorded.end, rate, time.monotonic() - t0),
              file=sys.stderr)
        if recorder is not None and not recorder.error:
            print(f"recorded {recorder.seconds:.1f} s into {args.record}", file=sys.stderr)
    problem = (engine.backend.stats().error or engine.estimator.error
               or (recorder.error if recorder is not None else None)
               or getattr(teacher, "error", None))
    if problem:
        print(f"bgm2pose run: {problem}", file=sys.stderr)
        return 1
    return 130 if interrupted else 0
