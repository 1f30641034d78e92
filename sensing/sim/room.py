"""Static room acoustics of the virtual rig: per speaker, the empty room's B-format response,
and the paths of it that the body can shadow.

pyroomacoustics' image-source model of a shoebox room (``Rig.room_size``, absorption and
reflection order from ``Rig.rt60`` by Sabine's formula), recorded by one omni (W) and three
figure-of-eight capsules (X, Y, Z) at the mic point along ``Rig.mic_axes`` (front, left, up).

The response is split exactly into
- the **paths** the body meets (``Rig.body_paths``): the direct path, and with ``first_order``
  each first-order image (one bounce off the floor, the ceiling or a wall). Each is one
  arrival: delay, direction, the wall's reflection factor (pyroomacoustics' damping,
  sqrt(1 - alpha): the Sabine absorption is one coefficient, so one factor for every band)
  and the speaker's radiation towards the path's departure direction (``speaker.py``). Its
  fractional delay is pyroomacoustics' own (``libroom.rir_builder``, the routine its
  responses are built with), so the split leaves nothing behind;
- the **reverb**: every other arrival (order 2 and up; with ``direct`` the first-order images
  too, with their radiation like the paths'), the full response minus the response up to
  reflection order 1, computed with the same settings so the difference is exact. The
  order-2+ part is scaled by the speakers' directivity (``Rig.speaker_directivity_db``): its
  image sources radiate as omnis, and a directional speaker sends that much less power into
  the diffuse field;
- ``static`` is their sum: the empty room, one time-invariant filter per speaker.

Conventions of the result:
- sample 0 is the emission time (pyroomacoustics' fixed fractional-delay offset is removed);
- amplitudes are in the 1/(4 pi r) free-field scale (pyroomacoustics uses 1/r);
- the order-2+ part is high-passed at pyroomacoustics' RIR cut-off (causal Butterworth): the
  image-source sum has a large DC bias that a real room does not have. pyroomacoustics would
  apply the same filter zero-phase to each response, which smears the early paths' filter
  tails into the difference; so its own filter is switched off while computing.

pyroomacoustics puts height on its third axis, our world frame is y-up: every position and
every orientation goes through the same swap (x, y, z) -> (x, z, y). It is a mirror, which
acoustics does not mind as long as nothing bypasses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyroomacoustics as pra
from pyroomacoustics import libroom
from pyroomacoustics.directivities import FigureEight, Omnidirectional
from scipy.signal import butter, firwin2, minimum_phase, sosfilt

from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.sim import speaker
from bgm2pose.sensing.sim.rig import SPEED_OF_SOUND, SURFACES, Rig


# Length of the speaker's off-axis filters: 5 ms resolves the fade from omni at 300 Hz.
RADIATION_TAPS = 256


class RoomError(UserError):
    """Room settings the image-source model cannot simulate."""


@dataclass(frozen=True)
class Paths:
    """The body-lit static paths of each speaker, the direct path first (index 0)."""
    surface: tuple[str, ...]  # (P,) "direct" or the surface of the bounce (``rig.SURFACES``)
    source: np.ndarray      # (2, P, 3) apparent source: the speaker, or its image in the wall
    normal: np.ndarray      # (P, 3) the wall's unit normal; zero for the direct path
    plane: np.ndarray       # (P,) the wall is the plane normal . x = plane
    wall_gain: np.ndarray   # (P,) the bounce's pressure factor (1 for the direct path)
    delay: np.ndarray       # (2, P) s, source -> mic
    direction: np.ndarray   # (2, P, 3) world unit vectors mic -> source
    fir: np.ndarray         # (2, P, T) float32 response of each path, 1/(4 pi r) scale

    def mirror(self, points: np.ndarray) -> np.ndarray:
        """``points`` (..., 3) mirrored in each path's wall: (..., P, 3); the direct path
        leaves them where they are."""
        p = np.asarray(points, float)[..., None, :]
        side = np.sum(p * self.normal, axis=-1) - self.plane
        return p - 2.0 * side[..., None] * self.normal


def reflect(vectors: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """``vectors`` (..., 3) mirrored in planes of unit ``normal`` (..., 3, broadcast); a zero
    normal leaves them as they are."""
    return vectors - 2.0 * np.einsum("...i,...i->...", vectors, normal)[..., None] * normal


@dataclass(frozen=True)
class RoomResponse:
    static: np.ndarray  # (2, 4, L) float32: per speaker, the empty room's W X Y Z response
    paths: Paths


def _to_pra(v: np.ndarray) -> np.ndarray:
    """World (x, y up, z) -> pyroomacoustics (x, y, z up); the map is its own inverse."""
    return np.asarray(v, float)[..., [0, 2, 1]]


_cache: dict[tuple[Rig, int | None], RoomResponse] = {}


def room_response(rig: Rig, max_order: int | None = None) -> RoomResponse:
    """The static B-format room response of ``rig`` (cached per rig and order); ``max_order``
    limits the image sources (0: an anechoic room, direct paths only)."""
    key = (rig, max_order)
    if key not in _cache:
        _cache[key] = _compute(rig, max_order)
    return _cache[key]


def _compute(rig: Rig, max_order: int | None) -> RoomResponse:
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
    materials = pra.Material(absorption)

    early_order = min(max_order, 1)
    full = _rirs(rig, materials, max_order)
    early = _rirs(rig, materials, early_order)
    length = max(full.shape[-1], early.shape[-1])
    late = _pad(full, length) - _pad(early, length)
    # Every pyroomacoustics RIR carries the same filter but one offset: half the filter length.
    late = late[..., pra.constants.get("frac_delay_length") // 2:]
    sos = butter(2, pra.constants.get("rir_hpf_fc"), btype="highpass", fs=rig.sample_rate,
                 output="sos")
    late = sosfilt(sos, late, axis=-1) / (4 * np.pi) * 10 ** (-rig.speaker_directivity_db / 20)

    arrivals = _first_order_paths(rig, materials, early_order)
    encoded = arrivals.fir[:, :, None, :] * rig.encode(arrivals.direction)[..., None]
    n = max(late.shape[-1], encoded.shape[-1])
    static = _pad(late, n) + _pad(encoded.sum(axis=1), n)
    keep = [0] + [p for p, name in enumerate(arrivals.surface) if p and name in rig.body_surfaces]
    return RoomResponse(
        static=np.ascontiguousarray(_trim(static), dtype=np.float32),
        paths=Paths(tuple(arrivals.surface[p] for p in keep), arrivals.source[:, keep],
                    arrivals.normal[keep], arrivals.plane[keep], arrivals.wall_gain[keep],
                    arrivals.delay[:, keep], arrivals.direction[:, keep],
                    arrivals.fir[:, keep]),
    )


def _surface(normal: np.ndarray, plane: float, size: np.ndarray) -> str:
    """The name in ``rig.SURFACES`` of the wall with world ``normal`` at ``plane``."""
    axis = int(np.argmax(np.abs(normal)))
    far = abs(abs(plane) - size[axis]) < abs(plane)
    return SURFACES[2 * axis + int(far)]


def _first_order_paths(rig: Rig, materials, max_order: int) -> Paths:
    """The direct path and (``max_order`` 1) every first-order image of each speaker, with
    their responses, as pyroomacoustics places and damps them."""
    fs = rig.sample_rate
    room = pra.ShoeBox(_to_pra(rig.room_size), fs=fs, materials=materials,
                       max_order=max_order, air_absorption=False)
    for position in rig.speakers:
        room.add_source(_to_pra(position))
    room.add_microphone(_to_pra(rig.mic_position))
    room.image_source_model()
    # Direct path first, then the images in pyroomacoustics' (per-source identical) order.
    order = np.argsort(room.sources[0].orders, kind="stable")
    images = np.stack([_to_pra(s.images[:, order].T) for s in room.sources])  # (2, P, 3)
    damping = room.sources[0].damping[0, order]
    # A shoebox's walls face the axes: the normal is the axis the image moved along (snapped,
    # libroom keeps positions in float32); the direct path has none.
    offset = images[0] - rig.speakers[0]
    normal = np.zeros_like(offset)
    axis = np.argmax(np.abs(offset), axis=-1)
    moved = room.sources[0].orders[order] > 0
    normal[moved, axis[moved]] = np.sign(offset[moved, axis[moved]])
    plane = np.einsum("pi,pi->p", normal, rig.speakers[0] + 0.5 * offset)
    images = rig.speakers[:, None] - 2 * (np.einsum("pi,si->sp", normal, rig.speakers)
                                          - plane)[..., None] * normal

    arrival = images - rig.mic_position
    distance = np.linalg.norm(arrival, axis=-1)
    delay = distance / SPEED_OF_SOUND
    # Departure from the real speaker: towards the mic, mirrored in the wall for an image.
    towards = reflect(-arrival / distance[..., None], normal)
    aim = rig.mic_position - rig.speakers
    cos_departure = np.einsum("spi,si->sp", towards, aim / np.linalg.norm(aim, axis=-1)[:, None])

    half = pra.constants.get("frac_delay_length") // 2
    radiation_taps = 2 * RADIATION_TAPS - 1  # linear-phase design, halved by minimum_phase
    taps = int(np.ceil(delay.max() * fs)) + half + RADIATION_TAPS + 1
    design_freqs = np.linspace(0, fs / 2, 1025)
    fir = np.zeros((2, len(damping), taps))
    for s in range(2):
        for p in range(len(damping)):
            ir = np.zeros(taps + half, np.float32)
            libroom.rir_builder(ir, np.float32([delay[s, p] + half / fs]),
                                np.float32([damping[p] / distance[s, p]]), fs,
                                pra.constants.get("frac_delay_length"),
                                pra.constants.get("sinc_lut_granularity"), 1)
            fir[s, p] = ir[half:]
            if np.isclose(cos_departure[s, p], 1.0) or rig.speaker_directivity_db == 0:
                continue  # on axis or omni: the speaker adds nothing
            # A speaker's off-axis response is a causal (minimum-phase) filter: nothing of
            # the path arrives before its delay.
            gain = speaker.radiation(cos_departure[s, p], design_freqs,
                                     rig.speaker_directivity_db)
            radiation = minimum_phase(firwin2(radiation_taps, design_freqs, gain, fs=fs),
                                      half=False)
            fir[s, p] = np.convolve(fir[s, p], radiation)[:taps]
    surface = ("direct",) + tuple(_surface(normal[p], plane[p], np.asarray(rig.room_size))
                                  for p in range(1, len(damping)))
    return Paths(surface, images, normal, plane, damping.astype(float), delay,
                 arrival / distance[..., None], (fir / (4 * np.pi)).astype(np.float32))


def _rirs(rig: Rig, materials, max_order: int) -> np.ndarray:
    """(2, 4, n) raw pyroomacoustics RIRs (1/r scale, with its offset), speakers x W X Y Z."""
    room = pra.ShoeBox(_to_pra(rig.room_size), fs=rig.sample_rate, materials=materials,
                       max_order=max_order, air_absorption=False)
    for position in rig.speakers:
        room.add_source(_to_pra(position))
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
