"""Body acoustics of the virtual rig against PHYSICS.md's magnitudes.

Geometry of most tests: speaker and mic 3 m apart on a horizontal line at 1.2 m height,
segments vertical, placed midway."""

import numpy as np
import pytest

from bgm2pose.sensing.sim.body import Body, BodyError, dress
from bgm2pose.sensing.sim.rig import SPEED_OF_SOUND as C
from bgm2pose.sensing.sim.scattering import (
    ScatteringError, reflection_filter, reflection_paths, shadow_response,
)
from bgm2pose.sensing.skeleton import BONES, INDEX

SPEAKER = np.array([0.0, 1.2, 0.0])
MIC = np.array([0.0, 1.2, 3.0])
DIRECT = 1.0 / (4 * np.pi * 3.0)  # free-field direct amplitude on the same scale as gains


def capsules(a, b, radius) -> Body:
    """One capsule per frame: a, b (F, 3)."""
    a = np.atleast_2d(np.asarray(a, float))
    b = np.atleast_2d(np.asarray(b, float))
    return Body(a=a[:, None], b=b[:, None], radius=np.array([radius]), names=("part",))


def vertical(x, radius, half_length, z=1.5, centre_y=1.2) -> Body:
    """Vertical capsules at horizontal offsets x (F,) from the line, midway."""
    x = np.atleast_1d(np.asarray(x, float))
    base = np.stack([x, np.full_like(x, centre_y), np.full_like(x, z)], axis=1)
    up = np.array([0.0, half_length, 0.0])
    return capsules(base - up, base + up, radius)


def insertion_loss_db(h):
    return -20 * np.log10(np.abs(h))


# PHYSICS.md: exact 2-D rigid cylinder, 0.15 m, midway on a 3 m path, receiver on axis.
TORSO_TABLE = {1000: 1.4, 2000: 2.7, 4000: 4.4, 8000: 6.4, 16000: 8.8, 24000: 10.3}


def test_torso_on_the_line_follows_the_exact_cylinder_table():
    freqs = np.array([125.0, 250.0, 500.0, *TORSO_TABLE])
    il = insertion_loss_db(shadow_response(vertical(0.0, 0.15, 2.5), SPEAKER, MIC, freqs)[0])
    assert np.all(np.abs(il[:3]) < 1.0)  # ~0 dB below 500 Hz
    np.testing.assert_allclose(il[3:], list(TORSO_TABLE.values()), atol=3.0)
    assert np.all(np.diff(il[3:]) > 0.5)  # rising with frequency above 1 kHz


def test_limb_on_the_line_costs_a_few_db_at_high_frequencies():
    freqs = np.array([4000.0, 8000.0, 16000.0, 24000.0])
    il = insertion_loss_db(shadow_response(vertical(0.0, 0.05, 2.5), SPEAKER, MIC, freqs)[0])
    assert np.all(il > 0.5) and np.all(il < 4.0)
    assert il[-1] > 1.0 and np.all(np.diff(il) > 0)


def test_segments_away_from_the_line_leave_the_direct_path_exactly_alone():
    freqs = np.fft.rfftfreq(2400, 1 / 48000)
    far = vertical([2.0, -2.5], 0.15, 0.3)
    assert np.array_equal(shadow_response(far, SPEAKER, MIC, freqs), np.ones((2, freqs.size)))
    # Behind the mic, even on the line, nothing is blocked either.
    behind = capsules([0.0, 0.5, 3.5], [0.0, 2.0, 3.5], 0.15)
    assert np.array_equal(shadow_response(behind, SPEAKER, MIC, freqs), np.ones((1, freqs.size)))


def max_step(h):
    return float(np.max(np.abs(np.diff(np.abs(h), axis=0))))


@pytest.mark.parametrize(
    "name, move",
    [
        # a torso sliding sideways across the line
        ("torso", lambda x: vertical(x, 0.15, 0.3)),
        # a forearm whose lower end sits at the line's height: sides and end both cross
        ("forearm end", lambda x: vertical(x, 0.04, 0.12, centre_y=1.2 + 0.12)),
        # a head rising through the line
        ("head", lambda x: capsules(np.stack([0 * x + 0.03, 1.2 + x, 0 * x + 1.0], 1),
                                    np.stack([0 * x + 0.03, 1.2 + x, 0 * x + 1.0], 1), 0.09)),
        # an arm lying along the line, sliding out past the mic
        ("along", lambda x: capsules(np.stack([0 * x + 0.02, 0 * x + 1.2, 2.6 + x], 1),
                                     np.stack([0 * x + 0.02, 0 * x + 1.2, 2.9 + x], 1), 0.05)),
    ],
)
def test_response_is_continuous_as_segments_cross_the_line(name, move):
    freqs = np.linspace(0, 24000, 1201)
    coarse = shadow_response(move(np.arange(-1.2, 1.2, 0.001)), SPEAKER, MIC, freqs)
    assert np.all(np.isfinite(coarse))
    # The crossing matters (the response swings by a lot) ...
    swing = float(np.max(np.abs(coarse).max(axis=0) - np.abs(coarse).min(axis=0)))
    assert swing > 0.15, name
    # ... yet 1 mm of motion moves |H| by a few hundredths at most (the steepest slopes
    # are interference fringes ~3 cm apart at 24 kHz), and halving the step halves the
    # largest change: a slope, never a jump.
    assert max_step(coarse) < 0.05, name
    fine = shadow_response(move(np.arange(-1.2, 1.2, 0.0005)), SPEAKER, MIC, freqs)
    assert max_step(fine) < 0.6 * max_step(coarse), name
    # Far away the direct path is untouched again.
    assert np.array_equal(coarse[-1], np.ones(freqs.size)), name


def test_several_segments_combine_and_block_more_than_one():
    freqs = np.array([2000.0, 8000.0])
    legs = Body(
        a=np.array([[[-0.1, 0.0, 1.5], [0.1, 0.0, 1.5]]]),
        b=np.array([[[-0.1, 2.4, 1.5], [0.1, 2.4, 1.5]]]),
        radius=np.array([0.07, 0.07]),
        names=("left", "right"),
    )
    both = np.abs(shadow_response(legs, SPEAKER, MIC, freqs))[0]
    one = np.abs(shadow_response(vertical(-0.1, 0.07, 1.2), SPEAKER, MIC, freqs))[0]
    assert np.all(both < one)


def test_segments_multiply_frame_by_frame():
    # A walking pair of legs and a torso near the line: whatever mix of segments is in
    # reach in each frame, the body's response is the product of its segments' own.
    rng = np.random.default_rng(4)
    frames = 60
    x = np.linspace(-0.8, 0.8, frames)[:, None] + rng.normal(0, 0.05, (frames, 3))
    a = np.stack([x + [[-0.1, 0.1, 0.0]], np.tile([0.0, 0.0, 1.0], (frames, 1)),
                  np.full((frames, 3), 1.5)], axis=-1)
    b = a + [[0.0, 0.8, 0.0], [0.0, 0.8, 0.0], [0.0, 0.6, 0.0]]
    radius = np.array([0.07, 0.07, 0.15])
    body = Body(a=a, b=b, radius=radius, names=("left", "right", "torso"))
    freqs = np.fft.rfftfreq(256, 1 / 48000)
    whole = shadow_response(body, SPEAKER, MIC, freqs)
    parts = [shadow_response(Body(a=a[:, k:k + 1], b=b[:, k:k + 1], radius=radius[k:k + 1],
                                  names=("part",)), SPEAKER, MIC, freqs) for k in range(3)]
    assert np.sum(np.max(np.abs(whole - 1), axis=1) > 0.1) > frames // 4  # really shadowed
    np.testing.assert_allclose(whole, parts[0] * parts[1] * parts[2], rtol=0, atol=1e-5)


def test_insertion_loss_is_capped_at_maekawas_24_db():
    freqs = np.array([500.0, 4000.0, 24000.0])
    # A body far wider than the Fresnel zone, sitting on the line: nothing diffracts round.
    boulder = capsules([0.0, 1.2, 1.5], [0.0, 1.2, 1.5], 1.4)
    il = insertion_loss_db(shadow_response(boulder, SPEAKER, MIC, freqs)[0])
    np.testing.assert_allclose(il, 24.0, atol=1e-3)
    # A wide slab on the line, seen through its Fresnel zone, stays within the cap too.
    slab = insertion_loss_db(shadow_response(vertical(0.0, 0.45, 2.5), SPEAKER, MIC, freqs)[0])
    assert np.all(slab <= 24.0 + 1e-3) and slab[-1] > 15.0


# Echoes: speaker, mic and segment centres at 1.2 m, segments 0.5-1 m off the line.
OFFSETS = np.array([0.5, 0.75, 1.0])


def echo(body: Body, radius: float, freq: float | None = None):
    paths = reflection_paths(body, SPEAKER, MIC)
    level = paths.gain[:, 0] / DIRECT
    if freq is not None:
        level = level * reflection_filter(radius, np.array([freq]))[0]
    return 20 * np.log10(level), paths


def test_torso_echo_level_delay_and_direction():
    rigid_db, paths = echo(vertical(OFFSETS, 0.15, 0.25), 0.15)
    assert np.all((rigid_db > -17.0) & (rigid_db < -15.0))
    # Clothing takes alpha(1 kHz) = 0.80 / 1.8 of the energy: ~2.6 dB more.
    clothed_db, _ = echo(vertical(OFFSETS, 0.15, 0.25), 0.15, 1000.0)
    np.testing.assert_allclose(clothed_db - rigid_db, 10 * np.log10(1 - 0.8 / 1.8), atol=0.1)

    lag = paths.delay[:, 0] - 3.0 / C
    assert np.all((lag > 0.2e-3) & (lag < 1.35e-3))
    # Symmetric geometry: the specular point is the surface point nearest the line.
    np.testing.assert_allclose(lag, (2 * np.hypot(1.5, OFFSETS - 0.15) - 3.0) / C, rtol=1e-6)
    # The arrival direction points at the segment: the ray from the mic grazes or hits it.
    d = paths.direction[:, 0]
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0)
    to_axis = np.stack([OFFSETS, 0 * OFFSETS, 0 * OFFSETS - 1.5], axis=1)  # mic -> axis centre
    miss = np.linalg.norm(to_axis - np.sum(to_axis * d, axis=1)[:, None] * d, axis=1)
    assert np.all(miss <= 0.15 + 1e-9)


def test_limb_and_head_echoes_are_weaker_than_the_torso():
    limb_db, _ = echo(vertical(OFFSETS, 0.05, 0.15), 0.05)
    assert np.all((limb_db > -22.0) & (limb_db < -18.0))  # "a limb about -20 dB"
    centres = np.stack([OFFSETS, 0 * OFFSETS + 1.2, 0 * OFFSETS + 1.5], axis=1)
    head_db, _ = echo(capsules(centres, centres, 0.09), 0.09)
    assert np.all((head_db > -28.5) & (head_db < -25.5))  # -26 to -28 dB


def test_specular_point_is_the_shortest_path_over_the_capsule_surface():
    rng = np.random.default_rng(3)
    speaker, mic = np.array([0.0, 1.2, 0.0]), np.array([0.4, 1.0, 3.0])
    a = rng.uniform([-1.0, 0.3, 0.5], [1.0, 2.0, 2.5], size=(12, 3))
    axis = rng.normal(size=(12, 3))
    b = a + axis / np.linalg.norm(axis, axis=1, keepdims=True) * rng.uniform(0, 0.6, (12, 1))
    b[:3] = a[:3]  # spheres
    paths = reflection_paths(Body(a=a[:, None], b=b[:, None], radius=np.array([0.1]),
                                  names=("part",)), speaker, mic)
    checked = 0
    for i in np.flatnonzero(paths.gain[:, 0] > 0):
        # Dense points on the capsule surface: spheres at the ends, rings along the axis.
        g = rng.normal(size=(60000, 3))
        cap = 0.1 * g / np.linalg.norm(g, axis=1, keepdims=True)
        pts = [a[i] + cap, b[i] + cap]
        u = b[i] - a[i]
        if np.any(u):
            e1 = np.cross(u, [0.3, 1.0, 0.2])
            e1 /= np.linalg.norm(e1)
            e2 = np.cross(u / np.linalg.norm(u), e1)
            phi = np.linspace(0, 2 * np.pi, 1500)
            ring = 0.1 * (np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2)
            along = a[i] + np.linspace(0, 1, 300)[:, None] * u
            pts.append((along[:, None] + ring).reshape(-1, 3))
        pts = np.concatenate(pts)
        path = np.linalg.norm(pts - speaker, axis=1) + np.linalg.norm(pts - mic, axis=1)
        assert paths.delay[i, 0] * C == pytest.approx(path.min(), abs=2e-4)
        checked += 1
    assert checked >= 8


def test_reflection_fades_smoothly_past_the_ends_and_vanishes_in_forward_geometry():
    # A forearm sliding up until the stationary point (at 1.2 m) is far beyond its lower end.
    y = np.arange(0.9, 1.7, 0.001)
    body = capsules(np.stack([0 * y + 0.6, y, 0 * y + 1.5], 1),
                    np.stack([0 * y + 0.6, y + 0.25, 0 * y + 1.5], 1), 0.04)
    gain = reflection_paths(body, SPEAKER, MIC).gain[:, 0]
    # The cylinder hands over to the end cap over 10 cm: ~1 % of the peak per mm.
    assert np.max(np.abs(np.diff(gain))) < 0.02 * gain.max()
    assert gain[-1] < 0.3 * gain.max()  # past the end only the small cap reflects
    # Sliding sideways onto the line, the echo goes to grazing and dies out smoothly.
    x = np.arange(0.3, -0.001, -0.001)
    gain = reflection_paths(vertical(x, 0.15, 0.25), SPEAKER, MIC).gain[:, 0]
    assert gain[-1] == 0.0 and gain[0] > 0
    assert np.max(np.abs(np.diff(gain))) < 0.02 * gain.max()


def test_reflection_filter_rolls_off_below_ka_1_and_absorbs_above():
    freqs = np.array([100.0, 125.0, 2000.0, 10000.0, 20000.0])
    forearm = reflection_filter(0.04, freqs)
    assert forearm[0] < 0.02 * forearm[3]  # ka = 0.07: a Rayleigh scatterer, -34 dB
    # Geometric above a few kHz, losing ~half the energy to clothing, held flat.
    assert forearm[3] ** 2 == pytest.approx(1 - 0.9 / 1.8, rel=0.02)
    assert forearm[4] == pytest.approx(forearm[3], rel=0.01)
    torso = reflection_filter(0.15, freqs)
    assert torso[1] < torso[2] and torso[0] > 10 * forearm[0]  # larger parts reflect lower
    assert reflection_filter(10.0, np.array([125.0]))[0] ** 2 == pytest.approx(0.9, abs=0.02)


def t_pose() -> np.ndarray:
    """A 1.75 m person in a T-pose facing +z (left = +x)."""
    half = {
        "Hips": (0, 0.95, 0), "Spine": (0, 1.05, 0), "Spine1": (0, 1.25, 0),
        "Neck": (0, 1.5, 0), "Head": (0, 1.6, 0),
        "LeftShoulder": (0.08, 1.45, 0), "LeftArm": (0.18, 1.45, 0),
        "LeftForeArm": (0.46, 1.45, 0), "LeftHand": (0.72, 1.45, 0),
        "LeftUpLeg": (0.1, 0.92, 0), "LeftLeg": (0.1, 0.5, 0),
        "LeftFoot": (0.1, 0.08, 0), "LeftToeBase": (0.1, 0.02, 0.14),
    }
    joints = np.zeros((21, 3))
    for name, p in half.items():
        joints[INDEX[name]] = p
        if name.startswith("Left"):
            joints[INDEX["Right" + name[4:]]] = (-p[0], p[1], p[2])
    return joints


def test_dress_follows_the_bones_and_scales_radii():
    rng = np.random.default_rng(0)
    joints = t_pose()[None] + rng.normal(scale=0.02, size=(5, 21, 3))
    body = dress(joints)
    assert body.a.shape == body.b.shape == (5, len(body.names), 3)
    bone = dict(zip([(p, c) for p, c in BONES], range(len(BONES))))
    lengths = np.linalg.norm(joints[:, [c for _, c in BONES]] - joints[:, [p for p, _ in BONES]],
                             axis=-1)
    for name, (p, c) in {"left_forearm": ("LeftForeArm", "LeftHand"),
                         "right_thigh": ("RightUpLeg", "RightLeg"),
                         "left_shin": ("LeftLeg", "LeftFoot")}.items():
        k = body.names.index(name)
        seg = np.linalg.norm(body.b[:, k] - body.a[:, k], axis=-1)
        np.testing.assert_allclose(seg, lengths[:, bone[(INDEX[p], INDEX[c])]])
    head = body.names.index("head")
    np.testing.assert_array_equal(body.a[:, head], body.b[:, head])

    still = dress(t_pose())
    for name in ("left_upper_arm", "left_forearm", "right_upper_arm", "right_forearm"):
        k = still.names.index(name)
        axis = still.b[0, k] - still.a[0, k]
        assert abs(axis[1]) < 1e-9 and abs(axis[0]) > 0.2  # horizontal, sideways
    torso = still.names.index("torso")
    assert still.radius[torso] == pytest.approx(0.15)
    # The torso's rounded top reaches the Neck; the head sphere sits above it.
    assert still.b[0, torso, 1] + 0.15 == pytest.approx(1.5)
    assert still.a[0, head, 1] > 1.6

    heavy, small = dress(t_pose(), build=1.2), dress(t_pose(), height=1.4)
    np.testing.assert_allclose(heavy.radius, 1.2 * still.radius)
    np.testing.assert_allclose(small.radius, 0.8 * still.radius)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(BodyError, match="21 joints"):
        dress(np.zeros((5, 20, 3)))
    with pytest.raises(BodyError, match="build"):
        dress(t_pose(), build=-1)
    body = dress(t_pose())
    with pytest.raises(ScatteringError, match="speaker"):
        reflection_paths(body, np.zeros(2), MIC)
    with pytest.raises(ScatteringError, match="frequencies"):
        shadow_response(body, SPEAKER, MIC, np.array([[1.0]]))
