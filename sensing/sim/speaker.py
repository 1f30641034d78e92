"""How much a rig speaker radiates towards a direction (pure functions).

A small two-way speaker is nearly omni below ~300 Hz; above ~2 kHz it is about -3 to -6 dB
at 90 degrees off axis and -10 to -20 dB behind (PHYSICS.md, "The room lights the body
too"). The model is a level in dB that is smooth in the angle,
    L(theta) = scale * (-1.5 (1 - cos theta) - 3.5 (1 - cos theta)^2),
-5 dB at 90 degrees and -17 dB behind at the default directivity index of 6 dB
(``Rig.speaker_directivity_db``), scaled in proportion to that index (0 dB: an omni), and
faded in between 300 Hz and 2 kHz (smoothstep in log frequency).

The speakers are aimed at the microphone: the angle is taken against the speaker-to-mic
axis. The diffuse reverberation keeps its own scaling by the index (``room.py``).
"""

from __future__ import annotations

import numpy as np

_REFERENCE_DI_DB = 6.0  # the index at which the pattern has the levels above
_LINEAR_DB, _QUADRATIC_DB = -1.5, -3.5
_OMNI_BELOW, _FULL_ABOVE = 300.0, 2000.0  # Hz


def high_frequency_level_db(cos_angle: np.ndarray, directivity_db: float) -> np.ndarray:
    """Level (dB re on axis) above ~2 kHz towards directions at ``cos_angle`` off axis."""
    off = 1.0 - np.clip(cos_angle, -1.0, 1.0)
    return directivity_db / _REFERENCE_DI_DB * (_LINEAR_DB * off + _QUADRATIC_DB * off ** 2)


def high_frequency_gain(cos_angle: np.ndarray, directivity_db: float) -> np.ndarray:
    """Pressure gain above ~2 kHz: the broadband weight of a path whose sound lives up there
    (a body reflection, rolled off below ~1 kHz by the body's size)."""
    return 10.0 ** (high_frequency_level_db(cos_angle, directivity_db) / 20.0)


def radiation(cos_angle: float, freqs: np.ndarray, directivity_db: float) -> np.ndarray:
    """(n,) real pressure gain at ``freqs`` towards a direction ``cos_angle`` off axis."""
    f = np.maximum(np.asarray(freqs, float), 1.0)
    x = np.clip(np.log(f / _OMNI_BELOW) / np.log(_FULL_ABOVE / _OMNI_BELOW), 0.0, 1.0)
    share = x * x * (3.0 - 2.0 * x)
    return 10.0 ** (share * high_frequency_level_db(cos_angle, directivity_db) / 20.0)
