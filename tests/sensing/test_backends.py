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
from bgm2pose.sensing.backend_duplex import DuplexBackend
from bgm2pose.sensing.backend_virtual import VirtualBackend, VirtualScene
from bgm2pose.sensing.backends import (BackendError, BackendStats, list_devices,
                                       refresh_devices)
from bgm2pose.sensing.bformat import from_internal, to_internal
from bgm2pose.sensing.player import Player
from bgm2pose.sensing.ring import Mark
from bgm2pose.sensing.sim.render import render_session

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


# ---------------------------------------------------------------- duplex callback


@pytest.mark.parametrize("convention", ["ambix", "fuma"])
def test_duplex_callback_converts_the_mic_convention_and_marks_device_losses(convention):
    import sounddevice as sd

    player = loaded_player(noise(3, 1.0), 2.0)
    backend = DuplexBackend(player, device="unused", mic_convention=convention,
                            ring_seconds=2.0)
    internal = noise(4, 0.1).reshape(4, -1)[:, :512 * 4]  # 4 blocks of W X Y Z
    device_in = np.ascontiguousarray(from_internal(internal, convention).T)  # (frames, 4)
    outdata = np.zeros((512, 2), np.float32)
    flags = [sd.CallbackFlags(), sd.CallbackFlags(sd._lib.paInputOverflow),
             sd.CallbackFlags(sd._lib.paOutputUnderflow), sd.CallbackFlags()]
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for k, status in enumerate(flags):
            backend._callback(device_in[k * 512:(k + 1) * 512], outdata, 512, None, status)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Small Python objects only: a block of the mic (8 KiB) is never allocated.
    assert peak - before < 4096
    np.testing.assert_allclose(backend.recorded.read(0, 2048), internal, atol=1e-7)
    xrun = [(e.index, e.length) for e in backend.recorded.events.marks_between(0, 2048)]
    assert xrun == [(512, 512)]
    gap = [(e.index, e.length) for e in player.reference.events.marks_between(0, 2048)
           if e.kind is Mark.XRUN]
    assert gap == [(1024, 512)]
    stats = backend.stats()
    assert (stats.callbacks, stats.input_overflows, stats.output_underflows) == (4, 1, 1)
    assert stats.xruns == 2


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
    # Every xrun the device flagged marks its block where the aligner will see it (marks of
    # consecutive blocks merge into one event).
    marks = {ring: [e for e in ring.events.marks_between(-1, end + 1) if e.kind is Mark.XRUN]
             for ring in (backend.recorded, player.reference)}
    assert sum(e.length for e in marks[backend.recorded]) == 512 * (
        stats.input_overflows + stats.input_underflows)
    assert sum(e.length for e in marks[player.reference]) == 512 * stats.output_underflows
    first = min([e.index for events in marks.values() for e in events], default=end)
    return Take(convention, player.reference.read(0, player.reference.end),
                backend.recorded.read(0, end), stats, min(end, first - XRUN_MARGIN))


def test_jack_loopback_records_the_room_rendering_at_one_constant_delay(virtual_room, tmp_path):
    tape_path = tmp_path / "room.npz"
    scene = VirtualScene()  # the room's defaults: subject S1, seeds 0
    takes = []
    with virtual_room("--tape", str(tape_path), "--tape-seconds", "60") as (
            ready, stopped):
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
