"""First-order B-format conventions: the ones real microphones deliver, and the internal one.

Internal convention (used everywhere inside the project):
  channel order W, X, Y, Z; SN3D-style gains: W = pressure, X/Y/Z = pressure x direction
  cosine along the microphone's front / left / up axes. A plane wave arriving from unit
  direction u (mic frame, pointing from the mic towards the source) has gains
  (1, ux, uy, uz).

External conventions:
  "fuma"   Furse-Malham: order W, X, Y, Z; W carries a -3 dB factor (W_fuma = W / sqrt(2));
           X, Y, Z equal the internal ones at first order.
  "ambix"  ACN channel order W, Y, Z, X with SN3D normalisation (same gains as internal).

Reading FuMa data as ambiX (or the reverse) does not fail; it silently rotates the
sound field, which is why calibration checks the convention with a known source.
"""

from __future__ import annotations

import numpy as np

from bgm2pose.sensing.errors import UserError

CONVENTIONS: tuple[str, ...] = ("internal", "fuma", "ambix")

# For each convention: which internal channel sits at each external position, and the gain
# applied to it on the way out (external = gain * internal[order]).
_ORDER: dict[str, tuple[int, int, int, int]] = {
    "internal": (0, 1, 2, 3),
    "fuma": (0, 1, 2, 3),
    "ambix": (0, 2, 3, 1),
}
_GAIN: dict[str, tuple[float, float, float, float]] = {
    "internal": (1.0, 1.0, 1.0, 1.0),
    "fuma": (1.0 / np.sqrt(2.0), 1.0, 1.0, 1.0),
    "ambix": (1.0, 1.0, 1.0, 1.0),
}


class BFormatError(UserError, ValueError):
    """An unknown B-format convention, or an array without 4 channels."""


def _check(x: np.ndarray, convention: str, axis: int) -> np.ndarray:
    if convention not in CONVENTIONS:
        raise BFormatError(
            f"B-format convention {convention!r} is unknown; use one of {', '.join(CONVENTIONS)}"
        )
    x = np.asarray(x)
    if x.ndim == 0 or not -x.ndim <= axis < x.ndim or x.shape[axis] != 4:
        raise BFormatError(
            f"a first-order B-format array needs 4 channels along axis {axis}, got shape "
            f"{x.shape}; pass the axis that holds W, X, Y, Z"
        )
    return x


def _convert(x: np.ndarray, order: np.ndarray, gain: np.ndarray, axis: int) -> np.ndarray:
    out = np.take(x, order, axis=axis)
    if np.any(gain != 1.0):
        shape = [1] * out.ndim
        shape[axis] = 4
        # Keep float32 audio float32; integers become float.
        dtype = np.result_type(out.dtype, np.float32)
        out = out.astype(dtype, copy=False) * gain.astype(dtype).reshape(shape)
    return out


def from_internal(x: np.ndarray, convention: str, axis: int = 0) -> np.ndarray:
    """Internal W, X, Y, Z (4 channels along ``axis``) to ``convention``; returns a new array."""
    x = _check(x, convention, axis)
    return _convert(x, np.array(_ORDER[convention]), np.array(_GAIN[convention]), axis)


def to_internal(x: np.ndarray, convention: str, axis: int = 0) -> np.ndarray:
    """Channels in ``convention`` (4 along ``axis``) to internal W, X, Y, Z; a new array."""
    x = _check(x, convention, axis)
    order = np.argsort(_ORDER[convention])
    gain = 1.0 / np.array(_GAIN[convention])[order]
    return _convert(x, order, gain, axis)


def plane_wave_gains(direction: np.ndarray) -> np.ndarray:
    """Internal B-format gains (..., 4) of plane waves from ``direction`` (..., 3) in the mic
    frame (front, left, up), pointing from the mic towards the source; normalised here."""
    d = np.asarray(direction, dtype=float)
    if d.ndim == 0 or d.shape[-1] != 3:
        raise BFormatError(
            f"directions must have shape (..., 3) (front, left, up), got {d.shape}"
        )
    norm = np.linalg.norm(d, axis=-1, keepdims=True)
    if np.any(~np.isfinite(norm)) or np.any(norm < 1e-12):
        raise BFormatError(
            "a direction is zero or not finite; give a nonzero vector towards the source"
        )
    return np.concatenate([np.ones(d.shape[:-1] + (1,)), d / norm], axis=-1)
