"""How a body changes the sound between one speaker and the microphone (pure functions).

Conventions: world metres (y up), c = ``rig.SPEED_OF_SOUND``. Amplitudes are on the
free-field scale pyroomacoustics uses: a path of r metres has amplitude 1/(4 pi r), so
``gain * 4 pi r_direct`` is a reflection re the direct sound. Transfer functions follow the
numpy FFT sign: a delay tau is exp(-2 i pi f tau). The body is a set of capsules
(``bgm2pose.sensing.sim.body``), vectorised over frames F and segments K.

The two effects PHYSICS.md ranks first:

* ``shadow_response``: diffraction of the direct path around segments near the line of
  sight. Per segment and per edge (the two sides, and the two ends where they are close) a
  diffracted path of extra length delta with Maekawa's level, combined like Fresnel-Kirchhoff
  edges so the response is continuous and exactly 1 far from the line.
* ``reflection_paths`` (delay, broadband geometric-optics gain, direction per segment) and
  ``reflection_filter`` (Rayleigh roll-off and clothing absorption per frequency).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.sim.body import Body
from bgm2pose.sensing.sim.rig import SPEED_OF_SOUND

C = SPEED_OF_SOUND

# Clothed-audience absorption per person (Vorlander) spread over ~1.8 m^2 of body surface:
# the energy a reflection loses, held flat outside the table (PHYSICS.md "Surfaces").
_ABSORPTION_FREQS = np.array([125.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0])
_ABSORPTION = np.array([0.16, 0.29, 0.55, 0.80, 0.92, 0.90]) / 1.8

# A cylinder's specular reflection fades out over this axial distance around a capsule end
# (roughly the first Fresnel zone at a few kHz), handing over to the rounded end cap.
_END_TAPER = 0.1  # m

# Near grazing incidence the reflected wave merges with the direct one and belongs to the
# lit side of the shadow model (its 1 - T edge terms); fading the specular gain out below
# this incidence cosine avoids counting it twice and removes the sqrt(cos) kink at 0.
_GRAZING_COS = 0.1

# Diffraction: edges farther from the line of sight than 1-2 Fresnel radii at 1 kHz no
# longer diffract: a smooth body's field there is its reflection, not an edge wave.
_WINDOW_WAVELENGTH = C / 1000.0  # m
_MAX_INSERTION_LOSS_DB = 24.0  # Maekawa's cap
_FLOOR = 10.0 ** (-_MAX_INSERTION_LOSS_DB / 20.0)
_MIN_LEG = 0.05  # m, nearest a diffracting segment is taken to be to the speaker or mic
_LINE_END_TAPER = 0.1  # m, fade-out of segments lying beyond the speaker or the mic
_NEWTON_DONE = 1e-10  # rad, step of the specular-point solver taken as converged


class ScatteringError(UserError, ValueError):
    """Positions or frequencies the scattering model cannot use."""


@dataclass(frozen=True)
class ReflectionPaths:
    delay: np.ndarray  # (F, K) s, speaker -> specular point -> mic, over c
    gain: np.ndarray  # (F, K) broadband geometric-optics amplitude, 1/(4 pi r) scale; 0 = none
    direction: np.ndarray  # (F, K, 3) unit vectors from the mic towards the specular point
    departure: np.ndarray  # (F, K, 3) unit vectors from the source towards the specular point


def _norm(v: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("...i,...i->...", v, v))


def _dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.einsum("...i,...i->...", u, v)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    """0 below x = 0, 1 above x = 1, C1-smooth in between."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _any_perpendicular(u: np.ndarray) -> np.ndarray:
    """A unit vector perpendicular to each unit vector u (..., 3)."""
    helper = np.where(np.abs(u[..., :1]) < 0.9, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    w = np.cross(u, helper)
    return w / _norm(w)[..., None]


def _point(p: np.ndarray, name: str) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    if not (p.shape == (3,) or (p.ndim == 2 and p.shape[1] == 3)):
        raise ScatteringError(
            f"{name} position of shape {p.shape} is not a 3-vector; "
            "pass (3,) or (frames, 3) metres"
        )
    if not np.all(np.isfinite(p)):
        raise ScatteringError(f"{name} position is not finite; pass metres in the world frame")
    return p[None, None, :] if p.ndim == 1 else p[:, None, :]


def _circle_specular(va: np.ndarray, vb: np.ndarray, radius: np.ndarray, iterations: int = 6):
    """Specular point on the circle of ``radius`` about the origin in the plane of va, vb.

    va, vb (..., 3) point from the centre to source and mic. Solves the law of reflection
    (equal incidence angles, Alhazen's problem) by bracketed Newton on the angle phi of the
    normal from va towards vb (at most ``iterations`` steps per point, fewer once it
    converged); the mismatch of the two incidence angles grows monotonically with phi, so the
    bracket [0, angle(va, vb)] always holds the root.
    Returns the unit normal n, the distances from the point to va and vb, and the cosine of
    the incidence angle (<= 0: the point is hidden from source or mic, no reflection)."""
    va, vb = np.broadcast_arrays(np.asarray(va, float), np.asarray(vb, float))
    shape = va.shape[:-1]
    radius = np.broadcast_to(np.asarray(radius, float), shape)
    n, dist_a, dist_b, cos_inc = _specular_kernel(
        np.ascontiguousarray(va.reshape(-1, 3)), np.ascontiguousarray(vb.reshape(-1, 3)),
        np.ascontiguousarray(radius.reshape(-1)), iterations)
    return (n.reshape(shape + (3,)), dist_a.reshape(shape), dist_b.reshape(shape),
            cos_inc.reshape(shape))


@numba.njit(cache=True, nogil=True)
def _perpendicular(x: float, y: float, z: float) -> tuple[float, float, float]:
    """A unit vector perpendicular to the unit vector (x, y, z)."""
    if abs(x) < 0.9:  # cross with (1, 0, 0)
        px, py, pz = 0.0, z, -y
    else:  # cross with (0, 1, 0)
        px, py, pz = -z, 0.0, x
    norm = np.sqrt(px * px + py * py + pz * pz)
    return px / norm, py / norm, pz / norm


@numba.njit(cache=True, nogil=True)
def _specular_kernel(va, vb, radius, iterations):
    """``_circle_specular`` point by point: the renderer solves it for every body segment,
    pose frame and path (some 10^5 points per second of audio), where numpy's passes over
    the arrays, every point iterating as long as the slowest, cost twice as much as a loop
    that stops each point once it converged. ``_perpendicular`` is ``_any_perpendicular``
    for one point, in a form numba compiles."""
    count = va.shape[0]
    n = np.empty((count, 3))
    dist_a, dist_b, cos_inc = np.empty(count), np.empty(count), np.empty(count)
    for e in range(count):
        r = radius[e]
        ax, ay, az = va[e, 0], va[e, 1], va[e, 2]
        bx, by, bz = vb[e, 0], vb[e, 1], vb[e, 2]
        len_a = np.sqrt(ax * ax + ay * ay + az * az)
        len_b = np.sqrt(bx * bx + by * by + bz * bz)
        rho_a, rho_b = max(len_a, r * (1 + 1e-9)), max(len_b, r * (1 + 1e-9))
        # A point on the centre itself (the speaker on a limb's axis line) gets any
        # direction; it is inside the circle, so the result only needs to be finite.
        if len_b > 1e-12:
            ubx, uby, ubz = bx / len_b, by / len_b, bz / len_b
        else:
            ubx, uby, ubz = 1.0, 0.0, 0.0
        if len_a > 1e-12:
            uax, uay, uaz = ax / len_a, ay / len_a, az / len_a
        else:
            uax, uay, uaz = _perpendicular(ubx, uby, ubz)
        cos_g = min(max(uax * ubx + uay * uby + uaz * ubz, -1.0), 1.0)
        px, py, pz = ubx - cos_g * uax, uby - cos_g * uay, ubz - cos_g * uaz
        sin_g = np.sqrt(px * px + py * py + pz * pz)
        # With va and vb (anti)parallel the plane is undefined; phi is 0 (backscatter) or
        # the point is at grazing (blocked line, zero gain), so any perpendicular serves.
        if sin_g > 1e-12:
            wx, wy, wz = px / sin_g, py / sin_g, pz / sin_g
        else:
            wx, wy, wz = _perpendicular(uax, uay, uaz)
        gamma = np.arctan2(sin_g, cos_g)
        unit = np.hypot(sin_g, cos_g)  # 1 but for rounding: cos and sin of gamma exactly
        cos_g, sin_g = cos_g / unit, sin_g / unit

        lo, hi, phi = 0.0, gamma, 0.5 * gamma
        for _ in range(iterations):
            # psi = gamma - phi by the angle-difference identities, and the difference of
            # the two incidence angles (both in [0, pi]) as one arctan2.
            ca, sa = np.cos(phi), np.sin(phi)
            cb, sb = cos_g * ca + sin_g * sa, sin_g * ca - cos_g * sa
            xa, xb = rho_a * ca - r, rho_b * cb - r
            ya, yb = rho_a * sa, rho_b * sb
            mismatch = np.arctan2(ya * xb - xa * yb, xa * xb + ya * yb)
            slope = (rho_a * (rho_a - r * ca) / (xa * xa + ya * ya)
                     + rho_b * (rho_b - r * cb) / (xb * xb + yb * yb))
            if mismatch < 0:
                lo = phi
            elif mismatch > 0:
                hi = phi
            step = phi - mismatch / slope
            new = step if lo <= step <= hi else 0.5 * (lo + hi)
            # Newton converges quadratically: after a step this small the next is ~1e-20.
            done = abs(new - phi) < _NEWTON_DONE
            phi = new
            if done:
                break

        c, s = np.cos(phi), np.sin(phi)
        nx, ny, nz = c * uax + s * wx, c * uay + s * wy, c * uaz + s * wz
        n[e, 0], n[e, 1], n[e, 2] = nx, ny, nz
        dx, dy, dz = ax - r * nx, ay - r * ny, az - r * nz
        dist_a[e] = max(np.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
        dx, dy, dz = bx - r * nx, by - r * ny, bz - r * nz
        dist_b[e] = max(np.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
        cos_inc[e] = (rho_a * c - r) / dist_a[e]
    return n, dist_a, dist_b, cos_inc


def _distance_to_axis(p, a, u, length):
    """Distance from points p to the axis segments a + [0, length] u."""
    along = np.clip(_dot(p - a, u), 0.0, length)
    return _norm(p - a - along[..., None] * u)


def _go_amplitude(r1, r2, curvature_in, curvature_out):
    """Geometric-optics amplitude of a spherical wave reflected by a convex surface:
    (1/r1) sqrt(rho1 rho2 / ((rho1 + r2)(rho2 + r2))), 1/rho_i = 1/r1 + curvature_i."""
    rho1 = 1.0 / (1.0 / r1 + curvature_in)
    rho2 = 1.0 / (1.0 / r1 + curvature_out)
    return np.sqrt(rho1 * rho2 / ((rho1 + r2) * (rho2 + r2))) / r1


def reflection_paths(body: Body, source: np.ndarray, mic: np.ndarray) -> ReflectionPaths:
    """Specular reflection of each segment for one speaker: delay, gain and arrival direction.

    A capsule reflects like a convex cylinder while the specular point lies along its axis
    and like its rounded end cap beyond; the two blend over ``_END_TAPER`` around each end.
    Spheres (a == b) reflect like spheres. Forward geometry (source and mic on opposite
    sides) drives the incidence to grazing, where the gain fades smoothly to 0."""
    s = _point(source, "speaker")
    m = _point(mic, "microphone")
    a, b = body.a, body.b
    radius = np.broadcast_to(body.radius, a.shape[:2])

    axis = b - a
    length = _norm(axis)
    is_sphere = length < 1e-6
    u = np.where(is_sphere[..., None], 0.0, axis / np.maximum(length, 1e-6)[..., None])

    # Infinite cylinder: the law of reflection holds in the cross-section, and along the
    # axis the stationary point is where the unrolled path is straight (Keller's cone).
    ws, wm = s - a, m - a
    zs, zm = _dot(ws, u), _dot(wm, u)
    n, ds, dm, cos_cyl = _circle_specular(ws - zs[..., None] * u, wm - zm[..., None] * u, radius)
    z = zs + (zm - zs) * ds / (ds + dm)
    r1, r2 = np.hypot(ds, z - zs), np.hypot(dm, zm - z)
    # Wavefront curvature added by the cylinder: 2 sin^2(beta) / (a cos theta) with beta
    # the ray's angle to the axis, theta the incidence angle: 2 ds / (r1 a cos_cyl).
    cos_cyl_ok = np.maximum(cos_cyl, 1e-12)
    g_cyl = _go_amplitude(r1, r2, 2.0 * ds / (r1 * radius * cos_cyl_ok), 0.0)

    # The cylinder hands over to the cap past the ends, and also where its own point goes
    # to grazing (the speaker or mic near the axis line beyond an end sees only the cap).
    beyond = np.maximum(-z, z - length)
    cylinder_share = np.where(
        is_sphere, 0.0,
        _smoothstep(0.5 - beyond / _END_TAPER) * _smoothstep(cos_cyl / _GRAZING_COS),
    )
    # There the sphere about the nearest axis point takes over (the end cap's when the
    # stationary point lies beyond an end). On the axis segment that sphere's specular
    # point is the cylinder's own, so it is solved only where the cylinder does not
    # reflect alone.
    centre = a + np.clip(z, 0.0, length)[..., None] * u
    g_sph = np.zeros_like(g_cyl)
    cap = cylinder_share < 1.0
    if np.any(cap):
        s_all, m_all = np.broadcast_to(s, a.shape), np.broadcast_to(m, a.shape)
        n[cap], r1[cap], r2[cap], cos_sph = _circle_specular(
            s_all[cap] - centre[cap], m_all[cap] - centre[cap], radius[cap])
        cos_sph_ok = np.maximum(cos_sph, 1e-12)
        g_sph[cap] = (_go_amplitude(r1[cap], r2[cap], 2.0 / (radius[cap] * cos_sph_ok),
                                    2.0 * cos_sph_ok / radius[cap])
                      * _smoothstep(cos_sph / _GRAZING_COS))
    gain = (cylinder_share * g_cyl + (1.0 - cylinder_share) * g_sph) / (4.0 * np.pi)
    # Speaker or mic inside a segment: no meaningful reflection.
    inside = (_distance_to_axis(s, a, u, length) <= radius) | (
        _distance_to_axis(m, a, u, length) <= radius)
    gain = np.where(inside, 0.0, gain)

    point = centre + radius[..., None] * n
    to_point, from_source = point - m, point - s
    return ReflectionPaths(
        delay=(r1 + r2) / C, gain=gain,
        direction=to_point / np.maximum(_norm(to_point), 1e-12)[..., None],
        departure=from_source / np.maximum(_norm(from_source), 1e-12)[..., None])


def _frequencies(freqs: np.ndarray) -> np.ndarray:
    f = np.asarray(freqs, dtype=float)
    if f.ndim != 1 or not np.all(np.isfinite(f)) or np.any(f < 0):
        raise ScatteringError(
            f"frequencies of shape {f.shape} are not a 1-D array of finite values >= 0 Hz; "
            "pass e.g. np.fft.rfftfreq(n, 1 / 48000)"
        )
    return f


def reflection_filter(radius: float, freqs: np.ndarray) -> np.ndarray:
    """(n,) real magnitude applied to a segment's reflection: Rayleigh roll-off times the
    pressure left after clothing absorption, sqrt(1 - alpha(f)).

    Roll-off: a rigid sphere's backscatter re its geometric value a/2 is (5/3)(ka)^2 below
    ka ~ 1 (|f| = (5/6) k^2 a^3) and 1 above; x^2 / sqrt(1 + x^4) with x^2 = (5/3)(ka)^2
    joins the two."""
    f = _frequencies(freqs)
    if not radius > 0:
        raise ScatteringError(f"segment radius {radius} m must be positive")
    x2 = (5.0 / 3.0) * (2.0 * np.pi * f * radius / C) ** 2
    rolloff = x2 / np.sqrt(1.0 + x2 * x2)
    alpha = np.interp(np.log(np.maximum(f, 1.0)), np.log(_ABSORPTION_FREQS), _ABSORPTION)
    return rolloff * np.sqrt(1.0 - alpha)


def _edge_geometry(body: Body, s: np.ndarray, m: np.ndarray):
    """Per (frame, segment): the four diffracting edges seen from the line of sight.

    The segment is projected onto the plane across the line at its midpoint's station: a
    rectangle, ``radius`` wider than the projected axis all round. Its two sides (across
    the axis) and two ends (along it) are the edges. Returns path excess delta (F, K, 4),
    whether each edge covers the line (F, K, 4), each edge's window (F, K, 4), the
    segment's window (F, K) and the speaker-mic distance (F, K)."""
    line = m - s
    dist = _norm(line)
    e = line / dist[..., None]
    a, b = body.a, body.b
    radius = body.radius

    mid = 0.5 * (a + b)
    station = _dot(mid - s, e)
    past_ends = np.maximum(0.0, np.maximum(-station, station - dist))
    leg = min(_MIN_LEG, 0.25 * float(np.min(dist)))
    d1 = np.clip(station, leg, dist - leg)
    d2 = dist - d1
    origin = s + d1[..., None] * e
    fresnel_radius = np.sqrt(_WINDOW_WAVELENGTH * d1 * d2 / dist)

    def across(v):
        return v - _dot(v, e)[..., None] * e

    axis_across = across(b - a)
    centre_across = across(mid - origin)
    # Edges run along the projected axis; a sphere (or a segment seen end-on) is
    # symmetric, so its square is turned to face the line.
    along = np.where(
        (_norm(axis_across) > 1e-6)[..., None], axis_across,
        np.where((_norm(centre_across) > 1e-9)[..., None], centre_across,
                 _any_perpendicular(np.broadcast_to(e, axis_across.shape))),
    )
    along = along / _norm(along)[..., None]
    sideways = np.cross(np.broadcast_to(e, along.shape), along)

    pa, pb = _dot(a - origin, along), _dot(b - origin, along)
    q0 = _dot(mid - origin, sideways)
    offset = np.stack([q0 - radius, q0 + radius,
                       np.minimum(pa, pb) - radius, np.maximum(pa, pb) + radius], axis=-1)
    # An edge covers the line when the segment's body reaches across it from that edge.
    covers = offset * np.array([-1.0, 1.0, -1.0, 1.0]) >= 0
    x = np.abs(offset)
    delta = (np.sqrt(d1[..., None] ** 2 + x**2) + np.sqrt(d2[..., None] ** 2 + x**2)
             - dist[..., None])
    edge_window = 1.0 - _smoothstep(x / fresnel_radius[..., None] - 1.0)
    segment_window = 1.0 - _smoothstep(past_ends / _LINE_END_TAPER)
    return delta, covers, edge_window, segment_window, np.broadcast_to(dist, d1.shape)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _multiply_segments(out, frame, delta, covers, edge_window, dist, fade, f):
    """Multiply ``out[frame[p]]`` (F, n) complex64 by each pair p's transfer at ``f``.

    An edge's wave is T = level * exp(-i k delta); a covering edge passes T, a lit one
    1 - T. Fresnel-Kirchhoff for a rectangle: the blocked fraction is the product of the
    blocked fractions across (1 - sides) and along (1 - ends). The insertion loss is capped
    at Maekawa's 24 dB keeping the phase (a fully blocked pair, no phase to keep, passes the
    floor in phase), then faded out as the segment leaves the stretch between speaker and
    mic. Compiled, in float32 past the phases: this is the renderer's inner loop over pairs
    x edges x frequencies (some 10^7 a second of audio)."""
    n = f.shape[0]
    k = 2.0 * np.pi / C * f
    uniform = n > 2 and np.all(np.abs(np.diff(k) - (k[1] - k[0])) <= 1e-9 * k[-1])
    f32 = f.astype(np.float32)
    cos, sin = np.empty(n), np.empty(n)
    wave_re, wave_sin = np.empty((4, n), np.float32), np.empty((4, n), np.float32)
    parts = out.view(np.float32)  # real and imaginary parts interleaved
    one, floor = np.float32(1.0), np.float32(_FLOOR)
    for p in range(frame.shape[0]):
        base_q = np.float32(covers[p, 0]) + np.float32(covers[p, 1]) - one
        base_p = np.float32(covers[p, 2]) + np.float32(covers[p, 3]) - one
        for e in range(4):
            dl = delta[p, e]
            _phasors(dl * k, uniform, cos, sin)
            level = np.float32(0.5 * edge_window[p, e] * (1.0 if covers[p, e] else -1.0)
                               * dist[p] / (dist[p] + dl))
            rate = np.float32(dl * (10.0 / C))
            for m in range(n):
                amp = level / np.sqrt(one + rate * f32[m])
                wave_re[e, m] = cos[m] * amp
                wave_sin[e, m] = sin[m] * amp  # = -Im(sign * T)
        row = parts[frame[p]]
        fd = np.float32(fade[p])
        for m in range(n):
            q_re = base_q - wave_re[0, m] - wave_re[1, m]
            q_im = wave_sin[0, m] + wave_sin[1, m]
            p_re = base_p - wave_re[2, m] - wave_re[3, m]
            p_im = wave_sin[2, m] + wave_sin[3, m]
            h_re = one - (q_re * p_re - q_im * p_im)
            h_im = -(q_re * p_im + q_im * p_re)
            mag2 = h_re * h_re + h_im * h_im
            scale = floor / np.sqrt(max(mag2, np.float32(1e-30))) if mag2 < floor * floor else one
            h_re = h_re * scale if mag2 > np.float32(1e-30) else floor
            h_re = one + fd * (h_re - one)
            h_im = fd * h_im * scale
            re, im = row[2 * m], row[2 * m + 1]
            row[2 * m], row[2 * m + 1] = re * h_re - im * h_im, re * h_im + im * h_re


@numba.njit(cache=True, nogil=True, fastmath=True)
def _phasors(phase, uniform, cos, sin):
    """cos and sin of ``phase``. Trigonometry does not vectorise here, so a uniform grid
    takes two: its first eight points by rotation, each later one rotated on from the one
    eight before (independent lanes that do vectorise; 16 rotations to the end of a
    129-point grid keep the error near 1e-15)."""
    n = phase.shape[0]
    if not uniform:
        for m in range(n):
            cos[m], sin[m] = np.cos(phase[m]), np.sin(phase[m])
        return
    c, s = np.cos(phase[0]), np.sin(phase[0])
    dc, ds = np.cos(phase[1] - phase[0]), np.sin(phase[1] - phase[0])
    for m in range(min(8, n)):
        cos[m], sin[m] = c, s
        c, s = c * dc - s * ds, s * dc + c * ds
    for _ in range(3):  # the step rotation to the eighth power
        dc, ds = dc * dc - ds * ds, 2.0 * dc * ds
    for m in range(8, n):
        cos[m] = cos[m - 8] * dc - sin[m - 8] * ds
        sin[m] = sin[m - 8] * dc + cos[m - 8] * ds


def shadow_response(body: Body, source: np.ndarray, mic: np.ndarray,
                    freqs: np.ndarray) -> np.ndarray:
    """(F, n) complex64 transfer of the direct path re the unobstructed free-field path.

    Each edge at path excess delta contributes a diffracted wave
    T = 0.5 / sqrt(1 + 5 N) * d / (d + delta) * exp(-i k delta), N = 2 delta / lambda:
    Maekawa's level 10 log10(3 + 20 N) with its constant 3 raised to 4 so an edge exactly
    on the line passes half the wave, the exact knife-edge value. That makes a vanishing
    segment transparent and joins the shadow side (T) to the lit side (1 - T) without a
    jump; on axis it also lands within 0.4 dB of PHYSICS.md's exact 0.15 m cylinder
    from 1 to 24 kHz (Maekawa's 3 would be within 2 dB).
    Sides and ends combine as a Fresnel-Kirchhoff rectangle; segments multiply."""
    s = _point(source, "speaker")
    m = _point(mic, "microphone")
    f = _frequencies(freqs)
    n_frames = body.a.shape[0]

    delta, covers, edge_window, segment_window, dist = _edge_geometry(body, s, m)
    # Both edges out of reach and the segment wholly to one side of the line in one
    # direction: nothing is blocked in that direction, so the segment is transparent.
    out_of_reach = edge_window == 0
    one_sided = out_of_reach & ~(covers[..., ::2] & covers[..., 1::2]).repeat(2, axis=-1)
    clear = (one_sided[..., 0] & one_sided[..., 1]) | (one_sided[..., 2] & one_sided[..., 3])
    active = (segment_window > 0) & ~clear & np.any(~out_of_reach, axis=-1)

    def multiply(out, pairs, freqs):
        fr, k = np.nonzero(pairs)
        _multiply_segments(out, fr, delta[fr, k], covers[fr, k], edge_window[fr, k],
                           dist[fr, k], segment_window[fr, k], freqs)

    # Pairs with no edge in reach are frequency independent (transparent, or a segment
    # covering the line with all edges far away, capped at the full insertion loss): their
    # transfer at 0 Hz holds at every frequency.
    constant = np.ones((n_frames, 1), np.complex64)
    multiply(constant, ~active, np.zeros(1))
    out = np.repeat(constant, f.size, axis=1)
    multiply(out, active, f)
    return out
