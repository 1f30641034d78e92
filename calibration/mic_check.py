"""Microphone check: do the speakers' directions of arrival agree with the rig?

From each speaker's B-format impulse response (internal W X Y Z, as the backend converted
it from the mic's convention) the direct sound's direction is the active intensity over a
few samples around its onset, ``sum W * (X, Y, Z) / sum W^2``: for a plane wave from unit
direction u (mic frame: front, left, up) that is exactly u, so its length is 1 as well.
The rig says where each speaker should be. When they disagree, the check undoes the
backend's conversion and scores the explanations by their worst angle: all is well, another
channel convention (FuMa vs ambiX order, FuMa's -3 dB W), left and right speakers swapped,
inverted or exchanged mic axes. The best one becomes the warning if it fits within
MAX_ANGLE and beats "all is well" by TIE_DEGREES (speakers close together are told apart by
which fits better, not by a threshold alone).

Limits: with both speakers level with the mic, an up/down (Z) inversion is invisible; with
the rig symmetric about the mic's front axis, swapped speakers and an inverted Y (left)
axis look the same, and the warning names both.
"""

from __future__ import annotations

import itertools

import numpy as np

from bgm2pose.sensing.bformat import CONVENTIONS, from_internal, to_internal
from bgm2pose.sensing.sim.rig import Rig

HALF_WINDOW = 8  # samples each side of the onset: the direct sound, before any reflection
MAX_ANGLE = 25.0  # degrees between measured and expected direction
TIE_DEGREES = 3.0  # an explanation must beat "all is well" by this much to be reported
MAX_GAIN_ERROR = 0.2  # |intensity length - 1|: tells FuMa's W (-3 dB, length 1.41) apart
AXES = ("X (front)", "Y (left)", "Z (up)")


def directions(irs: np.ndarray, onsets: list[int]) -> np.ndarray:
    """(speakers, 3) intensity vectors of the direct sound of internal B-format ``irs``
    (speakers, 4, n) around each speaker's onset sample."""
    out = np.zeros((len(onsets), 3))
    for s, k in enumerate(onsets):
        part = np.asarray(irs[s, :, max(0, k - HALF_WINDOW):k + HALF_WINDOW + 1], np.float64)
        energy = np.sum(part[0] ** 2)
        out[s] = part[1:] @ part[0] / energy if energy > 0 else 0.0
    return out


def _error(measured: np.ndarray, expected: np.ndarray) -> float:
    """Largest angle (degrees) between measured and expected directions; inf when an
    intensity's length is not about 1 (FuMa's W read as SN3D, or no direct sound)."""
    worst = 0.0
    for d, u in zip(measured, expected):
        g = np.linalg.norm(d)
        if g == 0 or abs(g - 1) > MAX_GAIN_ERROR:
            return np.inf
        worst = max(worst, float(np.degrees(np.arccos(np.clip(d @ u / g, -1, 1)))))
    return worst


def _axis_fix(matrix: np.ndarray) -> str:
    """Words for a signed permutation that maps the measured axes onto the true ones."""
    parts = []
    for true_axis, row in enumerate(matrix):
        source = int(np.argmax(np.abs(row)))
        sign = row[source]
        if source != true_axis:
            parts.append(f"{AXES[true_axis]} arrives on the {AXES[source].split()[0]} channel"
                         + (" inverted" if sign < 0 else ""))
        elif sign < 0:
            parts.append(f"{AXES[true_axis]} is inverted")
    return "; ".join(parts)


def check_directions(irs: np.ndarray, onsets: list[int], rig: Rig,
                     convention: str = "internal") -> list[str]:
    """Warnings (empty when all is well) for impulse responses ``irs`` (2, 4, n) of the
    left and right speaker, converted by the backend from ``convention``."""
    expected = (rig.speakers - rig.mic_position) @ rig.mic_axes.T
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    measured = directions(irs, onsets)
    raw = from_internal(np.asarray(irs, np.float64), convention, axis=1)
    # (error, message) per explanation, the most likely first: on a tie, the earlier wins.
    candidates = [(_error(measured, expected), None)]
    for other in CONVENTIONS:
        if other != convention:
            found = directions(to_internal(raw, other, axis=1), onsets)
            candidates.append((_error(found, expected),
                               (f"the microphone's channels fit the {other} convention, not "
                                f"{convention} as set; select {other} (--convention {other})")))
    candidates.append((_error(measured[::-1], expected),
                       ("the left speaker is heard from the right and the right one from the "
                        "left: the speaker outputs are swapped (or the mic's Y axis is "
                        "inverted); swap the two output channels or cables")))
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            matrix = np.zeros((3, 3))
            matrix[np.arange(3), perm] = signs
            if not np.allclose(matrix, np.eye(3)):
                candidates.append((_error(measured @ matrix.T, expected),
                                   (f"the mic's axes look wrong: {_axis_fix(matrix)}; check "
                                    "that it faces the speakers upright and how its channels "
                                    "are wired")))
    best = min(range(len(candidates)), key=lambda i: (candidates[i][0] + TIE_DEGREES * (i > 0)))
    error, message = candidates[best]
    if error <= MAX_ANGLE:
        return [] if message is None else [message]
    azimuths = ", ".join(f"{np.degrees(np.arctan2(d[1], d[0])):.0f} deg" for d in measured)
    wanted = ", ".join(f"{np.degrees(np.arctan2(u[1], u[0])):.0f} deg" for u in expected)
    return [(f"the speakers are heard at azimuths {azimuths} (left, right) but the rig puts "
             f"them at {wanted}; check the mic's orientation, its channel convention and "
             "where the speakers stand")]
