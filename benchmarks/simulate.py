"""Speed of the virtual rig's renderer: 20 s of music with a moving person, block 4800.

Run with one BLAS thread (the figure is per core):
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/simulate.py
Prints the time per part and, as the last line, the real-time factor per core. One-off costs
of a process (loading the compiled delay-line kernel) are reported apart, not counted.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import time  # noqa: E402

import numpy as np  # noqa: E402

from bgm2pose.sensing.sim.motion import SUBJECTS, generate_motion  # noqa: E402
from bgm2pose.sensing.sim.render import SceneRenderer  # noqa: E402
from bgm2pose.sensing.sim.rig import Rig  # noqa: E402
from bgm2pose.sensing.sim.room import room_response  # noqa: E402

SECONDS = 20.0
BLOCK = 4800
POSE_BATCH = 120  # frames of body geometry per batch (offline rendering)


def main() -> None:
    rig = Rig()
    fs = rig.sample_rate
    n = int(SECONDS * fs)
    rng = np.random.default_rng(0)
    # Music stand-in: noise with a 1/f-ish tilt; the renderer's cost does not depend on it.
    music = np.cumsum(rng.standard_normal((2, n)), axis=1).astype(np.float32)
    music -= np.convolve(music[0], np.ones(64) / 64, mode="same")[None]
    music *= 0.1 / music.std()
    joints = generate_motion(SUBJECTS[0], SECONDS, seed=0, rig=rig)

    start = time.process_time()
    room = room_response(rig)
    room_seconds = time.process_time() - start
    # One-off costs of a process (loading the compiled delay-line kernel, FFT plans) are
    # paid by a first block of another renderer, as a dataset worker or the live device
    # pays them once.
    start = time.process_time()
    SceneRenderer(rig, joints, room=room, seed=0).process(music[:, :BLOCK])
    startup_seconds = time.process_time() - start
    renderer = SceneRenderer(rig, joints, room=room, seed=0, pose_batch=POSE_BATCH)
    start = time.process_time()
    for a in range(0, n, BLOCK):
        renderer.process(music[:, a:a + BLOCK])
    cpu = time.process_time() - start

    print(f"rendered {SECONDS:.0f} s at block {BLOCK}: {cpu:.2f} s CPU (not counted: room "
          f"response {room_seconds:.2f} s, process start-up {startup_seconds:.2f} s)")
    wall = sum(renderer.timings.values())
    for name, seconds in renderer.timings.items():
        print(f"  {name:<14} {seconds:6.2f} s  {100 * seconds / wall:5.1f} %")
    print(f"real-time factor per core: {SECONDS / cpu:.1f}x (goal >= 10x)")


if __name__ == "__main__":
    main()
