"""Online drift tracking on the virtual rig with an injected clock ratio (split devices) and
latency: the clock estimate after 30 s of music, and the aligner's pairing it drives."""

from __future__ import annotations

import time

import numpy as np

from bgm2pose.calibration.drift import DriftTracker
from bgm2pose.sensing.aligner import WINDOW, Aligner
from bgm2pose.sensing.backend_virtual import VirtualBackend, VirtualScene
from bgm2pose.sensing.player import Player
from bgm2pose.sensing.sim.music import TrackSpec, generate
from bgm2pose.sensing.sim.rig import SPEED_OF_SOUND

FS = 48_000


def run_tracked(seconds, latency, ratio, *, initial_latency, track_clock, flight=None):
    music = generate(TrackSpec("jazz", 1, seconds))
    player = Player([music], fifo_frames=music.shape[1] + FS)
    player.pump()
    scene = VirtualScene(subject=None)
    backend = VirtualBackend(player, scene, realtime=False, stop_after=music.shape[1],
                             device_latency=latency, clock_ratio=ratio)
    aligner = Aligner(backend.recorded, player.reference, latency=initial_latency)
    tracker = DriftTracker(backend.recorded, player.reference, aligner,
                           initial_latency=initial_latency, track_clock=track_clock,
                           flight_samples=flight)
    with backend:  # the test drives update() itself: every chunk is seen, deterministically
        while backend.running:
            if not tracker.update():
                time.sleep(0.005)
    tracker.update()
    return scene, backend, aligner, tracker


def pairing_error(window, latency, ratio):
    """Aligner's reference centre minus the true one for a window (samples)."""
    centre = window.end_sample - WINDOW / 2
    return window.reference_start + WINDOW / 2 - (centre - latency) * ratio


def test_split_clock_ratio_is_tracked_within_5_ppm_after_30_s_and_windows_stay_aligned():
    latency, ratio = 700.3, 1 + 80e-6
    rig = VirtualScene().rig
    flight = float(np.mean(np.linalg.norm(rig.speakers - rig.mic_position, axis=1))
                   / SPEED_OF_SOUND * FS)
    # The profile's latency is stale by 100 samples (a split run starts its streams anew).
    _, backend, aligner, tracker = run_tracked(31.0, latency, ratio, initial_latency=600.0,
                                               track_clock=True, flight=flight)
    assert backend.recorded.end / FS > 30
    assert abs(tracker.drift_ppm - 80) < 5
    assert aligner.clock_ratio == tracker.clock_ratio and aligner.latency == tracker.latency
    assert abs(tracker.latency - latency) < 1
    assert tracker.updates > 50 and tracker.rejected == 0
    window = aligner.next_window()
    assert window is not None and window.end_sample > 29 * FS
    assert abs(pairing_error(window, latency, ratio)) <= 1


def test_one_device_latency_is_followed_from_the_profile_without_a_clock_estimate():
    latency = 1234.6
    _, _, aligner, tracker = run_tracked(8.0, latency, 1.0, initial_latency=1234.6,
                                         track_clock=False)
    assert tracker.drift_ppm is None and aligner.clock_ratio == 1.0
    assert abs(tracker.latency - latency) < 0.1
    window = aligner.next_window()
    assert abs(pairing_error(window, latency, 1.0)) <= 0.5
