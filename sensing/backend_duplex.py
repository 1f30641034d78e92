"""One PortAudio device that plays and records in a single duplex stream (``backends``).

The real-time path runs in C, without Python's GIL: rtmixer's PortAudio callback plays the
speakers from one lock-free ring (PortAudio's ``PaUtilRingBuffer``) and records the mic into
another. A Python callback needed the GIL every period (10.7 ms at 512 frames) against the
estimator, decoder and recorder threads, and on a loaded two-core machine it was late often
enough to make JACK drop cycles. Now a pump thread, every ``PUMP_S``, moves whole blocks
between those rings and the project's: it tops the speakers' ring up to ``lead_s`` ahead with
``player.callback_fill`` (which writes exactly those samples into the reference ring), and
drains the mic's ring, converting each block from the device's B-format convention
(``MicConverter``) into ``recorded``. A Python stall shorter than ``lead_s`` (speakers) and
``MIC_BUFFER_S`` (mic) costs nothing; a pause or skip is heard up to ``lead_s`` after it is
asked for, and the player's status runs that much ahead of the speakers.

Time base: both of rtmixer's ring actions are queued before the stream starts, so both begin
at frame 0 of its first callback; every ring index is a stream frame, and recorded sample n
was captured in the callback that played reference sample n, as with one callback that
did both. When the reference ring is ahead, it holds samples queued but not yet played (at
a stop, up to ``lead_s`` that never were).

A longer stall empties the speakers' ring (or fills the mic's), and rtmixer ends that action:
the pump starts it again and, from the new action's start time rounded to whole blocks,
fills the gap with silence marked XRUN in that ring, so indices stay stream frames. It
counts as an output underflow (an input overflow for the mic), like a device's own xrun.

Status flags: rtmixer counts the device's flags per action; a new input flag marks the
recorded samples the pump drained in that pass XRUN, a new output underflow the reference
samples played since the last pass, and each flag is counted. PortAudio does not say how
many samples a flag stands for, so the indices go on as if none were lost; the mark is what
tells the aligner to distrust them. On JACK (jackd2, seen with the dummy driver on a loaded
machine) the loopback latency may have moved by whole periods after an xrun: the latency has
to be checked again after one.

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


def finished_within(seconds: float, work, name: str) -> bool:
    """Run ``work()`` in a daemon thread; False if it did not finish within ``seconds``, and
    it is then given up on (closing a device whose server died can block for good, and must
    not hang the program and what it still has to save)."""
    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    worker.join(seconds)
    return not worker.is_alive()


def release_stream(stream) -> bool:
    """Stop and close a PortAudio stream; False if that did not finish within
    ``CLOSE_TIMEOUT_S``. A stream whose device vanished can block PortAudio for good (with
    JACK, when the server died, Pa_StopStream waits for a process cycle that never comes)."""
    import sounddevice as sd

    def close() -> None:
        try:
            stream.stop()
        except sd.PortAudioError:  # the device is already gone; closing is all that is left
            pass
        finally:
            stream.close(ignore_errors=True)

    if finished_within(CLOSE_TIMEOUT_S, close, "close-stream"):
        return True
    # sounddevice terminates PortAudio at exit, which would block on the same dead stream.
    atexit.unregister(sd._exit_handler)
    return False


def open_error(name: str, exc: Exception) -> BackendError:
    return BackendError(f"audio device {name!r} cannot be opened ({exc}); close other programs "
                        "using it or pick another device with `bgm2pose devices`")


PUMP_S = 0.02  # how often the pump moves blocks: relaxed, a couple of periods at a time
LEAD_S = 0.5  # the speakers' ring is kept this far ahead: the longest stall absorbed there
MIC_BUFFER_S = 2.0  # the mic's ring holds at least this much
# A requested start before any time stamp a stream gives: rtmixer then starts the action at
# the first frame of the next callback, whatever that callback's time stamps are.
_NOW = -1e9
_NOT_STARTED = -1.0  # rtmixer's actual_time of a belated-allowed action not started yet
_FLOAT = 4  # bytes per sample


def _power_of_two(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def start_frame(started: float, frame0: float, sample_rate: int, blocksize: int) -> int:
    """The stream frame at which an action queued for "now" began, from its start time and
    the time of frame 0 on the same clock (the stream's output or input time). Such an
    action begins at a callback's first frame, so the estimate is rounded to whole blocks:
    the time stamps jitter (JACK's are taken when the callback runs), block edges do not."""
    return round((started - frame0) * sample_rate / blocksize) * blocksize


class DuplexBackend(AudioBackend):
    separate_clocks = False  # one stream: recorded and reference indices share its frames

    def __init__(self, player: Player, device: int | str, channels: tuple[int, int] = (4, 2),
                 blocksize: int = 512, mic_convention: str = "internal",
                 ring_seconds: float = 20.0, lead_s: float = LEAD_S):
        inputs, outputs = channels
        if inputs < MIC_CHANNELS or outputs != SPEAKER_CHANNELS:
            raise BackendError(
                f"channels {channels} do not fit a B-format mic and two speakers; use "
                f"({MIC_CHANNELS} or more inputs, {SPEAKER_CHANNELS} outputs)")
        if lead_s < 2 * PUMP_S:
            raise BackendError(f"a lead of {lead_s} s leaves the pump no time to refill the "
                               f"speakers; use at least {2 * PUMP_S} s (default {LEAD_S})")
        self._mic = MicConverter(mic_convention, blocksize)
        self.player = player
        self.device = device
        self.name = str(device)
        self.channels = (inputs, outputs)
        self.blocksize = blocksize
        self.mic_convention = mic_convention
        self.sample_rate = player.sample_rate
        self.lead = int(lead_s * self.sample_rate) // blocksize * blocksize or blocksize
        self.recorded = SampleRing(MIC_CHANNELS, int(ring_seconds * self.sample_rate))
        self._out_block = np.zeros((blocksize, SPEAKER_CHANNELS), np.float32)
        self._in_block = np.zeros((blocksize, MIC_CHANNELS), np.float32)
        self._streams: list = []  # in start order
        self._pump_thread: threading.Thread | None = None
        self._halt = threading.Event()
        self._stopping = False
        self._error: str | None = None
        self._blocks = 0
        self._in_over = self._in_under = self._out_under = self._out_over = 0

    # -- lifecycle ------------------------------------------------------------------------

    def _open(self) -> tuple:
        """(the speakers' stream, the mic's stream, every stream in the order to start)."""
        import rtmixer
        import sounddevice as sd

        self.name = name = check_device(self.device, *self.channels, self.sample_rate)
        try:
            stream = rtmixer.MixerAndRecorder(device=self.device, channels=self.channels,
                                              samplerate=self.sample_rate,
                                              blocksize=self.blocksize,
                                              finished_callback=lambda: self._finished(name))
        except sd.PortAudioError as exc:
            raise open_error(name, exc) from exc
        return stream, stream, [stream]

    def start(self) -> None:
        import rtmixer
        import sounddevice as sd

        if self._streams:
            raise BackendError("the backend is already started; call start() once")
        play_stream, rec_stream, streams = self._open()
        self._out_rb = rtmixer.RingBuffer(_FLOAT * SPEAKER_CHANNELS,
                                          _power_of_two(self.lead + self.blocksize))
        self._in_rb = rtmixer.RingBuffer(
            _FLOAT * MIC_CHANNELS, _power_of_two(int(MIC_BUFFER_S * self.sample_rate)))
        self._stopping = False
        self._played = 0  # reference samples the speakers have played, as of the last pass
        self._top_up()
        # Both queued before a stream runs: each begins at frame 0 of its stream's first
        # callback.
        self._play_stream, self._rec_stream = play_stream, rec_stream
        self._play = self._play_from(0, None)
        self._rec = self._record_from(0, None)
        self._streams = streams
        try:
            for stream in streams:
                stream.start()
        except sd.PortAudioError as exc:  # e.g. the device (or JACK server) went meanwhile
            self.stop()
            raise open_error(self.name, exc) from exc
        self._halt.clear()
        self._pump_thread = threading.Thread(target=self._pump, name="audio-pump",
                                             daemon=True)
        self._pump_thread.start()

    def stop(self) -> None:
        streams = self._streams
        if not streams or self._stopping:
            return
        self._stopping = True
        self._halt.set()
        if self._pump_thread is not None:
            self._pump_thread.join()
            self._pump_thread = None
        for stream in reversed(streams):
            if not release_stream(stream) and self._error is None:
                self._error = (f"audio device {self.name!r} stopped responding and could not "
                               "be closed; check that it (or its JACK server) is still there")
        if self._rec.start is not None:  # what the stream captured before it stopped
            self._drain_mic()
        # Only now: a reader that sees the streams stopped must find every captured sample.
        self._streams = []

    @property
    def running(self) -> bool:
        """Audio may still arrive: the streams run, or stop() has not drained the mic's ring
        yet (an estimator that took them for stopped then would miss the last windows)."""
        pump, streams = self._pump_thread, self._streams
        return bool(streams) and (self._stopping or (
            all(stream.active for stream in streams) and pump is not None and pump.is_alive()))

    def stats(self) -> BackendStats:
        return BackendStats(callbacks=self._blocks, input_overflows=self._in_over,
                            input_underflows=self._in_under, output_underflows=self._out_under,
                            output_overflows=self._out_over,
                            player_underflows=self.player.status().underflows, late_blocks=0,
                            error=self._error)

    # -- the pump -------------------------------------------------------------------------

    def _pump(self) -> None:
        try:
            while not self._halt.wait(PUMP_S):
                self._mic_pass(self._rec_stream.actions)
                self._speaker_pass(self._play_stream.actions)
        except Exception as exc:  # a bug: say so; `running` turns False with the thread
            self._error = f"the audio pump stopped: {type(exc).__name__}: {exc}"

    def _mic_pass(self, live) -> None:
        rec = self._rec
        if rec.start is None and not rec.begin(self.recorded, self.sample_rate,
                                               self.blocksize):
            return
        self._blocks += rec.new("blocks")
        over, under = rec.new("input_overflows"), rec.new("input_underflows")
        self._in_over += over
        self._in_under += under
        before = self.recorded.end
        self._drain_mic()
        if over or under:
            self.recorded.events.mark(before, Mark.XRUN,
                                      max(self.recorded.end - before, self.blocksize))
        if rec.action not in live:  # the ring was full (a stall of MIC_BUFFER_S): go on
            self._in_over += 1
            self._rec = self._record_from(None, rec.frame0(self.sample_rate))

    def _speaker_pass(self, live) -> None:
        play, reference = self._play, self.player.reference
        if play.start is None:
            if not play.begin(reference, self.sample_rate, self.blocksize):
                return
            self._played = play.start
        under = play.new("output_underflows")
        self._out_under += under
        self._out_over += play.new("output_overflows")
        played = reference.end - self._out_rb.read_available
        if under:
            reference.events.mark(self._played, Mark.XRUN,
                                  max(played - self._played, self.blocksize))
        self._played = played
        if play.action in live:
            self._top_up()
            return
        # The ring ran dry (a stall of lead_s) and rtmixer ended the action. Samples queued
        # after that moment were never played: they are dropped and marked. Silence plays
        # until the player's samples come again; the new action starts at once, and learns
        # at which frame once it has.
        self._out_under += 1
        unplayed = self._out_rb.read_available
        self._out_rb.flush()  # safe: no callback reads a ring whose action has ended
        if unplayed:
            reference.events.mark(reference.end - unplayed, Mark.XRUN, unplayed)
        self._out_block.fill(0)
        for _ in range(self.lead // self.blocksize):
            self._out_rb.write(self._out_block)
        self._play = self._play_from(None, play.frame0(self.sample_rate), queued=self.lead)

    def _top_up(self) -> None:
        """Queue the player's next blocks until the speakers' ring is ``lead`` ahead."""
        while self._out_rb.read_available + self.blocksize <= self.lead:
            self.player.callback_fill(self._out_block)
            self._out_rb.write(self._out_block)

    def _drain_mic(self) -> None:
        while n := self._in_rb.readinto(self._in_block):
            self.recorded.write(self._mic(self._in_block[:n]))

    def _play_from(self, start: int | None, frame0: float | None, queued: int = 0) -> _Action:
        return _Action(self._play_stream.play_ringbuffer(self._out_rb, start=_NOW), start,
                       frame0, queued)

    def _record_from(self, start: int | None, frame0: float | None) -> _Action:
        return _Action(self._rec_stream.record_ringbuffer(self._in_rb, channels=list(
            range(1, MIC_CHANNELS + 1)), start=_NOW), start, frame0)

    def _finished(self, name: str) -> None:
        if not self._stopping:
            self._error = (f"audio device {name!r} stopped delivering audio after "
                           f"{self.recorded.end} samples (disconnected, or its server "
                           "stopped); what was recorded is kept, reconnect it and start again")


class _Action:
    """One of rtmixer's ring actions, with the stream frame it began at (None: started
    again after a stall, not known yet) and the device flags already counted."""

    def __init__(self, action, start: int | None, frame0: float | None, queued: int = 0):
        self.action = action
        self.start = start
        self._origin = frame0  # stream time of frame 0, to place a restart by
        self._queued = queued  # silence queued ahead of the ring's next samples
        self._seen: dict[str, int] = {}

    def frame0(self, sample_rate: int) -> float:
        """Stream time of frame 0 on this action's clock."""
        return self.action.actual_time - self.start / sample_rate

    def begin(self, ring: SampleRing, sample_rate: int, blocksize: int) -> bool:
        """Once a restarted action runs: fill ``ring`` with silence (marked XRUN) up to the
        frame its samples come back at, so its indices stay stream frames. False before."""
        started = self.action.actual_time
        if started == _NOT_STARTED:
            return False
        self.start = start_frame(started, self._origin, sample_rate, blocksize)
        ring.write_silence(max(0, self.start + self._queued - ring.end))
        return True

    def new(self, flag: str) -> int:
        """How many more of rtmixer's ``flag`` count this action has seen since asked last."""
        count = getattr(self.action.stats, flag)
        new, self._seen[flag] = count - self._seen.get(flag, 0), count
        return new
