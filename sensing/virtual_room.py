"""The virtual rig as a JACK client: two speaker-feed inputs in, four B-format mic outputs out.

Any JACK-aware program (PortAudio lists the client as a device named like it, 4 inputs and
2 outputs) can play into the simulated room and record it, which exercises the real audio
path end to end. Ports: ``speaker_L``, ``speaker_R`` (inputs) and ``mic_W`` ... ``mic_Z``
(outputs, internal B-format W X Y Z, see ``bformat``).

Real time: the JACK process callback never renders (a render burst takes milliseconds to
tens of milliseconds). It sends its input block to a renderer in a process of its own
(``_render``: ``SceneRenderer``, the scene of a ``VirtualScene``) and copies a block rendered
earlier out of an output ring, which it fills with whatever the renderer has sent back. The
callback is Python and needs the GIL: with the renderer in the same process it waited for
the GIL behind numpy calls, and jackd named the room as the late client (and bgm2pose's
stream, woken late behind it) on a busy 2-core machine. In a process of its own the
renderer takes no GIL of the callback's, and it runs at an ordinary priority: at a
real-time one, catching up after a burst kept a core busy long enough for the kernel's
real-time throttling to stall every real-time thread, jackd's included, for tens of
milliseconds. The room's main and JACK notification threads, which do take the GIL, run at
the lowest real-time priority where the system allows it (``_real_time_thread``), so that
a busy loop cannot preempt one of them while it holds it. A ``--rig`` file of
``{"body_paths": "direct"}`` gives test rigs a cheaper room.

Time base: room sample r is the r-th sample since activation, on inputs and outputs alike.
The output lags the input by exactly ``delay_samples = delay_periods * period``: output
sample r is rendered sample ``r - delay_samples``, and rendered sample t is the rendering of
input samples up to t (the sound's travel time through the room is part of the rendering).
If the renderer has not sent a block back when the callback needs it, the block goes out as
silence and counts in ``late_blocks``; the delay never changes. A client that plays into the
room and records it in one JACK duplex stream sees a loopback latency of ``delay_samples``
plus two periods, every run (jackd2 1.9, dummy driver: the loop stream -> room -> stream
costs one period each way).

Ground truth: pose frame f (120 fps) is the pose at rendered sample ``f * rate / 120``,
which leaves the room at output sample ``f * rate / 120 + delay_samples``. With a tape path
the renderer writes, when the room stops, the first ``tape_seconds`` of input (what the room
heard) and every pose frame pulled, for checks against an offline ``render_session``.

Run it as ``python -m bgm2pose.sensing.virtual_room --server NAME --seconds S`` (see
``main``); it prints one JSON line when ready and one with its statistics when it stops.
The process should run with ``OPENBLAS_NUM_THREADS=1`` (set before numpy loads).
"""

from __future__ import annotations

import argparse
import fcntl
import gc
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass

import numpy as np

from bgm2pose.sensing.backend_duplex import CLOSE_TIMEOUT_S, finished_within
from bgm2pose.sensing.backend_virtual import VirtualScene
from bgm2pose.sensing.skeleton import N_JOINTS
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.ring import RingError, SampleRing
from bgm2pose.sensing.sim.motion import SUBJECTS
from bgm2pose.sensing.sim.render import POSE_FPS
from bgm2pose.sensing.sim.rig import read_rig

DEFAULT_NAME = "room"
DEFAULT_DELAY_PERIODS = 12  # ~128 ms at 512: covers a body-geometry burst on a busy machine
INPUT_PORTS = ("speaker_L", "speaker_R")
OUTPUT_PORTS = ("mic_W", "mic_X", "mic_Y", "mic_Z")
_WARM_UP_PERIODS = 12
_PIPE_BYTES = 1 << 20  # ~1.4 s of input at 48 kHz: the renderer may fall that far behind
_RENDERER_WAIT = 60.0  # s for the renderer to start (imports, scene) or to finish its tape


class VirtualRoomError(UserError, RuntimeError):
    """The JACK server or the room's settings cannot be used."""


@dataclass(frozen=True)
class RoomStats:
    cycles: int  # process callbacks since activation
    late_blocks: int  # output blocks sent as silence because the renderer was behind
    xruns: int  # xruns the JACK server reported
    rendered: int  # samples rendered
    cpu_load: float  # CPU time of both processes / wall time since activation (1.0 = one core)
    dsp_load: float  # the JACK server's DSP load, percent
    error: str | None


class VirtualRoom:
    """The virtual rig as a JACK client; see the module docstring."""

    def __init__(self, scene: VirtualScene | None = None, *, name: str = DEFAULT_NAME,
                 server: str | None = None, delay_periods: int = DEFAULT_DELAY_PERIODS,
                 ring_seconds: float = 10.0, tape: str | None = None,
                 tape_seconds: float = 0.0):
        if delay_periods < 1:
            raise VirtualRoomError(f"delay of {delay_periods} periods leaves the renderer no "
                                   "time to render; use at least 1 (default "
                                   f"{DEFAULT_DELAY_PERIODS})")
        self.scene = VirtualScene() if scene is None else scene
        self.name = name
        self.server = server
        self.delay_periods = delay_periods
        self.sample_rate = self.scene.rig.sample_rate
        self.outputs = SampleRing(len(OUTPUT_PORTS), int(ring_seconds * self.sample_rate))
        self.tape_path, self.tape_seconds = tape, tape_seconds
        self.period = 0
        self._client = None
        self._renderer: multiprocessing.Process | None = None
        self._stop = threading.Event()
        self._cycles = self._late = self._xruns = self._heard = 0
        self._error: str | None = None
        self._report: dict = {}  # the renderer's last word: "ready", then its totals
        self._dsp_load = 0.0  # the server's, when the room left it
        self._clock = (0.0, 0.0)  # (wall, CPU) at activation

    @property
    def delay_samples(self) -> int:
        return self.delay_periods * self.period

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Join the JACK server, start the renderer and wait for it, then join the graph."""
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
        self._client = client
        self.period = client.blocksize
        self._in_block = np.zeros((self.period, len(INPUT_PORTS)), np.float32)
        self._out_block = np.zeros((len(OUTPUT_PORTS), self.period), np.float32)
        self._rendered_block = np.zeros((self.period, len(OUTPUT_PORTS)), np.float32)
        self._start_renderer()
        self._inports = [client.inports.register(p) for p in INPUT_PORTS]
        self._outports = [client.outports.register(p) for p in OUTPUT_PORTS]
        client.set_process_callback(self._process)
        client.set_xrun_callback(self._on_xrun)
        client.set_shutdown_callback(self._on_shutdown)
        self._clock = (time.monotonic(), time.process_time())
        client.activate()

    def _start_renderer(self) -> None:
        # A fresh interpreter (spawn): the room's process already holds JACK's threads.
        context = multiprocessing.get_context("spawn")
        music_out, self._music = context.Pipe(duplex=False)
        self._rendered, rendered_in = context.Pipe(duplex=False)
        self._reports, report_in = context.Pipe(duplex=False)
        for conn in (self._music, self._rendered):
            fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        self._renderer = context.Process(
            target=_render, name="room-render", daemon=True,
            args=(self.scene, self.period, self.delay_samples, music_out, rendered_in,
                  report_in, self.tape_path, self.tape_seconds))
        self._renderer.start()
        for conn in (music_out, rendered_in, report_in):
            conn.close()  # the renderer's ends: its exit is then an end of file here
        if not self._reports.poll(_RENDERER_WAIT):
            self.stop()
            raise VirtualRoomError(f"the room's renderer did not start within "
                                   f"{_RENDERER_WAIT:.0f} s; the machine is too busy")
        self._report = self._read_report()
        if self._report.get("error"):
            error = self._report["error"]
            self.stop()
            raise VirtualRoomError(error)

    def _read_report(self) -> dict:
        try:
            return self._reports.recv()
        except (EOFError, OSError):
            return {"error": "the room's renderer ended without a word (killed, or out of "
                             "memory); start the room again"}

    def stop(self) -> None:
        """Leave the graph, let the renderer finish (and write its tape), collect its totals."""
        self._stop.set()
        client, self._client = self._client, None
        if client is not None:
            self._dsp_load = client.cpu_load()
            _release(client)
        renderer, self._renderer = self._renderer, None
        if renderer is None:
            return
        # The room reads nothing more (a renderer still sending would block on a full pipe),
        # and the renderer gets its end of file.
        self._rendered.close()
        self._music.close()
        if self._reports.poll(_RENDERER_WAIT):
            self._report = self._read_report()
        renderer.join(_RENDERER_WAIT)
        if renderer.is_alive():
            renderer.kill()
            renderer.join()
        if self._error is None:
            self._error = self._report.get("error")

    def __enter__(self) -> VirtualRoom:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the room stops (``stop``, the renderer or the JACK server went away);
        True if so."""
        return self._stop.wait(timeout)

    # -- results --------------------------------------------------------------------------

    def stats(self) -> RoomStats:
        """Totals; the renderer's (samples, CPU time, tape) are final after ``stop``."""
        wall, cpu = self._clock
        elapsed = time.monotonic() - wall
        client = self._client
        cpu_time = time.process_time() - cpu + self._report.get("cpu_seconds", 0.0)
        return RoomStats(cycles=self._cycles, late_blocks=self._late, xruns=self._xruns,
                         rendered=self._report.get("rendered", 0),
                         cpu_load=cpu_time / elapsed if wall else 0.0,
                         dsp_load=client.cpu_load() if client is not None else self._dsp_load,
                         error=self._error)

    # -- real time ------------------------------------------------------------------------

    def _process(self, frames: int) -> None:
        """JACK callback: sends and copies only (see the module docstring)."""
        block = self._in_block[:frames]
        for c, port in enumerate(self._inports):
            block[:, c] = port.get_array()
        start, self._heard = self._heard, self._heard + frames
        out = self._out_block[:, :frames]
        try:
            self._music.send_bytes(block)
            while self._rendered.poll():
                rendered = self._rendered_block
                # Flat: a connection sizes its buffer by len(), the first axis only.
                n = self._rendered.recv_bytes_into(rendered.reshape(-1)) // rendered[0].nbytes
                self.outputs.write(rendered[:n])
        except (OSError, EOFError):  # the renderer died: the room goes silent and stops
            if self._error is None:
                self._error = self._read_report().get("error") if self._reports.poll() else (
                    "the room's renderer ended without a word (killed, or out of memory); "
                    "start the room again")
            self._stop.set()
        first = start - self.delay_samples
        if first >= 0 and self.outputs.end >= first + frames:
            try:
                self.outputs.read(first, frames, out)
            except RingError:  # overwritten while copying: the renderer lapped a whole ring
                out.fill(0)
                self._late += 1
        else:
            out.fill(0)
            self._late += first >= 0
        for c, port in enumerate(self._outports):
            port.get_array()[:] = out[c]
        self._cycles += 1

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


def _release(client) -> None:
    """Deactivate and close a JACK client, giving up after ``CLOSE_TIMEOUT_S``: after its
    server died, jack_client_close can wait for good on a lock of libjack's (seen here, now
    and then, with the room's main thread stuck in it)."""
    def close() -> None:
        client.deactivate(ignore_errors=True)
        client.close(ignore_errors=True)

    finished_within(CLOSE_TIMEOUT_S, close, "close-jack")


def _render(scene: VirtualScene, period: int, delay_samples: int, music, rendered, reports,
            tape: str | None, tape_seconds: float) -> None:
    """The renderer's process: renders each block of music the room sends, in order, and
    sends it back; at the room's end of file, writes the tape and reports its totals."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the room's main process decides when to stop
    _leave_portaudio()  # unpickling the scene imported sounddevice, which joined JACK
    cpu = time.process_time()
    fs = scene.rig.sample_rate
    heard = np.zeros((len(INPUT_PORTS), int(tape_seconds * fs)), np.float32)
    done = 0
    error = None
    try:
        renderer, poses = scene.build(int((tape_seconds + 11) * POSE_FPS))
        # Compilation and first-call set-up happen before the room is in the graph, through a
        # throwaway copy of the scene, not in its first cycles.
        warm_up, _ = scene.build(1, room=renderer.room)
        for _ in range(_WARM_UP_PERIODS):
            warm_up.process(np.zeros((len(INPUT_PORTS), period), np.float32))
        reports.send({"event": "ready"})
        cpu = time.process_time()
        block = np.zeros((period, len(INPUT_PORTS)), np.float32)
        listening = True  # the room reads what is rendered until it stops
        while True:
            try:
                n = music.recv_bytes_into(block.reshape(-1)) // block[0].nbytes
            except EOFError:
                break
            out = renderer.process(block[:n].T)
            if listening:
                try:
                    rendered.send_bytes(np.ascontiguousarray(out.T, np.float32))
                except BrokenPipeError:  # stopping: what is left only goes on the tape
                    listening = False
            keep = min(n, heard.shape[1] - done)
            if keep > 0:
                heard[:, done:done + keep] = block[:keep].T
            done += n
        if tape:
            frames = (np.zeros((0, N_JOINTS, 3), np.float32) if poses is None else
                      poses.frames(max(0, poses.end - poses.capacity), poses.end))
            np.savez(tape, input=heard[:, :min(done, heard.shape[1])], poses=frames,
                     delay_samples=delay_samples, period=period)
    except Exception as exc:  # a bug or a bad scene: the room says so and stops
        error = f"the room stopped rendering: {type(exc).__name__}: {exc}"
    reports.send({"event": "done", "rendered": done, "cpu_seconds": time.process_time() - cpu,
                  "error": error})


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

    For the room's threads besides the callback that take the GIL (they hold it briefly):
    preempted meanwhile by any ordinary process (a busy loop, even at nice 19), one kept the
    real-time callback waiting past its cycle. At a real-time priority below JACK's, only
    JACK's threads preempt it."""
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
                           delay_periods=args.delay_periods, tape=args.tape,
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
    room.stop()
    stats = room.stats()
    print(json.dumps({"event": "stopped", **asdict(stats)}), flush=True)
    if stats.error:
        print(f"bgm2pose virtual-room: {stats.error}", file=sys.stderr)
    return 1 if stats.error else 0


if __name__ == "__main__":
    sys.exit(main())
