"""Separate PortAudio output and input devices: one playback stream, one capture stream.

The real-time path is ``DuplexBackend``'s: rtmixer's C callbacks play the speakers from one
lock-free ring and record the mic into another, and the same pump thread moves blocks
between those rings and the project's, marks xruns and restarts an action after a stall.
Only the streams differ: an rtmixer ``Recorder`` on the input device and a ``Mixer`` on the
output device. (With a Python callback per stream, the GIL made these streams the late
client of a JACK graph tens of times in a 10-second calibration.)

The two devices do not share a clock. Time base: each ring counts from its own stream's
first callback, so the latency between them is the devices' round trip plus the gap between
the two stream starts, different every run, and it drifts at the clocks' rate difference.
The capture stream starts first, which keeps that latency positive. Calibration
(``calibration.latency``, fitting the drift over its takes: ``separate_clocks``) and online
tracking (``calibration.drift.DriftTracker`` with ``track_clock=True`` and the profile's
flight time) relate the two sample counts.
"""

from __future__ import annotations

from bgm2pose.sensing.backend_duplex import LEAD_S, DuplexBackend, check_device, open_error
from bgm2pose.sensing.backends import MIC_CHANNELS, SPEAKER_CHANNELS
from bgm2pose.sensing.player import Player


class SplitBackend(DuplexBackend):
    separate_clocks = True

    def __init__(self, player: Player, output_device: int | str, input_device: int | str,
                 convention: str = "ambix", blocksize: int = 512, ring_seconds: float = 20.0,
                 lead_s: float = LEAD_S):
        super().__init__(player, None, (MIC_CHANNELS, SPEAKER_CHANNELS), blocksize,
                         convention, ring_seconds, lead_s)
        self.output_device = output_device
        self.input_device = input_device
        self.name = f"{output_device} -> {input_device}"

    def _open(self) -> tuple:
        import rtmixer
        import sounddevice as sd

        out_name = check_device(self.output_device, 0, SPEAKER_CHANNELS, self.sample_rate)
        in_name = check_device(self.input_device, MIC_CHANNELS, 0, self.sample_rate)
        self.name = f"{out_name} -> {in_name}"
        streams = []
        for name, kind, device, channels in (
                (in_name, rtmixer.Recorder, self.input_device, MIC_CHANNELS),
                (out_name, rtmixer.Mixer, self.output_device, SPEAKER_CHANNELS)):
            try:
                streams.append(kind(device=device, channels=channels,
                                    samplerate=self.sample_rate, blocksize=self.blocksize,
                                    finished_callback=lambda name=name: self._finished(name)))
            except sd.PortAudioError as exc:
                for opened in streams:
                    opened.close(ignore_errors=True)
                raise open_error(name, exc) from exc
        recorder, mixer = streams
        return mixer, recorder, streams
