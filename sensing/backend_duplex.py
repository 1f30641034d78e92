"""One PortAudio device that plays and records in a single duplex stream (``backends``).

The callback is the whole real-time path: ``player.callback_fill(outdata)`` writes the block
played (and the reference ring), the first four input channels are converted from the
device's B-format convention to the internal one into a preallocated block (a channel
permutation and a per-channel gain, no allocation) and written to ``recorded``. Both rings
advance by the same number of frames in every callback, so their indices stay paired at a
fixed device latency.

Status flags: an input over- or underflow marks the block's recorded samples XRUN, an output
underflow marks the block's reference samples XRUN (windows touching them come out flagged),
and each flag is counted. PortAudio does not say how many samples a flag stands for, so the
indices go on as if none were lost; the mark is what tells the aligner to distrust them. A flag
can arrive a few blocks after the glitch, and on JACK (jackd2, seen with the dummy driver on
a loaded machine) the loopback latency may have moved by whole periods after an xrun: the
latency has to be checked again after one.

A device that stops on its own (unplugged, JACK server gone) ends the stream: ``running``
turns False, ``stats().error`` says why, and ``recorded`` keeps everything captured so far.
"""

from __future__ import annotations

import atexit
import threading

import numpy as np

from bgm2pose.sensing.backends import (MIC_CHANNELS, SPEAKER_CHANNELS, AudioBackend,
                                       BackendError, BackendStats)
from bgm2pose.sensing.bformat import CONVENTIONS, to_internal
from bgm2pose.sensing.player import Player
from bgm2pose.sensing.ring import Mark, SampleRing


def _conversion(convention: str) -> tuple[np.ndarray, np.ndarray]:
    """(order, gain) with internal[:, i] = gain[i] * external[:, order[i]]."""
    # to_internal of the identity is the conversion matrix: row j is external channel j.
    matrix = to_internal(np.eye(MIC_CHANNELS), convention, axis=1)
    order = np.argmax(np.abs(matrix), axis=0)
    gain = matrix[order, np.arange(MIC_CHANNELS)].astype(np.float32)
    return order.astype(np.intp), gain


class MicConverter:
    """A device's input block (frames, >= 4) to internal B-format (frames, 4), in real time:
    a channel permutation and per-channel gains into a preallocated block (no allocation)."""

    def __init__(self, convention: str, blocksize: int):
        if blocksize < 1:
            raise BackendError(f"block size {blocksize} must be a positive number of frames; "
                               "use the device's period, e.g. 512")
        if convention not in CONVENTIONS:
            raise BackendError(f"mic convention {convention!r} is unknown; use one of "
                               f"{', '.join(CONVENTIONS)}")
        order, gain = _conversion(convention)
        self._order = order
        self._permute = convention != "internal"
        # Gains per sample and channel: numpy allocates a temporary for an in-place product
        # with a broadcast operand, not with a full-size one. None when all are 1.
        self._gains = (None if np.all(gain == 1) else
                       np.ascontiguousarray(np.broadcast_to(gain, (blocksize, MIC_CHANNELS))))
        self._block = np.zeros((blocksize, MIC_CHANNELS), np.float32)

    def __call__(self, indata: np.ndarray) -> np.ndarray:
        mic = indata[:, :MIC_CHANNELS]
        if not self._permute:
            return mic
        frames = mic.shape[0]
        block = self._block[:frames]
        np.take(mic, self._order, axis=1, out=block, mode="clip")
        if self._gains is not None:
            np.multiply(block, self._gains[:frames], out=block)
        return block


def check_device(device: int | str, inputs: int, outputs: int, sample_rate: int) -> str:
    """The device's name, once it is known to exist and take ``inputs`` and ``outputs``
    channels of float audio at ``sample_rate`` (else a ``BackendError`` with the fix)."""
    import sounddevice as sd

    try:
        info = sd.query_devices(device)
    except (ValueError, sd.PortAudioError) as exc:
        raise BackendError(
            f"audio device {str(device)!r} was not found ({exc}); run `bgm2pose devices` "
            "to list the devices (a JACK client started after this program is listed "
            "after a restart or refresh_devices())") from exc
    name = info["name"]
    if info["max_input_channels"] < inputs or info["max_output_channels"] < outputs:
        raise BackendError(
            f"audio device {name!r} has {info['max_input_channels']} input and "
            f"{info['max_output_channels']} output channels but needs {inputs} and "
            f"{outputs}; connect the 4-channel B-format microphone and two speakers to "
            "one device or pick another one")
    try:
        if inputs:
            sd.check_input_settings(device, channels=inputs, dtype="float32",
                                    samplerate=sample_rate)
        if outputs:
            sd.check_output_settings(device, channels=outputs, dtype="float32",
                                     samplerate=sample_rate)
    except sd.PortAudioError as exc:
        raise BackendError(
            f"audio device {name!r} does not support {sample_rate} Hz float "
            f"audio with {inputs} inputs and {outputs} outputs ({exc}); set the device "
            f"(or JACK server) to {sample_rate} Hz") from exc
    return name


CLOSE_TIMEOUT_S = 2.0


def release_stream(stream) -> bool:
    """Stop and close a PortAudio stream; False if that did not finish within
    ``CLOSE_TIMEOUT_S``. A stream whose device vanished can block PortAudio for good (with
    JACK, when the server died, Pa_StopStream waits for a process cycle that never comes), so
    the closing runs in a daemon thread and is given up on rather than hanging the program
    and what it still has to save."""
    import sounddevice as sd

    def close() -> None:
        try:
            stream.stop()
        except sd.PortAudioError:  # the device is already gone; closing is all that is left
            pass
        finally:
            stream.close(ignore_errors=True)
            done.set()

    done = threading.Event()
    threading.Thread(target=close, name="close-stream", daemon=True).start()
    if done.wait(CLOSE_TIMEOUT_S):
        return True
    # sounddevice terminates PortAudio at exit, which would block on the same dead stream.
    atexit.unregister(sd._exit_handler)
    return False


def open_error(name: str, exc: Exception) -> BackendError:
    return BackendError(f"audio device {name!r} cannot be opened ({exc}); close other programs "
                        "using it or pick another device with `bgm2pose devices`")


class DuplexBackend(AudioBackend):
    def __init__(self, player: Player, device: int | str, channels: tuple[int, int] = (4, 2),
                 blocksize: int = 512, mic_convention: str = "internal",
                 ring_seconds: float = 20.0):
        inputs, outputs = channels
        if inputs < MIC_CHANNELS or outputs != SPEAKER_CHANNELS:
            raise BackendError(
                f"channels {channels} do not fit a B-format mic and two speakers; use "
                f"({MIC_CHANNELS} or more inputs, {SPEAKER_CHANNELS} outputs)")
        self._mic = MicConverter(mic_convention, blocksize)
        self.player = player
        self.device = device
        self.name = str(device)
        self.channels = (inputs, outputs)
        self.blocksize = blocksize
        self.mic_convention = mic_convention
        self.sample_rate = player.sample_rate
        self.recorded = SampleRing(MIC_CHANNELS, int(ring_seconds * self.sample_rate))
        self._stream = None
        self._stopping = False
        self._error: str | None = None
        self._callbacks = 0
        self._in_over = self._in_under = self._out_under = self._out_over = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        import sounddevice as sd

        if self._stream is not None:
            raise BackendError("the backend is already started; call start() once")
        self.name = check_device(self.device, *self.channels, self.sample_rate)
        try:
            stream = sd.Stream(device=self.device, channels=self.channels,
                               samplerate=self.sample_rate, blocksize=self.blocksize,
                               dtype="float32", callback=self._callback,
                               finished_callback=self._finished)
        except sd.PortAudioError as exc:
            raise open_error(self.name, exc) from exc
        self._stopping = False
        self._stream = stream
        try:
            stream.start()
        except sd.PortAudioError as exc:  # e.g. the device (or JACK server) went meanwhile
            self.stop()
            raise open_error(self.name, exc) from exc

    def stop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        self._stopping = True
        if not release_stream(stream) and self._error is None:
            self._error = (f"audio device {self.name!r} stopped responding and could not be "
                           "closed; check that it (or its JACK server) is still there")

    @property
    def running(self) -> bool:
        return self._stream is not None and self._stream.active

    def stats(self) -> BackendStats:
        return BackendStats(callbacks=self._callbacks, input_overflows=self._in_over,
                            input_underflows=self._in_under, output_underflows=self._out_under,
                            output_overflows=self._out_over,
                            player_underflows=self.player.status().underflows, late_blocks=0,
                            error=self._error)

    # -- real time ------------------------------------------------------------------------

    def _callback(self, indata: np.ndarray, outdata: np.ndarray, frames: int, time,
                  status) -> None:
        self.player.callback_fill(outdata)
        recorded = self.recorded
        if status:
            if status.input_overflow or status.input_underflow:
                self._in_over += status.input_overflow
                self._in_under += status.input_underflow
                recorded.events.mark(recorded.end, Mark.XRUN, frames)
            if status.output_underflow:
                self._out_under += 1
                reference = self.player.reference
                reference.events.mark(reference.end - frames, Mark.XRUN, frames)
            self._out_over += status.output_overflow
        recorded.write(self._mic(indata))
        self._callbacks += 1

    def _finished(self) -> None:
        if not self._stopping:
            self._error = (f"audio device {self.name!r} stopped delivering audio after "
                           f"{self.recorded.end} samples (disconnected, or its server "
                           "stopped); what was recorded is kept, reconnect it and start again")
