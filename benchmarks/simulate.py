"""Speed of the virtual rig's renderer: 20 s of music with a moving person, as a data set
renders it (``render_session``: the empty room convolved at once, then blocks of 4800 with
body geometry 120 frames at a time) and as the live virtual rig does (streaming, block 512,
12 frames at a time, ``VirtualBackend``'s defaults).

Run with one BLAS thread (the figures are per core):
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/simulate.py
Prints the live rig's time per part, its real-time factor (goal >= 3x) and, as the last line,
the data-set real-time factor per core (goal >= 10x: AMPL's 3.2 h in under 10 minutes on two
cores). One-off costs of a process (loading the compiled kernels) are reported apart, not
counted.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import time  # noqa: E402

import numpy as np  # noqa: E402

from bgm2pose.sensing.sim.motion import SUBJECTS, generate_motion  # noqa: E402
from bgm2pose.sensing.sim.render import SceneRenderer, render_session  # noqa: E402
from bgm2pose.sensing.sim.rig import Rig  # noqa: E402
from bgm2pose.sensing.sim.room import room_response  # noqa: E402

SECONDS = 20.0
BLOCK = 4800
POSE_BATCH = 120  # frames of body geometry per batch (offline rendering)
LIVE_BLOCK, LIVE_POSE_BATCH = 512, 12  # VirtualBackend's defaults


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
    start = time.process_time()
    render_session(rig, music, joints, room=room, seed=0, block=BLOCK, pose_batch=POSE_BATCH)
    cpu = time.process_time() - start
    renderer, live_cpu = _render(rig, room, joints, music, LIVE_BLOCK, LIVE_POSE_BATCH)

    total = sum(renderer.timings.values())
    print(f"live virtual rig (block {LIVE_BLOCK}, pose batch {LIVE_POSE_BATCH}): "
          f"{live_cpu:.2f} s CPU for {SECONDS:.0f} s")
    for name, seconds in renderer.timings.items():
        print(f"  {name:<14} {seconds:6.2f} s  {100 * seconds / total:5.1f} %")
    print(f"live virtual rig: {SECONDS / live_cpu:.1f}x real time per core (goal >= 3x)")
    print(f"data set (block {BLOCK}, pose batch {POSE_BATCH}): {cpu:.2f} s CPU for "
          f"{SECONDS:.0f} s (not counted: room response {room_seconds:.2f} s, process "
          f"start-up {startup_seconds:.2f} s)")
    print(f"real-time factor per core: {SECONDS / cpu:.1f}x (goal >= 10x)")


def _render(rig, room, joints, music, block: int, pose_batch: int):
    renderer = SceneRenderer(rig, joints, room=room, seed=0, pose_batch=pose_batch)
    start = time.process_time()
    for a in range(0, music.shape[1], block):
        renderer.process(music[:, a:a + block])
    return renderer, time.process_time() - start


if __name__ == "__main__":
    main()
