"""How far do pose changes move the features on a rig? Static renders of one still person.

A still person is a time-invariant filter of the music (PHYSICS.md), so rendering a few
seconds of independent noise from each speaker with the person in two poses, and comparing
the time-averaged log-mel of each mic channel, gives the size of a pose's acoustic signature
per channel and band. Next to it the same measure for changes the pose target cannot see: a
10 cm step (poses are hip-relative) and another take of the sensor and background noise.
Both renders of a pair share the noise seed, so a pose pair differs only by the body.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from bgm2pose.sensing.features import CHANNELS, N_FFT, SAMPLE_RATE, frame_features, mel_filterbank
from bgm2pose.sensing.sim.render import POSE_FPS, render_session
from bgm2pose.sensing.sim.rig import SURFACES, Rig
from bgm2pose.sensing.skeleton import INDEX

BANDS_HZ = ((0, 1000), (1000, 4000), (4000, 12000), (12000, 24000))
MIC_CHANNELS = ("W", "X", "Y", "Z")
_SECONDS = 3.0
_SETTLE_FRAMES = 12  # 0.6 s: the room's reverberation builds up before frames are compared
_NOISE_LEVEL = 0.05  # RMS of each speaker's white noise feed, about -26 dBFS
_STEP_M = 0.1


@dataclass(frozen=True)
class Change:
    name: str
    nuisance: bool  # True: invisible in the hip-relative pose target
    db: np.ndarray  # (4, len(BANDS_HZ)) mean |log-mel change| of W X Y Z per band, dB


def rest_pose(joints: np.ndarray) -> np.ndarray:
    """The frame of a (F, 21, 3) motion with both hands lowest relative to the hips."""
    hips = joints[:, INDEX["Hips"], 1]
    hands = joints[:, INDEX["LeftHand"], 1] + joints[:, INDEX["RightHand"], 1] - 2 * hips
    return np.array(joints[int(np.argmin(hands))], float)


def straight_arm(pose: np.ndarray, side: str, direction) -> np.ndarray:
    """``pose`` with the ``side`` ("Left"/"Right") arm stretched along world ``direction``,
    bone lengths kept."""
    out = pose.copy()
    d = np.asarray(direction, float)
    d = d / np.linalg.norm(d)
    chain = [INDEX[f"{side}{part}"] for part in ("Arm", "ForeArm", "Hand")]
    for parent, child in zip(chain, chain[1:]):
        out[child] = out[parent] + np.linalg.norm(pose[child] - pose[parent]) * d
    return out


def _band_means(db: np.ndarray) -> np.ndarray:
    """(..., 128) per mel band -> (..., len(BANDS_HZ)) means over the bands' centres."""
    centres = mel_filterbank().argmax(axis=1) * SAMPLE_RATE / N_FFT
    return np.stack([db[..., (centres >= lo) & (centres < hi)].mean(axis=-1)
                     for lo, hi in BANDS_HZ], axis=-1)


def _features(rig: Rig, pose: np.ndarray, music: np.ndarray, height: float, build: float,
              seed: int) -> np.ndarray:
    frames = int(round(_SECONDS * POSE_FPS))
    mic = render_session(rig, music, np.repeat(pose[None], frames, axis=0),
                         height=height, build=build, seed=seed)
    f = frame_features(mic, music)
    return f[[CHANNELS.index(c) for c in MIC_CHANNELS], _SETTLE_FRAMES:].astype(np.float64)


def signature(rig: Rig, rest: np.ndarray, *, height: float = 1.75, build: float = 1.0,
              seed: int = 0) -> list[Change]:
    """Feature changes from the ``rest`` pose (21, 3) for a few canonical moves and nuisances."""
    rng = np.random.default_rng(seed)
    music = (_NOISE_LEVEL * rng.standard_normal((2, int(_SECONDS * rig.sample_rate)))).astype(np.float32)
    up = np.array([0.0, 1.0, 0.0])
    to_mic = rig.mic_position - rest[INDEX["Hips"]]
    to_mic[1] = 0.0
    forward = to_mic / np.linalg.norm(to_mic)
    # The person faces the mic, so their left is the mic's right: cross(forward, up).
    person_left = np.cross(forward, up)
    both_up = straight_arm(straight_arm(rest, "Left", up), "Right", up)
    moves = [
        ("both arms raised overhead", False, both_up),
        ("right arm stretched forward", False, straight_arm(rest, "Right", forward)),
        ("right arm stretched sideways", False, straight_arm(rest, "Right", -person_left)),
        ("left arm stretched sideways", False, straight_arm(rest, "Left", person_left)),
        (f"whole body {_STEP_M * 100:.0f} cm sideways", True, rest + _STEP_M * person_left),
        (f"whole body {_STEP_M * 100:.0f} cm towards the mic", True, rest + _STEP_M * forward),
    ]
    base = _features(rig, rest, music, height, build, seed)
    changes = [Change(name, nuisance, _band_means(np.abs(
        _features(rig, pose, music, height, build, seed) - base).mean(axis=1)))
        for name, nuisance, pose in moves]
    other_noise = _features(rig, rest, music, height, build, seed + 1)
    changes.append(Change("another take of the sensor and background noise", True,
                          _band_means(np.abs(other_noise - base).mean(axis=1))))
    return changes


def markdown(changes: list[Change]) -> str:
    bands = " / ".join(f"{lo / 1000:g}-{hi / 1000:g}" for lo, hi in BANDS_HZ)
    out = ["| change | target sees it | " + " | ".join(f"{c} (dB, {bands} kHz)" for c in MIC_CHANNELS) + " |",
           "|---|---|" + "---|" * len(MIC_CHANNELS)]
    for c in changes:
        out.append(f"| {c.name} | {'no' if c.nuisance else 'yes'} | "
                   + " | ".join(" / ".join(f"{v:.2f}" for v in row) for row in c.db) + " |")
    return "\n".join(out) + "\n"


def body_path_variants(rig: Rig) -> list[tuple[str, Rig]]:
    """``rig``, the rig with the direct sound only meeting the body, and (when ``rig``'s
    body meets first-order paths) the rig with each of those surfaces left out in turn."""
    variants = [("as simulated", rig), ("direct path only", replace(rig, body_paths="direct"))]
    return variants + [(f"without the {surface.replace('_', ' ')}",
                        replace(rig, body_paths=tuple(s for s in rig.body_surfaces
                                                      if s != surface)))
                       for surface in SURFACES if surface in rig.body_surfaces]


def variants_markdown(rows: list[tuple[str, list[Change]]]) -> str:
    """Per rig variant and change: mean |log-mel change| over W X Y Z from 1 to 12 kHz (dB),
    and of Z (up) alone for the first change."""
    mid = [i for i, (lo, hi) in enumerate(BANDS_HZ) if lo >= 1000 and hi <= 12000]
    names = [c.name for c in rows[0][1]]
    out = ["| rig | " + " | ".join(names) + f" | Z only: {names[0]} |",
           "|---|" + "---|" * (len(names) + 1)]
    for label, changes in rows:
        cells = [f"{c.db[:, mid].mean():.2f}" for c in changes]
        cells.append(f"{changes[0].db[MIC_CHANNELS.index('Z'), mid].mean():.2f}")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"
