"""Drift tracking over a long run: the virtual rig with a recorder clock 80 ppm slow (split
devices) and a fractional device latency, run faster than real time for MINUTES of music
(generated tracks, repeated); prints the tracker's clock estimate and latency, and how far
the aligner's pairing of the newest window is from the truth, every minute.

Run: OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/drift.py [minutes]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from bgm2pose.calibration.drift import DriftTracker
from bgm2pose.sensing.aligner import WINDOW, Aligner
from bgm2pose.sensing.backend_virtual import VirtualBackend, VirtualScene
from bgm2pose.sensing.player import Player, Repeat
from bgm2pose.sensing.sim.music import TrackSpec, generate
from bgm2pose.sensing.sim.rig import SPEED_OF_SOUND

FS = 48_000
LATENCY, RATIO = 700.3, 1 + 80e-6


def main(minutes: float = 10.0) -> int:
    tracks = [generate(TrackSpec(genre, seed, 60.0)) for genre, seed in
              (("jazz", 1), ("ambient", 2), ("jazz", 3))]
    player = Player(tracks, repeat=Repeat.ALL)
    player.start()
    scene = VirtualScene(subject=None)
    total = int(minutes * 60 * FS)
    backend = VirtualBackend(player, scene, realtime=False, stop_after=total,
                             device_latency=LATENCY, clock_ratio=RATIO)
    rig = scene.rig
    flight = float(np.mean(np.linalg.norm(rig.speakers - rig.mic_position, axis=1))
                   / SPEED_OF_SOUND * FS)
    aligner = Aligner(backend.recorded, player.reference, latency=600.0)
    tracker = DriftTracker(backend.recorded, player.reference, aligner, initial_latency=600.0,
                           track_clock=True, flight_samples=flight)
    t0, minute, worst = time.monotonic(), 1, 0.0
    with backend:
        while backend.running:
            if not tracker.update():
                time.sleep(0.005)
            window = aligner.next_window()
            if window is not None and window.end_sample > 60 * FS:
                centre = window.end_sample - WINDOW / 2
                error = window.reference_start + WINDOW / 2 - (centre - LATENCY) * RATIO
                worst = max(worst, abs(error))
                if window.end_sample >= minute * 60 * FS:
                    print(f"{minute:3d} min: drift {tracker.drift_ppm:7.3f} ppm (true 80), "
                          f"latency {tracker.latency:9.3f} (true {LATENCY}), window pairing "
                          f"error {error:+.2f} samples, worst since 1 min {worst:.2f}; "
                          f"{time.monotonic() - t0:.0f} s elapsed", flush=True)
                    minute += 1
    player.close()
    print(f"points {tracker.updates}, rejected chunks {tracker.rejected}, "
          f"windows dropped {aligner.dropped}, unavailable {aligner.unavailable} "
          "(the check reads every window it can, the rig runs faster than real time)")
    print(f"drift error after {minutes:g} min: {abs(tracker.drift_ppm - 80):.3f} ppm "
          f"(goal < 5 ppm); worst window pairing error {worst:.2f} samples (goal <= 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0))
