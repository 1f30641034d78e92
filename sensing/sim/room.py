"""Static room acoustics of the virtual rig: B-format room impulse responses per speaker.

pyroomacoustics' image-source model of a shoebox room (``Rig.room_size``, absorption and
reflection order from ``Rig.rt60`` by Sabine's formula), recorded by one omni (W) and three
figure-of-eight capsules (X, Y, Z) at the mic point along ``Rig.mic_axes`` (front, left, up).

Conventions of the result:
- sample 0 is the emission time (pyroomacoustics' fixed fractional-delay offset is removed);
- amplitudes are in the 1/(4 pi r) free-field scale (pyroomacoustics uses 1/r);
- ``reverb`` holds everything *but* the direct path: the full response minus the response
  with reflection order 0, computed with the same settings so the difference is exact. The
  renderer adds the direct path itself, because the body shadows it.
- the reverb is scaled by the speakers' directivity (``Rig.speaker_directivity_db``): the
  image sources radiate as omnis, and a directional speaker aimed at the mic sends that
  much less power into the room (diffuse-field approximation; the body, near the axis,
  still gets the on-axis level);
- the reverb is high-passed at pyroomacoustics' RIR cut-off (causal Butterworth): the
  image-source sum has a large DC bias that a real room does not have. pyroomacoustics would
  apply the same filter zero-phase to each response, which smears the direct path's filter
  tail into the difference; so its own filter is switched off while computing.

pyroomacoustics puts height on its third axis, our world frame is y-up: every position and
every orientation goes through the same swap (x, y, z) -> (x, z, y). It is a mirror, which
acoustics does not mind as long as nothing bypasses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyroomacoustics as pra
from pyroomacoustics.directivities import FigureEight, Omnidirectional
from scipy.signal import butter, sosfilt

from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.sim.rig import SPEED_OF_SOUND, Rig


class RoomError(UserError):
    """Room settings the image-source model cannot simulate."""


@dataclass(frozen=True)
class RoomResponse:
    reverb: np.ndarray            # (2, 4, L) float32: per speaker, W X Y Z RIR without direct path
    direct_delay: np.ndarray      # (2,) s, speaker -> mic
    direct_gain: np.ndarray       # (2,) 1 / (4 pi r)
    direct_direction: np.ndarray  # (2, 3) world unit vectors mic -> speaker


def _to_pra(v: np.ndarray) -> np.ndarray:
    """World (x, y up, z) -> pyroomacoustics (x, y, z up); the map is its own inverse."""
    return np.asarray(v, float)[..., [0, 2, 1]]


_cache: dict[tuple[Rig, int | None], RoomResponse] = {}


def room_response(rig: Rig, max_order: int | None = None,
                  materials: pra.Material | dict | None = None) -> RoomResponse:
    """The static B-format room response of ``rig`` (cached per rig and order unless
    ``materials`` overrides the Sabine absorption)."""
    key = (rig, max_order)
    if materials is None and key in _cache:
        return _cache[key]
    response = _compute(rig, max_order, materials)
    if materials is None:
        _cache[key] = response
    return response


def _compute(rig: Rig, max_order: int | None, materials) -> RoomResponse:
    size = np.asarray(rig.room_size, float)
    try:
        absorption, sabine_order = pra.inverse_sabine(rig.rt60, _to_pra(size), c=SPEED_OF_SOUND)
    except ValueError as e:
        raise RoomError(
            f"RT60 {rig.rt60} s cannot be reached in a {tuple(size)} m room ({e}); "
            "use a shorter RT60 or a larger room"
        ) from None
    if max_order is None:
        max_order = sabine_order
    if max_order < 0:
        raise RoomError(f"reflection order {max_order} is negative; use 0 or more")
    if materials is None:
        materials = pra.Material(absorption)

    full = _rirs(rig, materials, max_order)
    direct = _rirs(rig, materials, 0)
    length = max(full.shape[-1], direct.shape[-1])
    reverb = _pad(full, length) - _pad(direct, length)
    # Every pyroomacoustics RIR carries the same filter but one offset: half the filter length.
    reverb = reverb[..., pra.constants.get("frac_delay_length") // 2:]
    sos = butter(2, pra.constants.get("rir_hpf_fc"), btype="highpass", fs=rig.sample_rate,
                 output="sos")
    reverb = sosfilt(sos, reverb, axis=-1) / (4 * np.pi) * 10 ** (-rig.speaker_directivity_db / 20)

    offset = rig.speakers - rig.mic_position
    distance = np.linalg.norm(offset, axis=1)
    return RoomResponse(
        reverb=np.ascontiguousarray(_trim(reverb), dtype=np.float32),
        direct_delay=distance / SPEED_OF_SOUND,
        direct_gain=1.0 / (4 * np.pi * distance),
        direct_direction=offset / distance[:, None],
    )


def _rirs(rig: Rig, materials, max_order: int) -> np.ndarray:
    """(2, 4, n) raw pyroomacoustics RIRs (1/r scale, with its offset), speakers x W X Y Z."""
    room = pra.ShoeBox(_to_pra(rig.room_size), fs=rig.sample_rate, materials=materials,
                       max_order=max_order, air_absorption=False)
    for speaker in rig.speakers:
        room.add_source(_to_pra(speaker))
    axes = _to_pra(rig.mic_axes)
    # FigureEight(d) gives d . u for a source in unit direction u from the mic: X = +1 in front.
    capsules = [Omnidirectional()] + [FigureEight(axis) for axis in axes]
    position = np.repeat(_to_pra(rig.mic_position)[:, None], 4, axis=1)
    room.add_microphone_array(pra.MicrophoneArray(position, fs=rig.sample_rate,
                                                  directivity=capsules))
    hpf = pra.constants.get("rir_hpf_enable")
    pra.constants.set("rir_hpf_enable", False)
    try:
        room.compute_rir()
    finally:
        pra.constants.set("rir_hpf_enable", hpf)
    n = max(len(room.rir[m][s]) for m in range(4) for s in range(2))
    return np.stack([np.stack([_pad(np.asarray(room.rir[m][s], float), n) for m in range(4)])
                     for s in range(2)])


def _pad(x: np.ndarray, n: int) -> np.ndarray:
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])])


def _trim(reverb: np.ndarray, floor_db: float = -90.0) -> np.ndarray:
    """Drop the tail whose remaining energy is below ``floor_db`` of the total: the sum of
    high image orders runs on long after it stopped mattering."""
    energy = np.sum(reverb ** 2, axis=(0, 1))
    remaining = np.cumsum(energy[::-1])[::-1]
    keep = np.flatnonzero(remaining > remaining[0] * 10 ** (floor_db / 10))
    return reverb[..., : keep[-1] + 1 if keep.size else 1]
