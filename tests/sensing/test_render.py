"""The virtual rig's room response and block renderer: geometry, directions, streaming,
time invariance, Doppler and noise."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import freqz, welch

from bgm2pose.sensing.sim.body import Body
from bgm2pose.sensing.sim.motion import SUBJECTS, MotionGenerator, generate_motion
from bgm2pose.sensing.sim.moving_paths import mix_moving_paths
from bgm2pose.sensing.sim.render import (
    _PINK_A, _PINK_B, RenderError, SceneRenderer, _noise_numerator, render_session,
)
from bgm2pose.sensing.sim.rig import SPEED_OF_SOUND, Rig
from bgm2pose.sensing.sim.room import room_response
from bgm2pose.sensing.sim.scattering import reflection_paths

FS = 48_000
QUIET = dict(sensor_noise_db=None, background_noise_db=None)


def _impulse(speaker: int, n: int = 2400) -> np.ndarray:
    x = np.zeros((2, n), np.float32)
    x[speaker, 0] = 1.0
    return x


def test_direct_path_arrives_at_distance_over_c_with_the_room_offset_removed():
    rig = Rig()
    for speaker in range(2):
        y = SceneRenderer(rig, **QUIET).process(_impulse(speaker))
        distance = np.linalg.norm(rig.speakers[speaker] - rig.mic_position)
        expected = distance / SPEED_OF_SOUND * FS
        assert abs(np.argmax(np.abs(y[0])) - expected) <= 1.0
        # 1 m of free field has gain 1 at the speakers' level: a band-limited impulse keeps
        # its energy.
        near = y[0, int(expected) - 32:int(expected) + 34].astype(float)
        level = 10 ** (rig.speaker_gain_db / 20)
        assert np.sqrt(np.sum(near ** 2)) == pytest.approx(level / distance, rel=0.03)
        # Nothing arrives before the direct sound (no leftover fixed RIR offset; the
        # fractional delay is pyroomacoustics' 81-tap windowed sinc).
        early = int(expected) - 41
        assert np.abs(y[:, :early]).max() < 1e-6 * np.abs(y).max()


def test_first_room_reflection_is_the_floor_image_at_its_time_and_direction():
    rig = Rig()  # speakers and mic 1.2 m up: the floor bounce is the first reflection
    room = room_response(rig)
    for speaker in range(2):
        image = rig.speakers[speaker] * [1, -1, 1]
        offset = image - rig.mic_position
        arrival = np.linalg.norm(offset) / SPEED_OF_SOUND * FS
        direct = int(room.paths.delay[speaker, 0] * FS)
        w = room.static[speaker, 0]
        peak = direct + 40 + int(np.argmax(np.abs(w[direct + 40: int(arrival) + 40])))
        assert abs(peak - arrival) <= 1.0
        seen = room.static[speaker, 1:, peak] / w[peak] @ rig.mic_axes  # world direction
        expected = offset / np.linalg.norm(offset)
        assert np.degrees(np.arccos(np.clip(seen @ expected / np.linalg.norm(seen), -1, 1))) < 5
        assert seen[1] < -0.5  # from below: height went through the axis swap


@pytest.mark.parametrize("mic", [(3.5, 1.2, 1.5), (1.2, 0.8, 2.5)])
def test_intensity_of_a_lone_speaker_points_at_it(mic):
    rig = Rig(mic=mic)
    room = room_response(rig, max_order=0)
    for speaker in range(2):
        y = SceneRenderer(rig, room=room, **QUIET).process(_impulse(speaker)).astype(float)
        arrival = int(round(room.paths.delay[speaker, 0] * FS))
        part = y[:, arrival - 16:arrival + 16]
        intensity = (part[0] * part[1:]).sum(axis=1) @ rig.mic_axes  # mic frame -> world
        direction = rig.speakers[speaker] - rig.mic_position
        cos = intensity @ direction / np.linalg.norm(intensity) / np.linalg.norm(direction)
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))) < 5


def _music(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((2, int(seconds * FS)))
            ).astype(np.float32)


def test_output_does_not_depend_on_the_block_size():
    rig = Rig()
    music = _music(1.5)
    # Longer than the music: the renderer reads ahead, and past its end an array holds still.
    joints = generate_motion(SUBJECTS[0], 2.5, seed=3, rig=rig)
    outputs = [render_session(rig, music, joints, block=block, seed=7)
               for block in (512, 2400, music.shape[1])]
    # The live path: poses pulled from the generator in small batches, JACK-sized blocks.
    live = SceneRenderer(rig, MotionGenerator(SUBJECTS[0], seed=3, rig=rig), seed=7,
                         pose_batch=5)
    outputs.append(np.concatenate([live.process(music[:, a:a + 512])
                                   for a in range(0, music.shape[1], 512)], axis=1))
    scale = np.abs(outputs[0]).max()
    for other in outputs[1:]:
        assert np.abs(other - outputs[0]).max() < 1e-5 * scale


def test_a_still_body_is_a_time_invariant_filter():
    rig = Rig()
    room = room_response(rig, max_order=0)  # the static reverb is LTI by construction
    music = _music(1.0, seed=1)
    still = np.repeat(generate_motion(SUBJECTS[0], 0.1, seed=0, rig=rig)[:1], 130, axis=0)
    y = render_session(rig, music, still, room=room, **QUIET).astype(float)
    # Least squares FIR from both speakers to each channel on the first half...
    # (lags 300-1000 samples hold the direct path, its shadow and the body's echoes)
    lags, half = np.arange(300, 1000), music.shape[1] // 2
    x = music.astype(float)

    def lagged(a, b):
        rows = np.arange(a, b)[:, None] - lags[None, :]
        return np.hstack([np.where(rows >= 0, xs[np.maximum(rows, 0)], 0.0) for xs in x])

    train = lagged(lags[-1], half)
    h = np.linalg.solve(train.T @ train, train.T @ y[:, lags[-1]:half].T)
    # ... predicts the second half.
    residual = lagged(half, 2 * half) @ h - y[:, half:].T
    assert np.sum(residual ** 2) / np.sum(y[:, half:] ** 2) < 1e-4  # -40 dB
    # And the body is really there: the empty room is a different filter.
    empty = render_session(rig, music, None, room=room, **QUIET).astype(float)
    assert np.sum((empty - y) ** 2) / np.sum(y ** 2) > 1e-4


def test_a_moving_arm_shows_the_doppler_shift_of_its_path_rate():
    rig = Rig()
    room = room_response(rig, max_order=0)
    seconds, tone = 1.0, 12_000.0
    frames = int(seconds * 120) + 2
    t = np.arange(frames) / 120
    # One vertical capsule beside the speaker-mic lines, moving away from them at 2 m/s.
    joints = np.zeros((frames, 21, 3))
    joints[:, 0] = np.stack([4.8 + 2.0 * t, np.full_like(t, 0.9), np.full_like(t, 3.0)], -1)
    joints[:, 1] = joints[:, 0] + [0.0, 0.6, 0.0]

    def arm(j: np.ndarray) -> Body:
        return Body(a=j[:, :1], b=j[:, 1:2], radius=np.array([0.05]), names=("arm",))

    n = int(seconds * FS)
    music = np.zeros((2, n), np.float32)
    music[0] = 0.5 * np.sin(2 * np.pi * tone * np.arange(n) / FS)
    moving = SceneRenderer(rig, joints, room=room, dress=arm, **QUIET).process(music)
    static = SceneRenderer(rig, None, room=room, **QUIET).process(music)
    echo = (moving - static)[0, n // 4: 3 * n // 4].astype(float)

    spectrum = np.abs(np.fft.rfft(echo * np.hanning(echo.size), 16 * echo.size))
    freqs = np.fft.rfftfreq(16 * echo.size, 1 / FS)
    observed = freqs[np.argmax(spectrum)]

    delay = reflection_paths(arm(joints), rig.speakers[0], rig.mic_position).delay[:, 0]
    window = (t >= 0.25) & (t <= 0.75)
    rate = np.polyfit(t[window], delay[window] * SPEED_OF_SOUND, 1)[0]  # dL/dt, m/s
    expected = tone * (1 - rate / SPEED_OF_SOUND)
    assert abs(tone - expected) > 20  # a shift worth measuring
    assert abs(observed - expected) < 3


def test_moving_path_kernel_is_lagrange_interpolation_of_the_moving_delay():
    # The compiled kernel against the textbook formulation, sample by sample: the delay and
    # the gains move linearly within each frame, the line is read by 4-point Lagrange.
    rng = np.random.default_rng(2)
    fs, n, offset, origin = 400, 1500, 123, 900
    line = rng.standard_normal((3, origin + n)).astype(np.float32)
    rows = np.array([0, 2, 2, 1])
    count = (offset + n - 1) // fs + 2
    delay = rng.uniform(10, 800, (count, rows.size))
    gains = rng.standard_normal((count, 4, rows.size)).astype(np.float32)
    expected = np.zeros((4, n))
    for j in range(n):
        c, k = divmod(offset + j, fs)
        w = k / fs
        d = (1 - w) * delay[c] + w * delay[c + 1]
        g = (1 - w) * gains[c].astype(float) + w * gains[c + 1]
        pos = origin + j - d
        i = np.floor(pos).astype(int)
        x = pos - i
        weights = [-x * (x - 1) * (x - 2) / 6, (x + 1) * (x - 1) * (x - 2) / 2,
                   -(x + 1) * x * (x - 2) / 2, (x + 1) * x * (x - 1) / 6]
        v = sum(wt * line[rows, i + m] for wt, m in zip(weights, (-1, 0, 1, 2)))
        expected[:, j] = g @ v
    got = mix_moving_paths(line, rows, origin, delay, gains, offset, fs, n)
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-5 * np.abs(expected).max()


def test_one_noise_filter_has_the_spectrum_of_sensor_plus_pink_noise():
    w = np.linspace(1e-3, np.pi, 512)
    _, pink = freqz(_PINK_B, _PINK_A, w)
    for sensor, background in ((1e-4, 0.02), (0.0, 0.02), (1e-4, 1e-6)):
        _, h = freqz(_noise_numerator(sensor, background), _PINK_A, w)
        target = sensor ** 2 + background ** 2 * np.abs(pink) ** 2
        np.testing.assert_allclose(np.abs(h) ** 2, target, rtol=1e-5)


def test_noise_is_seeded_and_at_the_configured_levels():
    rig = Rig()
    silence = np.zeros((2, 2 * FS), np.float32)
    a = render_session(rig, silence, None, seed=5)
    assert np.array_equal(a, render_session(rig, silence, None, seed=5))
    assert not np.allclose(a, render_session(rig, silence, None, seed=6))

    sensor = render_session(rig, silence, None, sensor_noise_db=-80.0, background_noise_db=None)
    assert np.allclose(np.sqrt(np.mean(sensor.astype(float) ** 2, axis=1)), 1e-4, rtol=0.03)
    # Channels are independent.
    assert abs(np.corrcoef(sensor)[0, 1]) < 0.02

    background = render_session(rig, silence, None, sensor_noise_db=None,
                                background_noise_db=-60.0).astype(float)
    rms = np.sqrt(np.mean(background ** 2, axis=1))
    assert rms[0] == pytest.approx(1e-3, rel=0.1)
    assert np.allclose(rms[1:], 1e-3 / np.sqrt(3), rtol=0.1)
    f, psd = welch(background[0], FS, nperseg=8192)
    decade = 10 * np.log10(np.interp(200, f, psd) / np.interp(2000, f, psd))
    assert decade == pytest.approx(10.0, abs=2.0)  # pink: -10 dB per decade


def test_bad_inputs_raise_clear_errors():
    rig = Rig()
    with pytest.raises(RenderError, match="music"):
        SceneRenderer(rig, **QUIET).process(np.zeros((4, 100), np.float32))
    with pytest.raises(RenderError, match="poses"):
        SceneRenderer(rig, np.zeros((10, 20, 3)), **QUIET)
