"""Audio backends: the virtual rig in process and as a JACK client recorded through PortAudio,
compared sample for sample with the offline renderer; device errors; the duplex callback."""

from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass

import numpy as np
import pytest
from scipy.signal import correlate

from bgm2pose.sensing.aligner import WINDOW, Aligner
from bgm2pose.sensing.backend_duplex import DuplexBackend, MicConverter, start_frame
from bgm2pose.sensing.backend_virtual import VirtualBackend, VirtualScene
from bgm2pose.sensing.backends import (BackendError, BackendStats, list_devices,
                                       refresh_devices)
from bgm2pose.sensing.bformat import from_internal, to_internal
from bgm2pose.sensing.jack_log import late_clients
from bgm2pose.sensing.player import Player
from bgm2pose.sensing.ring import Mark
from bgm2pose.sensing.sim.render import render_session
from bgm2pose.sensing.sim.rig import read_rig

FS = 48_000


def noise(seed: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((2, int(seconds * FS)))).astype(np.float32)


def loaded_player(music: np.ndarray, ring_seconds: float) -> Player:
    """A player with the whole track decoded before playback (no decoder thread needed)."""
    player = Player([music], fifo_frames=music.shape[1] + FS,
                    ring_capacity=int(ring_seconds * FS))
    player.pump()
    return player


def expected_poses(scene: VirtualScene, frames: int) -> np.ndarray:
    """The frames a fresh motion source of the scene gives (motion is seeded and
    chunk-independent, so these are the frames the rig was fed)."""
    return scene.motion().next(frames)


# ---------------------------------------------------------------- in process


def test_virtual_backend_windows_equal_the_offline_rendering_and_ground_truth_is_the_motion():
    scene = VirtualScene(motion_seed=3, noise_seed=5)
    music = noise(1, 2.0)
    total = music.shape[1] + 1_000  # past the track's end: silence is rendered as well
    player = loaded_player(music, 4.0)
    backend = VirtualBackend(player, scene, realtime=False, stop_after=total, ring_seconds=4.0)
    aligner = Aligner(backend.recorded, player.reference, latency=0)
    windows = []
    with backend:
        while backend.running:
            window = aligner.next_window()
            if window is None:
                time.sleep(0.005)
            else:
                windows.append(window)
        assert backend.wait(30)
    last = aligner.next_window()
    windows += [last] if last is not None else []

    stats = backend.stats()
    assert stats.error is None and stats.xruns == 0 and stats.player_underflows == 0
    assert backend.recorded.end == player.reference.end == total
    played = player.reference.read(0, total)
    np.testing.assert_array_equal(played[:, :music.shape[1]], music)
    assert not played[:, music.shape[1]:].any()

    frames = total // backend.frame_samples + 60  # the renderer reads poses ahead
    poses = expected_poses(scene, frames)
    offline = render_session(scene.rig, played, poses, **scene.render_options())
    assert len(windows) >= 2
    assert windows[-1].end_sample == total // 2_400 * 2_400
    for window in windows:
        start = window.end_sample - WINDOW
        assert window.reference_start == start and not window.flags
        np.testing.assert_array_equal(window.music, played[:, start:window.end_sample])
        np.testing.assert_allclose(window.mic, offline[:, start:window.end_sample], atol=1e-5)
    assert np.abs(offline).max() > 0.05  # the comparison is of a real signal

    truth = backend.ground_truth(0, total)
    assert truth.shape == (-(-total // backend.frame_samples), 21, 3)
    np.testing.assert_array_equal(truth, poses[:len(truth)])
    # A window's ground truth is its frames: 0.6 s at 120 fps.
    assert backend.ground_truth(windows[-1].end_sample - WINDOW, WINDOW).shape == (72, 21, 3)


def test_virtual_backend_in_real_time_runs_until_stopped_and_loses_no_block():
    player = loaded_player(noise(2, 1.0), 4.0)
    backend = VirtualBackend(player, VirtualScene(subject=None), realtime=True)
    assert backend.ground_truth(0, FS) is None  # an empty room has no poses
    with backend:
        time.sleep(0.5)
        assert backend.running
    assert not backend.running
    stats = backend.stats()
    assert stats.error is None and stats.callbacks > 0
    assert backend.recorded.end == player.reference.end == stats.callbacks * 512


# ---------------------------------------------------------------- duplex mic conversion


@pytest.mark.parametrize("convention", ["ambix", "fuma"])
def test_mic_blocks_become_internal_b_format_without_allocating(convention):
    internal = noise(4, 0.1).reshape(4, -1)[:, :512 * 4]  # 4 blocks of W X Y Z
    device_in = np.ascontiguousarray(from_internal(internal, convention).T)  # (frames, 4)
    convert = MicConverter(convention, 512)
    out = np.zeros((4, 2048), np.float32)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for k in range(4):
            out[:, k * 512:(k + 1) * 512] = convert(device_in[k * 512:(k + 1) * 512]).T
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Small Python objects only: a block of the mic (8 KiB) is never allocated.
    assert peak - before < 4096
    np.testing.assert_allclose(out, internal, atol=1e-7)


# ---------------------------------------------------------------- device errors


def test_a_missing_device_is_named_with_the_fix():
    backend = DuplexBackend(loaded_player(noise(5, 0.1), 1.0), device="no-such-mic-xyz")
    with pytest.raises(BackendError, match="'no-such-mic-xyz' was not found.*bgm2pose devices"):
        backend.start()
    assert not backend.running


def test_bad_settings_are_refused():
    player = loaded_player(noise(6, 0.1), 1.0)
    with pytest.raises(BackendError, match="two speakers"):
        DuplexBackend(player, device="x", channels=(2, 2))
    with pytest.raises(BackendError, match="convention 'fuma2' is unknown"):
        DuplexBackend(player, device="x", mic_convention="fuma2")


def test_a_device_with_two_inputs_is_refused(jack_server):
    import jack

    client = jack.Client("twoin", use_exact_name=True, no_start_server=True)
    try:
        for i in range(2):
            client.inports.register(f"in_{i}")
            client.outports.register(f"out_{i}")
        client.activate()
        refresh_devices()
        device = next(d for d in list_devices() if d.name == "twoin")
        assert (device.max_input_channels, device.can_duplex) == (2, False)
        backend = DuplexBackend(loaded_player(noise(7, 0.1), 1.0), device="twoin")
        with pytest.raises(BackendError, match="'twoin' has 2 input.*needs 4"):
            backend.start()
    finally:
        client.deactivate()
        client.close()
        refresh_devices()


# ---------------------------------------------------------------- through JACK


# A device flags an xrun a few periods after the glitch it reports, and on JACK the loop's
# latency may have moved by whole periods after it: takes are compared up to their first
# flagged xrun, less this margin.
XRUN_MARGIN = 8 * 512
CLEAN_NEEDED = FS  # a take counts with at least one second before its first xrun


@dataclass
class Take:
    convention: str
    played: np.ndarray  # (2, N) the reference ring
    recorded: np.ndarray  # (4, N) the recorded ring
    stats: BackendStats
    clean: int  # samples before the first flagged xrun, less XRUN_MARGIN


def record_through(device: str, music: np.ndarray, convention: str) -> Take:
    """Play ``music`` into ``device``, then half a second of silence, and record it."""
    player = loaded_player(music, 5.0)
    backend = DuplexBackend(player, device=device, mic_convention=convention, ring_seconds=5.0)
    with backend:
        deadline = time.monotonic() + 20
        while backend.recorded.end < music.shape[1] + FS // 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backend.running
    stats, end = backend.stats(), backend.recorded.end
    assert stats.error is None and stats.player_underflows == 0
    # Every xrun the device flagged marks samples where the aligner will see it.
    marks = {ring: [e for e in ring.events.marks_between(-1, end + 1) if e.kind is Mark.XRUN]
             for ring in (backend.recorded, player.reference)}
    assert bool(marks[backend.recorded]) == bool(stats.input_overflows + stats.input_underflows)
    assert bool(marks[player.reference]) == bool(stats.output_underflows)
    first = min([e.index for events in marks.values() for e in events], default=end)
    # Ring indices are stream frames: the reference up to the recording's end is what the
    # speakers played meanwhile (the ring holds samples queued beyond it, never played).
    return Take(convention, player.reference.read(0, end), backend.recorded.read(0, end),
                stats, min(end, first - XRUN_MARGIN))


def test_jack_loopback_records_the_room_rendering_at_one_constant_delay(virtual_room, tmp_path,
                                                                        direct_rig):
    tape_path = tmp_path / "room.npz"
    # The room's defaults (subject S1, seeds 0) on the test rig.
    scene = VirtualScene(rig=read_rig(direct_rig))
    takes = []
    with virtual_room("--tape", str(tape_path), "--tape-seconds", "60", "--rig",
                      str(direct_rig)) as (ready, stopped):
        refresh_devices()
        for seed, convention in [(10, "internal"), (11, "ambix")]:
            # Xruns come with the machine's load (JACK's dummy driver runs on a timer): they
            # are reported, not asserted, and a take spoilt early by one is taken again.
            for _ in range(3):
                takes.append(record_through("room", noise(seed, 2.0), convention))
                if takes[-1].clean >= CLEAN_NEEDED:
                    break
    assert stopped["late_blocks"] == 0 and stopped["error"] is None
    tape = np.load(tape_path)
    heard, delay, period = tape["input"], int(tape["delay_samples"]), int(tape["period"])
    assert (delay, period) == (ready["delay_samples"], ready["period"])

    # The room renders what it heard, with the poses it says it used.
    np.testing.assert_array_equal(tape["poses"], expected_poses(scene, len(tape["poses"])))
    rendered = render_session(scene.rig, heard, tape["poses"], **scene.render_options())

    latencies = {}
    searched = 0
    for take in takes:
        # A take starts at the first sound after the previous one (they are apart by silence).
        heard_at = searched + int(np.argmax(np.any(heard[:, searched:] != 0, axis=0)))
        searched = heard_at + take.played.shape[1]
        if take.clean < CLEAN_NEEDED:
            continue
        n = take.clean
        # The room heard exactly what was played, from its sample `heard_at` on.
        np.testing.assert_array_equal(heard[:, heard_at:heard_at + n], take.played[:, :n])
        # Recorded sample n is rendered sample n + shift: find it on W, check all channels
        # from the first sample the stream got through its connection to the room on (the
        # room sends silence during its first delay_samples: rendered samples below 0).
        recorded = take.recorded[:, :n]
        probe = recorded[0, FS // 2:FS // 2 + 8_192]
        shift = int(np.argmax(correlate(rendered[0], probe, mode="valid", method="fft"))) \
            - FS // 2
        padded = np.pad(rendered, [(0, 0), (max(0, -shift), 0)])
        expected = to_internal(padded[:, max(0, shift):][:, :n], take.convention)
        connected = int(np.argmax(np.any(recorded != 0, axis=0)))
        assert connected < max(0, -shift) + 8 * period
        np.testing.assert_allclose(recorded[:, connected:], expected[:, connected:], atol=1e-5)
        # Reference sample m was rendered at room sample heard_at + m: loopback latency.
        latencies[take.convention] = heard_at - shift
    print(f"\nloopback latency {latencies} samples, room delay {delay}, period {period}, "
          f"room CPU {stopped['cpu_load']:.2f} core, JACK DSP {stopped['dsp_load']:.1f} %, "
          f"server xruns {stopped['xruns']}, stream xruns {[t.stats.xruns for t in takes]}")
    # The room's delay plus one period each way around the loop stream -> room -> stream.
    assert list(latencies.values()) == [delay + 2 * period] * 2


def test_an_xrun_of_the_jack_graph_is_counted_marked_in_both_rings_and_named_by_jackd(
        jack_server, jack_log):
    import jack

    # A device whose client overruns its cycle once, when armed: the whole graph xruns.
    client = jack.Client("lagger", use_exact_name=True, no_start_server=True)
    armed = {"now": False}
    try:
        for port in ("speaker_L", "speaker_R"):
            client.inports.register(port)
        for port in ("mic_W", "mic_X", "mic_Y", "mic_Z"):
            client.outports.register(port)

        @client.set_process_callback
        def process(frames):
            for port in client.outports:
                port.get_array().fill(0)
            if armed["now"]:
                armed["now"] = False
                time.sleep(0.1)

        client.activate()
        refresh_devices()
        logged = len(jack_log.read_text())
        player = loaded_player(noise(8, 3.0), 5.0)
        backend = DuplexBackend(player, device="lagger", ring_seconds=5.0)
        with backend:
            while backend.recorded.end < FS // 2:
                time.sleep(0.02)
            armed_at = backend.recorded.end
            armed["now"] = True
            while backend.recorded.end < armed_at + FS:
                time.sleep(0.02)
        stats, end = backend.stats(), backend.recorded.end
    finally:
        client.deactivate()
        client.close()
        refresh_devices()
    assert stats.input_overflows + stats.input_underflows >= 1 and stats.output_underflows >= 1
    # Ring indices are stream frames: the xrun after arming is marked in both rings.
    for ring in (backend.recorded, player.reference):
        marks = [e for e in ring.events.marks_between(armed_at, end) if e.kind is Mark.XRUN]
        assert marks, f"no XRUN mark after sample {armed_at}"
    # jackd names the client that overran as the late one.
    assert late_clients(jack_log.read_text()[logged:])["lagger"] >= 1


def test_a_restarted_action_starts_on_the_block_edge_nearest_its_time_stamp():
    # Time stamps jitter by up to a few milliseconds; block edges are 10.7 ms apart.
    edge = 10.0 + 3 * 512 / FS
    for jitter in (-0.004, 0.0, 0.004):
        assert start_frame(edge + jitter, 10.0, FS, 512) == 3 * 512


class StallingPlayer(Player):
    """A player whose every block before ``stall_at`` is produced at once, then one block
    ``stall_s`` late: the backend thread that asks for it stalls that long."""

    def __init__(self, music: np.ndarray, stall_at: int, stall_s: float):
        super().__init__([music], fifo_frames=music.shape[1] + FS, ring_capacity=20 * FS)
        self.pump()
        self.stall_at, self.stall_s = stall_at, stall_s

    def callback_fill(self, out: np.ndarray) -> None:
        if self.stall_at is not None and self.reference.end >= self.stall_at:
            self.stall_at = None
            time.sleep(self.stall_s)
        super().callback_fill(out)


def lag(played: np.ndarray, recorded_w: np.ndarray, at: int) -> int:
    """Samples by which the recording's W channel follows half a second of the music
    played from sample ``at``."""
    music = played[:, at:at + FS // 2].sum(axis=0)
    heard = recorded_w[at:at + FS // 2 + FS // 4]
    return int(np.argmax(correlate(heard, music, mode="valid", method="fft")))


def test_a_python_stall_longer_than_both_rtmixer_rings_costs_the_stall_not_the_pairing(
        virtual_room):
    # 3 s: the speakers' ring (0.5 s ahead) runs dry and the mic's (2 s) overflows, so
    # both of rtmixer's actions end and start again.
    with virtual_room("--subject", "none") as (ready, _):
        refresh_devices()
        player = StallingPlayer(noise(9, 9.0), stall_at=3 * FS, stall_s=3.0)
        backend = DuplexBackend(player, device="room", ring_seconds=12.0)
        with backend:
            while backend.recorded.end < 8 * FS and backend.running:
                time.sleep(0.05)
        stats, end = backend.stats(), backend.recorded.end
    assert stats.error is None and end >= 8 * FS
    assert stats.output_underflows >= 1 and stats.input_overflows >= 1
    played, recorded = player.reference.read(0, end), backend.recorded.read(0, end)[0]
    # The stall's gaps are each ring's longest XRUN mark (a loaded machine may add short
    # ones): the speakers' lasts the stall less the lead, the mic's until its action ran again.
    gaps = [max((e for e in ring.events.marks_between(0, end) if e.kind is Mark.XRUN),
                key=lambda e: e.length) for ring in (player.reference, backend.recorded)]
    assert gaps[0].length >= 2 * FS
    stall, gap_end = min(e.index for e in gaps), max(e.index + e.length for e in gaps)
    before = lag(played, recorded, stall - 3 * FS // 4)
    # The room's delay, one period each way, and the flight from the speakers to the mic.
    assert before - (ready["delay_samples"] + 2 * ready["period"]) in range(400, 450)
    assert lag(played, recorded, gap_end + FS // 4) == before
