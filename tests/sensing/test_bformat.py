import numpy as np
import pytest

from bgm2pose.sensing.bformat import (
    CONVENTIONS, BFormatError, from_internal, plane_wave_gains, to_internal,
)
from bgm2pose.sensing.errors import UserError

FRONT, LEFT, UP = np.eye(3)


def _signal(rng, shape=(4, 1000)):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_round_trip_through_every_convention(convention):
    x = _signal(np.random.default_rng(0))
    back = to_internal(from_internal(x, convention), convention)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, x, rtol=1e-6, atol=0)


def test_ambix_reorder_is_bitwise_exact():
    x = _signal(np.random.default_rng(1))
    ambix = from_internal(x, "ambix")
    assert np.array_equal(to_internal(ambix, "ambix"), x)
    # FuMa -> internal -> ambiX only rescales W: X, Y, Z are moved bit for bit.
    fuma = from_internal(x, "fuma")
    via = from_internal(to_internal(fuma, "fuma"), "ambix")
    assert np.array_equal(via[1:], ambix[1:])
    np.testing.assert_allclose(via[0], ambix[0], rtol=1e-6)


def test_fuma_w_is_minus_3_db():
    x = _signal(np.random.default_rng(2))
    fuma = from_internal(x, "fuma")
    np.testing.assert_allclose(fuma[0], x[0] / np.sqrt(2), rtol=1e-6)
    assert np.array_equal(fuma[1:], x[1:])


@pytest.mark.parametrize(
    ("direction", "internal", "fuma", "ambix"),
    [
        (FRONT, [1, 1, 0, 0], [2**-0.5, 1, 0, 0], [1, 0, 0, 1]),
        (LEFT, [1, 0, 1, 0], [2**-0.5, 0, 1, 0], [1, 1, 0, 0]),
        (UP, [1, 0, 0, 1], [2**-0.5, 0, 0, 1], [1, 0, 1, 0]),
    ],
)
def test_plane_wave_from_each_axis_in_each_convention(direction, internal, fuma, ambix):
    g = plane_wave_gains(direction)
    np.testing.assert_allclose(g, internal, atol=1e-12)
    np.testing.assert_allclose(from_internal(g, "fuma", axis=-1), fuma, atol=1e-12)
    np.testing.assert_allclose(from_internal(g, "ambix", axis=-1), ambix, atol=1e-12)


def test_plane_wave_gains_normalise_and_batch():
    d = np.array([[[3.0, 4.0, 0.0], [0.0, 0.0, -2.0]]])
    g = plane_wave_gains(d)
    assert g.shape == (1, 2, 4)
    np.testing.assert_allclose(g[0, 0], [1, 0.6, 0.8, 0])
    np.testing.assert_allclose(g[0, 1], [1, 0, 0, -1])


@pytest.mark.parametrize("bad", [[0.0, 0.0, 0.0], [np.nan, 1.0, 0.0], [1.0, 0.0]])
def test_plane_wave_gains_reject_bad_directions(bad):
    with pytest.raises(BFormatError):
        plane_wave_gains(bad)


def test_channel_axis_last_and_batches():
    rng = np.random.default_rng(3)
    x = _signal(rng, (5, 300, 4))
    ambix = from_internal(x, "ambix", axis=-1)
    assert ambix.shape == x.shape
    assert np.array_equal(ambix, x[..., [0, 2, 3, 1]])
    assert np.array_equal(to_internal(ambix, "ambix", axis=-1), x)
    # The same data channels-first gives the same numbers.
    first = from_internal(np.moveaxis(x, -1, 0), "fuma", axis=0)
    np.testing.assert_array_equal(np.moveaxis(first, 0, -1), from_internal(x, "fuma", axis=-1))


def _intensity_direction(bformat: np.ndarray) -> np.ndarray:
    """Mean active intensity Re(conj(W) [X, Y, Z]) summed over all frequency bins, unit length."""
    spec = np.fft.rfft(bformat, axis=-1)
    i = np.real(np.conj(spec[0])[None] * spec[1:]).sum(axis=-1)
    return i / np.linalg.norm(i)


def test_fuma_recording_read_correctly_points_at_the_source_and_misread_does_not():
    rng = np.random.default_rng(4)
    u = np.array([0.3, -0.8, 0.5])
    u /= np.linalg.norm(u)
    pressure = rng.standard_normal(4800)
    # What a FuMa mic delivers for a plane wave from u, plus a little uncorrelated noise.
    internal = plane_wave_gains(u)[:, None] * pressure[None]
    recorded = from_internal(internal, "fuma") + 0.01 * rng.standard_normal((4, 4800))

    right = _intensity_direction(to_internal(recorded, "fuma"))
    assert right @ u > 0.9999

    wrong = _intensity_direction(to_internal(recorded, "ambix"))
    assert wrong @ u < 0.9


def test_unknown_convention_lists_choices():
    with pytest.raises(BFormatError, match="internal, fuma, ambix"):
        to_internal(np.zeros((4, 10)), "acn")
    with pytest.raises(UserError):
        from_internal(np.zeros((4, 10)), "FuMa")


@pytest.mark.parametrize(("shape", "axis"), [((3, 10), 0), ((10, 4), 0), ((4,), 1), ((), 0)])
def test_wrong_channel_count_is_refused(shape, axis):
    with pytest.raises(BFormatError, match="4 channels"):
        to_internal(np.zeros(shape), "internal", axis=axis)
