"""The virtual rig as a JACK client: two speaker-feed inputs in, four B-format mic outputs out.

Any JACK-aware program (PortAudio lists the client as a device named like it, 4 inputs and
2 outputs) can play into the simulated room and record it, which exercises the real audio
path end to end. Ports: ``speaker_L``, ``speaker_R`` (inputs) and ``mic_W`` ... ``mic_Z``
(outputs, internal B-format W X Y Z, see ``bformat``).

Real time: the JACK process callback never renders (a render burst takes milliseconds to
tens of milliseconds). It copies its input block into an input ring and copies a block
rendered earlier out of an output ring. A worker thread renders whatever input has arrived
(``SceneRenderer``, the scene of a ``VirtualScene``) into the output ring. The callback is
Python and needs the GIL, so every other thread of the room that takes it (the renderer,
the main thread, JACK's notification thread) runs at the lowest real-time priority where
the system allows it (``_real_time_thread``). A ``--rig`` file of ``{"body_paths":
"direct"}`` gives test rigs a cheaper room.

Time base: room sample r is the r-th sample since activation, on inputs and outputs alike.
The output lags the input by exactly ``delay_samples = delay_periods * period``: output
sample r is rendered sample ``r - delay_samples``, and rendered sample t is the rendering of
input samples up to t (the sound's travel time through the room is part of the rendering).
If the worker has not finished a block when the callback needs it, the block goes out as
silence and counts in ``late_blocks``; the delay never changes. A client that plays into the
room and records it in one JACK duplex stream sees a loopback latency of ``delay_samples``
plus two periods, every run (jackd2 1.9, dummy driver: the loop stream -> room -> stream
costs one period each way).

Ground truth: pose frame f (120 fps) is the pose at rendered sample ``f * rate / 120``,
which leaves the room at output sample ``f * rate / 120 + delay_samples``. With
``tape_seconds`` the worker also keeps the first seconds of input (what the room heard),
for checks against an offline ``render_session``.

Run it as ``python -m bgm2pose.sensing.virtual_room --server NAME --seconds S`` (see
``main``); it prints one JSON line when ready and one with its statistics when it stops.
The process should run with ``OPENBLAS_NUM_THREADS=1`` (set before numpy loads).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass

import numpy as np

from bgm2pose.sensing.skeleton import N_JOINTS
from bgm2pose.sensing.backend_virtual import PoseTape, VirtualScene
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.ring import RingError, SampleRing
from bgm2pose.sensing.sim.motion import SUBJECTS
from bgm2pose.sensing.sim.render import POSE_FPS
from bgm2pose.sensing.sim.rig import read_rig

DEFAULT_NAME = "room"
DEFAULT_DELAY_PERIODS = 12  # ~128 ms at 512: covers a body-geometry burst on a busy machine
INPUT_PORTS = ("speaker_L", "speaker_R")
OUTPUT_PORTS = ("mic_W", "mic_X", "mic_Y", "mic_Z")
_CHUNK_PERIODS = 4  # the most a worker pass renders at once when it has fallen behind
_WARM_UP_PERIODS = 12


class VirtualRoomError(UserError, RuntimeError):
    """The JACK server or the room's settings cannot be used."""


@dataclass(frozen=True)
class RoomStats:
    cycles: int  # process callbacks since activation
    late_blocks: int  # output blocks sent as silence because the worker was behind
    xruns: int  # xruns the JACK server reported
    rendered: int  # samples rendered
    cpu_load: float  # process CPU time / wall time since activation (1.0 = one core)
    dsp_load: float  # the JACK server's DSP load, percent
    realtime_render: bool  # the renderer ran at a real-time priority (``_real_time_thread``)
    error: str | None


@dataclass(frozen=True)
class RoomTape:
    input: np.ndarray  # (2, N) float32: room samples 0..N-1 as the room heard them
    poses: np.ndarray  # (F, 21, 3) float32: every frame pulled, frame f at rendered f*rate/120
    delay_samples: int
    period: int


class VirtualRoom:
    """The virtual rig as a JACK client; see the module docstring."""

    def __init__(self, scene: VirtualScene | None = None, *, name: str = DEFAULT_NAME,
                 server: str | None = None, delay_periods: int = DEFAULT_DELAY_PERIODS,
                 ring_seconds: float = 10.0, tape_seconds: float = 0.0):
        if delay_periods < 1:
            raise VirtualRoomError(f"delay of {delay_periods} periods leaves the worker no "
                                   "time to render; use at least 1 (default "
                                   f"{DEFAULT_DELAY_PERIODS})")
        self.scene = VirtualScene() if scene is None else scene
        self.name = name
        self.server = server
        self.delay_periods = delay_periods
        self.sample_rate = self.scene.rig.sample_rate
        self.frame_samples = self.sample_rate // POSE_FPS
        capacity = int(ring_seconds * self.sample_rate)
        self.inputs = SampleRing(len(INPUT_PORTS), capacity)
        self.outputs = SampleRing(len(OUTPUT_PORTS), capacity)
        self._tape = np.zeros((len(INPUT_PORTS), int(tape_seconds * self.sample_rate)),
                              np.float32)
        self._pose_frames = int((max(ring_seconds, tape_seconds) + 1) * POSE_FPS)
        self.poses: PoseTape | None = None
        self.period = 0
        self._client = None
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._cycles = self._late = self._xruns = self._rendered = 0
        self._error: str | None = None
        self.realtime_render = False  # the renderer runs at a real-time priority
        self._clock = (0.0, 0.0)  # (wall, CPU) at activation

    @property
    def delay_samples(self) -> int:
        return self.delay_periods * self.period

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Build the scene, warm the renderer up, then join the JACK graph."""
        import jack

        if self._client is not None:
            raise VirtualRoomError("the room is already started; call start() once")
        try:
            client = jack.Client(self.name, use_exact_name=True, no_start_server=True,
                                 servername=self.server)
        except jack.JackOpenError as exc:
            raise VirtualRoomError(
                f"cannot join JACK server {self.server or '(default)'} as {self.name!r} "
                f"({exc}); start the server (jackd -d dummy -r {self.sample_rate}) or pick a "
                "client name not in use") from exc
        if client.samplerate != self.sample_rate:
            client.close()
            raise VirtualRoomError(
                f"the JACK server runs at {client.samplerate} Hz but the virtual rig at "
                f"{self.sample_rate} Hz; restart the server with -r {self.sample_rate}")
        self.period = client.blocksize
        self._in_block = np.zeros((self.period, len(INPUT_PORTS)), np.float32)
        self._out_block = np.zeros((len(OUTPUT_PORTS), self.period), np.float32)
        self.renderer, self.poses = self.scene.build(self._pose_frames)
        self._warm_up()
        self._inports = [client.inports.register(p) for p in INPUT_PORTS]
        self._outports = [client.outports.register(p) for p in OUTPUT_PORTS]
        client.set_process_callback(self._process)
        client.set_xrun_callback(self._on_xrun)
        client.set_shutdown_callback(self._on_shutdown)
        self._client = client
        self._worker = threading.Thread(target=self._work, name="room-render", daemon=True)
        self._worker.start()
        self._clock = (time.monotonic(), time.process_time())
        client.activate()

    def stop(self) -> None:
        self._stop.set()
        client, self._client = self._client, None
        if client is not None:
            client.deactivate(ignore_errors=True)
            client.close(ignore_errors=True)
        if self._worker is not None:
            self._worker.join()

    def __enter__(self) -> VirtualRoom:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the room stops (``stop``, or the JACK server went away); True if so."""
        return self._stop.wait(timeout)

    # -- results --------------------------------------------------------------------------

    def stats(self) -> RoomStats:
        wall, cpu = self._clock
        elapsed = time.monotonic() - wall
        client = self._client
        return RoomStats(cycles=self._cycles, late_blocks=self._late, xruns=self._xruns,
                         rendered=self._rendered,
                         cpu_load=(time.process_time() - cpu) / elapsed if wall else 0.0,
                         dsp_load=client.cpu_load() if client is not None else 0.0,
                         realtime_render=self.realtime_render,
                         error=self._error)

    def ground_truth(self, start_sample: int, n: int) -> np.ndarray | None:
        """Poses of the frames that leave the room in output samples
        [start_sample, start_sample + n); None for an empty room."""
        if self.poses is None:
            return None
        fs, first = self.frame_samples, start_sample - self.delay_samples
        return self.poses.frames(-(-first // fs), -(-(first + n) // fs))

    def tape(self) -> RoomTape:
        """The input heard so far (up to ``tape_seconds``) and every pose frame pulled."""
        heard = min(self._rendered, self._tape.shape[1])
        poses = (np.zeros((0, N_JOINTS, 3), np.float32) if self.poses is None
                 else self.poses.frames(max(0, self.poses.end - self.poses.capacity),
                                        self.poses.end))
        return RoomTape(self._tape[:, :heard].copy(), poses, self.delay_samples, self.period)

    # -- threads --------------------------------------------------------------------------

    def _warm_up(self) -> None:
        """Render silence through a throwaway copy of the scene, so compilation and first-call
        set-up happen before the room is in the graph, not in its first cycles."""
        renderer, _ = self.scene.build(self._pose_frames, room=self.renderer.room)
        silence = np.zeros((len(INPUT_PORTS), self.period), np.float32)
        for _ in range(_WARM_UP_PERIODS):
            renderer.process(silence)

    def _process(self, frames: int) -> None:
        """JACK callback: copies only (see the module docstring)."""
        block = self._in_block[:frames]
        for c, port in enumerate(self._inports):
            block[:, c] = port.get_array()
        start = self.inputs.end
        self.inputs.write(block)
        out = self._out_block[:, :frames]
        first = start - self.delay_samples
        if first >= 0 and self.outputs.end >= first + frames:
            try:
                self.outputs.read(first, frames, out)
            except RingError:  # overwritten while copying: the worker lapped a whole ring
                out.fill(0)
                self._late += 1
        else:
            out.fill(0)
            self._late += first >= 0
        for c, port in enumerate(self._outports):
            port.get_array()[:] = out[c]
        self._cycles += 1

    def _work(self) -> None:
        self.realtime_render = _real_time_thread()
        nap = self.period / self.sample_rate / 4
        try:
            while not self._stop.is_set():
                done = self._rendered
                n = min(self.inputs.end - done, _CHUNK_PERIODS * self.period)
                if n <= 0:
                    time.sleep(nap)
                    continue
                music = self.inputs.read(done, n)
                self.outputs.write(self.renderer.process(music).T)
                keep = min(n, self._tape.shape[1] - done)
                if keep > 0:
                    self._tape[:, done:done + keep] = music[:, :keep]
                self._rendered = done + n
        except Exception as exc:  # a bug, or the ring lapped: the room goes silent
            self._error = f"the room stopped rendering: {type(exc).__name__}: {exc}"

    def _on_xrun(self, delay_usecs: float) -> None:
        # JACK's notification thread: it takes the GIL here, so it must not be preempted
        # while holding it either, or the room's next cycles are late too.
        if not self._xruns:
            _real_time_thread()
        self._xruns += 1

    def _on_shutdown(self, status, reason: str) -> None:
        server = f"JACK server {self.server!r}" if self.server else "default JACK server"
        self._error = (f"the {server} shut down under the room ({reason.rstrip('.')}); start "
                       f"it again (e.g. jackd -d dummy -r {self.sample_rate}) and then the room")
        self._stop.set()


DESCRIPTION = ("Run the virtual rig (simulated room with a moving person) as a JACK client: "
               "2 speaker inputs, 4 B-format mic outputs.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=None,
                        help="JACK server name (default: $JACK_DEFAULT_SERVER or 'default')")
    parser.add_argument("--name", default=DEFAULT_NAME, help="JACK client name")
    parser.add_argument("--seconds", type=float, default=0.0,
                        help="stop after this many seconds (0: run until interrupted)")
    parser.add_argument("--delay-periods", type=int, default=DEFAULT_DELAY_PERIODS,
                        help="periods the output lags the input")
    parser.add_argument("--subject", default=SUBJECTS[0].name,
                        help=f"one of {', '.join(s.name for s in SUBJECTS)}, or 'none' for "
                             "an empty room")
    parser.add_argument("--rig", metavar="JSON",
                        help="file of rig settings over the built-in rig, e.g. "
                             '{"body_paths": "direct"}: only the direct sound meets the body, '
                             "a cheaper room for test rigs (default: the built-in rig)")
    parser.add_argument("--motion-seed", type=int, default=0)
    parser.add_argument("--noise-seed", type=int, default=0)
    parser.add_argument("--tape", default=None,
                        help="write what the room heard and the poses to this .npz on exit")
    parser.add_argument("--tape-seconds", type=float, default=60.0,
                        help="seconds of input kept for --tape")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bgm2pose virtual-room", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def _real_time_thread() -> bool:
    """Give the calling thread the lowest real-time priority, if the system allows it (root,
    or an rtprio limit, which JACK's own real-time threads need as well); False if not.

    For the room's threads besides the callback: the JACK callback is Python and needs the
    GIL, which the renderer holds for most of its work. Preempted meanwhile by any ordinary
    process (a busy loop, even at nice 19), it kept the real-time callback waiting past its
    cycle, and jackd named the room as the late client. At a real-time priority below
    JACK's, only JACK's threads preempt it."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:
        return False
    return True


def _leave_portaudio() -> None:
    """Shut down PortAudio if an import started it (pyroomacoustics imports sounddevice).

    PortAudio's JACK host API joins the server as a client of its own, which the room never
    uses; if the server dies, its exit handler asserts (pa_jack.c) and aborts the process
    before the room can say why it stopped."""
    sd = sys.modules.get("sounddevice")
    while sd is not None and sd._initialized:
        sd._terminate()


def run(args: argparse.Namespace) -> int:
    _leave_portaudio()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        scene = VirtualScene.named(args.subject, args.motion_seed, args.noise_seed,
                                   read_rig(args.rig))
        room = VirtualRoom(scene, name=args.name, server=args.server,
                           delay_periods=args.delay_periods,
                           tape_seconds=args.tape_seconds if args.tape else 0.0)
        room.start()
    except UserError as exc:
        print(f"bgm2pose virtual-room: {exc}", file=sys.stderr)
        return 2
    # A dedicated audio process: no collector pauses while the callback waits for the GIL,
    # and a short switch interval so the callback gets the GIL back from the renderer soon.
    # This thread wakes ten times a second and holds the GIL meanwhile, like the renderer.
    gc.freeze()
    gc.disable()
    sys.setswitchinterval(0.001)
    _real_time_thread()
    print(json.dumps({"event": "ready", "name": args.name, "period": room.period,
                      "delay_samples": room.delay_samples}), flush=True)
    deadline = time.monotonic() + args.seconds
    while not done.is_set() and not room.wait(0.1):
        if args.seconds and time.monotonic() >= deadline:
            break
    stats = room.stats()
    room.stop()
    if args.tape:
        tape = room.tape()
        np.savez(args.tape, input=tape.input, poses=tape.poses,
                 delay_samples=tape.delay_samples, period=tape.period)
    print(json.dumps({"event": "stopped", **asdict(stats)}), flush=True)
    if stats.error:
        print(f"bgm2pose virtual-room: {stats.error}", file=sys.stderr)
    return 1 if stats.error else 0


if __name__ == "__main__":
    sys.exit(main())
