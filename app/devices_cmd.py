"""``bgm2pose devices``: the audio devices PortAudio sees."""

from __future__ import annotations

import argparse

from bgm2pose.sensing.backends import list_devices


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rig-only", action="store_true",
                   help="only devices with at least 4 inputs and 2 outputs")


def run(args: argparse.Namespace) -> int:
    devices = [d for d in list_devices() if d.can_duplex or not args.rig_only]
    if not devices:
        print("devices: none found (no sound card, and no JACK server running); "
              "the virtual rig needs no device")
        return 0
    print(f"{'#':>3}  {'name':32s} {'host API':12s} {'in':>3} {'out':>3} {'rate':>7}  rig")
    for d in devices:
        print(f"{d.index:>3}  {d.name[:32]:32s} {d.host_api[:12]:12s} {d.max_input_channels:>3} "
              f"{d.max_output_channels:>3} {d.default_sample_rate:>7.0f}  "
              f"{'yes' if d.can_duplex else ''}")
    return 0
