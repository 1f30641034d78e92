"""``bgm2pose calibrate``: measure speaker -> mic latency with sweeps, check the mic, save it.

The profile is keyed by (output device, input device, sample rate); the virtual rig's key is
("virtual rig", "virtual rig"). ``--plot`` draws the impulse responses (W X Y Z per speaker)
into a PNG with pyqtgraph's exporter on Qt's offscreen platform (matplotlib is not a
dependency).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bgm2pose.calibration.latency import CalibrationResult, measure_latency
from bgm2pose.calibration.profiles import Profile, delete_profile, list_profiles, save_profile
from bgm2pose.sensing.errors import UserError

VIRTUAL = "virtual rig"


class CalibrateError(UserError, ValueError):
    """Command-line settings of ``calibrate`` that do not fit together."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("virtual", "duplex", "split"), default="virtual")
    p.add_argument("--device", help="duplex: the device with the mic and the speakers")
    p.add_argument("--output-device", help="split: the speakers' device")
    p.add_argument("--input-device", help="split: the mic's device")
    p.add_argument("--convention", choices=("ambix", "fuma", "internal"), default="ambix",
                   help="the mic's channel convention (the virtual rig is always internal)")
    p.add_argument("--level", type=float, default=-20.0, help="sweep level, dBFS (default -20)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--latency", type=float, default=0.0,
                   help="virtual rig: device latency to inject, samples")
    p.add_argument("--plot", type=Path, help="write the impulse responses to this PNG")
    p.add_argument("--save", action="store_true", help="save the result as the profile")
    p.add_argument("--list", action="store_true", help="list the saved profiles and exit")
    p.add_argument("--delete", action="store_true",
                   help="delete the profile of the given devices and exit")


def _devices(args: argparse.Namespace) -> tuple[str, str]:
    if args.backend == "virtual":
        return VIRTUAL, VIRTUAL
    if args.backend == "duplex":
        if not args.device:
            raise CalibrateError("--backend duplex needs --device NAME; list them with "
                                 "`bgm2pose devices`")
        return args.device, args.device
    if not (args.output_device and args.input_device):
        raise CalibrateError("--backend split needs --output-device and --input-device; list "
                             "them with `bgm2pose devices`")
    return args.output_device, args.input_device


def _make_backend(args: argparse.Namespace):
    if args.backend == "virtual":
        from bgm2pose.sensing.backend_virtual import VirtualBackend, VirtualScene

        return lambda player: VirtualBackend(player, VirtualScene(subject=None), realtime=False,
                                             device_latency=args.latency)
    if args.backend == "duplex":
        from bgm2pose.sensing.backend_duplex import DuplexBackend

        return lambda player: DuplexBackend(player, args.device,
                                            mic_convention=args.convention)
    from bgm2pose.sensing.backend_split import SplitBackend

    return lambda player: SplitBackend(player, args.output_device, args.input_device,
                                       convention=args.convention)


def plot(result: CalibrationResult, path: Path) -> None:
    """Impulse responses (first 40 ms, per speaker W X Y Z) as a PNG."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import numpy as np
    import pyqtgraph as pg
    import pyqtgraph.exporters
    from PyQt6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    fs = result.sample_rate
    n = min(result.impulse_responses.shape[-1], int(0.04 * fs))
    t = np.arange(n) / fs * 1000
    widget = pg.GraphicsLayoutWidget()
    widget.setBackground("w")
    widget.resize(1000, 600)
    colours = ("k", "r", "g", "b")
    for s, side in enumerate(("left", "right")):
        item = widget.addPlot(row=s, col=0, title=f"{side} speaker: latency "
                              f"{result.latency_samples[s]:.2f} samples")
        item.addLegend()
        item.setLabel("bottom", "lag", units="ms")
        for c, name in enumerate("WXYZ"):
            item.plot(t, result.impulse_responses[s, c, :n], pen=colours[c], name=name)
    widget.show()  # offscreen: lays the plots out over the whole widget before export
    app.processEvents()
    exporter = pg.exporters.ImageExporter(widget.scene())
    exporter.parameters()["width"] = 1000
    path.parent.mkdir(parents=True, exist_ok=True)
    if not exporter.export(str(path)):
        raise CalibrateError(f"could not write the plot to {path}; check the folder")


def run(args: argparse.Namespace) -> int:
    if args.list:
        profiles = list_profiles()
        if not profiles:
            print("calibrate: no saved profiles")
        for p in profiles:
            print(f"{p.output_device} -> {p.input_device} @ {p.sample_rate} Hz: latency "
                  f"{p.latency_samples:.2f} samples, SNR {p.snr_db:.0f} dB, {p.created}")
        return 0
    output, input_ = _devices(args)
    if args.delete:
        found = delete_profile(output, input_, 48_000)
        print(f"calibrate: {'deleted' if found else 'no'} profile for {output} -> {input_}")
        return 0

    shown = [-1]

    def progress(fraction: float, message: str) -> None:
        if int(fraction * 10) > shown[0]:  # every 10 %: a terminal, not a flood
            shown[0] = int(fraction * 10)
            print(f"\r{message} ({fraction:.0%})", end="", file=sys.stderr, flush=True)

    result = measure_latency(_make_backend(args), level_db=args.level, repeats=args.repeats,
                             progress=progress)
    print(file=sys.stderr)
    left, right = result.latency_samples
    print(f"latency L {left:.2f} R {right:.2f} samples; device {result.device_latency_samples:.2f}"
          f" samples ({result.device_latency_samples / result.sample_rate * 1000:.2f} ms); "
          f"distances {result.distances_m[0]:.3f} m, {result.distances_m[1]:.3f} m; "
          f"SNR {result.snr_db:.0f} dB; repeats within {result.spread_samples:.3f} samples"
          + (f"; clock ratio {result.clock_ratio:.9f}" if result.clock_ratio != 1 else ""))
    for warning in result.warnings:
        print(f"warning: {warning}")
    if args.plot:
        plot(result, args.plot)
        print(f"plot: {args.plot}")
    if args.save:
        convention = "internal" if args.backend == "virtual" else args.convention
        path = save_profile(Profile.from_result(result, output, input_, convention))
        print(f"saved: {path}")
    return 0
