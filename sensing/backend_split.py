"""Separate PortAudio output and input devices: one playback stream, one capture stream.

The two devices do not share a clock. Each stream has a Python callback (unlike
``DuplexBackend``, whose real-time path is rtmixer's C callback), with the rules of the
project's real-time code (copy into preallocated rings, count, never block): the output
callback fills the block from the player (which writes the reference ring), the input
callback converts the mic block (``MicConverter``) into ``recorded``. Status flags mark
XRUN in the ring they concern.

Time base: each ring counts from its own stream's first callback, so the latency between
them is the devices' round trip plus the gap between the two stream starts, different every
run, and it drifts at the clocks' rate difference. The capture stream starts first, which
keeps that latency positive. Calibration (``calibration.latency``, fitting the drift over
its takes: ``separate_clocks``) and online tracking (``calibration.drift.DriftTracker`` with
``track_clock=True`` and the profile's flight time) relate the two sample counts.
"""

from __future__ import annotations

from bgm2pose.sensing.backend_duplex import MicConverter, check_device, open_error, release_stream
from bgm2pose.sensing.backends import (MIC_CHANNELS, SPEAKER_CHANNELS, AudioBackend, BackendError,
                                       BackendStats)
from bgm2pose.sensing.player import Player
from bgm2pose.sensing.ring import Mark, SampleRing


class SplitBackend(AudioBackend):
    separate_clocks = True

    def __init__(self, player: Player, output_device: int | str, input_device: int | str,
                 convention: str = "ambix", blocksize: int = 512, ring_seconds: float = 20.0):
        self._mic = MicConverter(convention, blocksize)
        self.player = player
        self.output_device = output_device
        self.input_device = input_device
        self.mic_convention = convention
        self.name = f"{output_device} -> {input_device}"
        self.blocksize = blocksize
        self.sample_rate = player.sample_rate
        self.recorded = SampleRing(MIC_CHANNELS, int(ring_seconds * self.sample_rate))
        self._streams: list = []
        self._stopping = False
        self._error: str | None = None
        self._in_callbacks = self._out_callbacks = 0
        self._in_over = self._in_under = self._out_under = self._out_over = 0

    def start(self) -> None:
        import sounddevice as sd

        if self._streams:
            raise BackendError("the backend is already started; call start() once")
        out_name = check_device(self.output_device, 0, SPEAKER_CHANNELS, self.sample_rate)
        in_name = check_device(self.input_device, MIC_CHANNELS, 0, self.sample_rate)
        self.name = f"{out_name} -> {in_name}"
        self._stopping = False
        for name, make in ((in_name, lambda: sd.InputStream(
                device=self.input_device, channels=MIC_CHANNELS, samplerate=self.sample_rate,
                blocksize=self.blocksize, dtype="float32", callback=self._in_callback,
                finished_callback=lambda: self._finished(in_name))),
                           (out_name, lambda: sd.OutputStream(
                device=self.output_device, channels=SPEAKER_CHANNELS,
                samplerate=self.sample_rate, blocksize=self.blocksize, dtype="float32",
                callback=self._out_callback, finished_callback=lambda: self._finished(out_name)))):
            try:
                stream = make()
                self._streams.append(stream)
                stream.start()
            except sd.PortAudioError as exc:
                self.stop()
                raise open_error(name, exc) from exc

    def stop(self) -> None:
        streams, self._streams = self._streams, []
        self._stopping = True
        for stream in reversed(streams):
            if not release_stream(stream) and self._error is None:
                self._error = (f"audio devices {self.name!r} stopped responding and could not "
                               "be closed; check that they (or their JACK server) are there")

    @property
    def running(self) -> bool:
        return len(self._streams) == 2 and all(s.active for s in self._streams)

    def stats(self) -> BackendStats:
        return BackendStats(callbacks=self._in_callbacks, input_overflows=self._in_over,
                            input_underflows=self._in_under, output_underflows=self._out_under,
                            output_overflows=self._out_over,
                            player_underflows=self.player.status().underflows, late_blocks=0,
                            error=self._error)

    # -- real time ------------------------------------------------------------------------

    def _in_callback(self, indata, frames: int, time, status) -> None:
        recorded = self.recorded
        if status and (status.input_overflow or status.input_underflow):
            self._in_over += status.input_overflow
            self._in_under += status.input_underflow
            recorded.events.mark(recorded.end, Mark.XRUN, frames)
        recorded.write(self._mic(indata))
        self._in_callbacks += 1

    def _out_callback(self, outdata, frames: int, time, status) -> None:
        self.player.callback_fill(outdata)
        if status:
            if status.output_underflow:
                self._out_under += 1
                reference = self.player.reference
                reference.events.mark(reference.end - frames, Mark.XRUN, frames)
            self._out_over += status.output_overflow
        self._out_callbacks += 1

    def _finished(self, name: str) -> None:
        if not self._stopping:
            self._error = (f"audio device {name!r} stopped delivering audio (disconnected, "
                           "or its server stopped); what was recorded is kept, reconnect it "
                           "and start again")
