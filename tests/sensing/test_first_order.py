"""The room lights the body: first-order reflections shadowed and lit by the person, the
speaker's radiation, and the empty room against pyroomacoustics (PHYSICS.md, "The room
lights the body too")."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyroomacoustics as pra
import pytest
from scipy.signal import butter, sosfilt

from bgm2pose.sensing.sim.body import Body
from bgm2pose.sensing.sim.motion import SUBJECTS, generate_motion
from bgm2pose.sensing.sim.render import SceneRenderer, render_session
from bgm2pose.sensing.sim.rig import SPEED_OF_SOUND, Rig, RigError
from bgm2pose.sensing.sim.room import _rirs, room_response
from bgm2pose.sensing.sim.scattering import reflection_paths, shadow_response
from bgm2pose.sensing.sim.speaker import high_frequency_level_db, radiation

FS = 48_000
QUIET = dict(sensor_noise_db=None, background_noise_db=None)


def _impulse_response(rig: Rig, speaker: int, n: int, poses=None, **options) -> np.ndarray:
    """(4, n) response to a unit impulse on one speaker, in pyroomacoustics' 1/r scale."""
    x = np.zeros((2, n), np.float32)
    x[speaker, 0] = 1.0
    y = SceneRenderer(rig, poses, **QUIET, **options).process(x)
    return y.astype(float) / 10 ** (rig.speaker_gain_db / 20)


def _sphere(centre, radius: float, frames: int = 1300):
    """A still sphere as the whole body."""
    c = np.asarray(centre, float)
    joints = np.zeros((frames, 21, 3))

    def dress(j):
        a = np.broadcast_to(c, (len(j), 1, 3))
        return Body(a=a, b=a, radius=np.array([radius]), names=("ball",))
    return joints, dress


def test_empty_room_is_pyroomacoustics_full_response():
    rig = Rig(speaker_directivity_db=0.0)  # omni speakers: pyroomacoustics' own sources
    order = room_response(rig).static.shape  # warm the cache, and the length to compare
    absorption, max_order = pra.inverse_sabine(rig.rt60, np.asarray(rig.room_size)[[0, 2, 1]],
                                               c=SPEED_OF_SOUND)
    materials = pra.Material(absorption)
    full, early = _rirs(rig, materials, max_order), _rirs(rig, materials, 1)
    n = min(full.shape[-1], order[-1]) - 40
    offset = pra.constants.get("frac_delay_length") // 2
    late = full[..., offset:offset + n] - np.pad(early, [(0, 0), (0, 0), (0, n)])[
        ..., offset:offset + n]
    # The project's convention: the order-2+ sum is high-passed (its DC bias is not a room's).
    sos = butter(2, pra.constants.get("rir_hpf_fc"), btype="highpass", fs=FS, output="sos")
    expected = early[..., offset:offset + n] if early.shape[-1] >= offset + n else np.pad(
        early, [(0, 0), (0, 0), (0, offset + n - early.shape[-1])])[..., offset:offset + n]
    expected = expected + sosfilt(sos, late, axis=-1)
    for s in range(2):
        got = _impulse_response(rig, s, n)
        peak = np.abs(expected[s, 0]).max()
        assert np.abs(got - expected[s]).max() < 1e-3 * peak  # -60 dB re the direct peak


def test_speaker_radiation_stays_inside_physics_magnitudes():
    side, behind = high_frequency_level_db(np.array([0.0, -1.0]), 6.0)
    assert -6.0 <= side <= -3.0 and -20.0 <= behind <= -10.0
    assert high_frequency_level_db(np.array(1.0), 6.0) == 0.0
    # Nearly omni at low frequencies, the full pattern above 2 kHz; an omni has none.
    levels = 20 * np.log10(radiation(-1.0, np.array([100.0, 300.0, 2000.0, 8000.0]), 6.0))
    assert abs(levels[0]) < 0.1 and abs(levels[1]) < 0.1
    assert levels[2] == pytest.approx(behind) and levels[3] == pytest.approx(behind)
    assert np.all(radiation(-1.0, np.array([100.0, 8000.0]), 0.0) == 1.0)
    # The path to the wall behind the speakers leaves backwards: weaker above 2 kHz by the
    # pattern, not at 100 Hz.
    rig = Rig()
    paths = room_response(rig).paths
    back = paths.surface.index("wall_z1")
    spectrum = np.abs(np.fft.rfft(paths.fir[0, back], 4800))
    f = np.fft.rfftfreq(4800, 1 / FS)
    at = [np.argmin(np.abs(f - hz)) for hz in (100, 8000)]
    scale = paths.wall_gain[back] / (4 * np.pi * np.linalg.norm(paths.source[0, back]
                                                                 - rig.mic_position))
    drop = 20 * np.log10(spectrum[at] / scale)
    assert abs(drop[0]) < 0.5 and -20.0 < drop[1] < -10.0


def _window_spectrum(y: np.ndarray, centre: float, before: int, after: int,
                     freqs: np.ndarray) -> np.ndarray:
    lo = int(centre) - before
    part = y[0, lo:int(centre) + after]
    return np.fft.rfft(part, 4800)[np.round(freqs / (FS / 4800)).astype(int)]


@pytest.mark.parametrize("body_paths", ["first_order", "direct"])
def test_an_obstacle_on_the_floor_bounce_lowers_that_arrival_by_the_insertion_loss(
        monkeypatch, body_paths):
    # The body's own echoes are switched off: this is about the shadow of the paths.
    monkeypatch.setattr(SceneRenderer, "_reflections",
                        lambda self, music, t0: np.zeros((4, music.shape[1]), np.float32))
    rig = Rig(body_paths=body_paths)
    paths = room_response(rig, max_order=1).paths
    speaker = 0
    floor_image = rig.speakers[speaker] * [1, -1, 1]
    mic_image = rig.mic_position * [1, -1, 1]
    # The specular point on the floor, and a ball of 0.1 m lying on it: 1 m below every
    # other path (speakers and mic are 1.2 m up).
    t = rig.speakers[speaker][1] / (rig.speakers[speaker][1] + rig.mic_position[1])
    bounce = rig.speakers[speaker] + t * (mic_image - rig.speakers[speaker])
    joints, dress = _sphere(bounce + [0, 0.1, 0], 0.1)
    n = 2400
    room = room_response(rig, max_order=1)
    blocked = _impulse_response(rig, speaker, n, joints, room=room, dress=dress)
    empty = _impulse_response(rig, speaker, n, None, room=room)

    every = room_response(replace(rig, body_paths="first_order"), max_order=1).paths
    delays = {name: delay * FS for name, delay in zip(every.surface, every.delay[speaker])}
    freqs = np.array([2000.0, 4000.0, 8000.0, 16000.0])
    ball = dress(joints[:1])
    model = (shadow_response(ball, floor_image, rig.mic_position, freqs)[0]
             * shadow_response(ball, rig.speakers[speaker], mic_image, freqs)[0])
    assert np.all(20 * np.log10(np.abs(model[2:])) < -3.0)  # a loss worth measuring

    floor = delays.pop("floor")
    ratio = (_window_spectrum(blocked, floor, 60, 70, freqs)
             / _window_spectrum(empty, floor, 60, 70, freqs))
    expected = model if body_paths == "first_order" else np.ones_like(model)
    np.testing.assert_allclose(20 * np.log10(np.abs(ratio)),
                               20 * np.log10(np.abs(expected)), atol=1.0)
    # Every other arrival is left alone (within -40 dB of it).
    for delay in delays.values():
        window = slice(int(delay) - 30, int(delay) + 30)
        change = np.sum((blocked - empty)[:, window] ** 2)
        assert change < 1e-4 * np.sum(empty[:, window] ** 2)


def test_a_person_changes_the_response_at_the_floor_and_back_wall_delays():
    pose = generate_motion(SUBJECTS[0], 0.1, seed=0, rig=Rig())[:1]
    still = np.repeat(pose, 1300, axis=0)
    changes = {}
    for body_paths in ("first_order", "direct"):
        rig = Rig(body_paths=body_paths)
        room = room_response(rig, max_order=1)
        person = _impulse_response(rig, 0, 2400, still, room=room)
        empty = _impulse_response(rig, 0, 2400, None, room=room)
        delays = dict(zip(room_response(Rig(), max_order=1).paths.surface,
                          room_response(Rig(), max_order=1).paths.delay[0] * FS))
        changes[body_paths] = {
            name: float(np.sum((person - empty)[0, int(delays[name]) - 30:int(delays[name]) + 30]
                               ** 2) / np.sum(empty[0, int(delays[name]) - 30:
                                                    int(delays[name]) + 30] ** 2))
            for name in ("floor", "wall_z1")}
    for name in ("floor", "wall_z1"):
        # The person changes each arrival by more than -20 dB of it, several times more
        # than the direct-only rig does there.
        assert changes["first_order"][name] > 0.01
        assert changes["first_order"][name] > 3 * changes["direct"][name]


def test_a_still_person_in_the_first_order_room_is_a_time_invariant_filter():
    rig = Rig()
    room = room_response(rig, max_order=1)  # direct and first-order paths, all body-lit
    music = (0.1 * np.random.default_rng(1).standard_normal((2, FS))).astype(np.float32)
    pose = generate_motion(SUBJECTS[0], 0.1, seed=0, rig=rig)[:1]
    still = np.repeat(pose, 250, axis=0)
    # The same music 1234 samples later (off the shadow frames' grid) comes out the same,
    # 1234 samples later.
    shift = 1234
    later = np.pad(music, [(0, 0), (shift, 0)])
    y = render_session(rig, np.pad(music, [(0, 0), (0, shift)]), still, room=room, **QUIET)
    y_later = render_session(rig, later, still, room=room, **QUIET)
    error = np.sum((y_later[:, shift:].astype(float) - y[:, :-shift]) ** 2)
    assert error < 1e-6 * np.sum(y.astype(float) ** 2)
    # And the body is really there, on the first-order paths too.
    direct_only = render_session(replace(rig, body_paths="direct"), music, still,
                                 room=room_response(replace(rig, body_paths="direct"), 1),
                                 **QUIET)
    change = np.sum((y[:, :FS].astype(float) - direct_only) ** 2)
    assert change > 1e-3 * np.sum(direct_only.astype(float) ** 2)


def test_the_body_is_lit_by_the_floor_image_and_lights_the_floor():
    # A ball beside the speakers' line, off every path: in the first-order rig it adds two
    # echoes via the floor (speaker -> floor -> ball -> mic and speaker -> ball -> floor ->
    # mic) at their image-source delays; the direct-only rig has neither.
    rig = Rig()
    speaker = 0
    centre = np.array([4.6, 0.7, 3.0])
    joints, dress = _sphere(centre, 0.15)
    ball = dress(joints[:1])
    floor_image = rig.speakers[speaker] * [1, -1, 1]
    mic_image = rig.mic_position * [1, -1, 1]
    lit = reflection_paths(ball, floor_image, rig.mic_position)
    lighting = reflection_paths(ball, rig.speakers[speaker], mic_image)
    outputs = {}
    for body_paths in ("first_order", "direct"):
        r = replace(rig, body_paths=body_paths)
        room = room_response(r, max_order=1)
        outputs[body_paths] = (_impulse_response(r, speaker, 2400, joints, room=room,
                                                 dress=dress)
                               - _impulse_response(r, speaker, 2400, None, room=room))
    extra = np.abs(outputs["first_order"] - outputs["direct"])[0]
    for path in (lit, lighting):
        at = path.delay[0, 0] * FS
        near = extra[int(at) - 20:int(at) + 20].max()
        assert near > 0.3 * extra.max()
    # Nothing of those echoes arrives before the earlier of the two.
    first = min(lit.delay[0, 0], lighting.delay[0, 0]) * FS
    assert extra[:int(first) - 140].max() < 1e-3 * extra.max()


def test_body_paths_setting_is_checked():
    assert Rig().body_surfaces == ("wall_x0", "wall_x1", "floor", "ceiling", "wall_z0",
                                   "wall_z1")
    assert Rig(body_paths="direct").body_surfaces == ()
    only_floor = Rig.from_dict({"body_paths": ["floor"]})
    assert room_response(only_floor).paths.surface == ("direct", "floor")
    with pytest.raises(RigError, match="first_order"):
        Rig(body_paths="second_order")
    with pytest.raises(RigError, match="unknown surfaces"):
        Rig(body_paths=("floor", "window"))
