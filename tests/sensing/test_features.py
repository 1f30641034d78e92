"""Parity of the AMPL feature pipeline with an independent librosa reference, plus its edge cases.

``librosa_reference`` is also what ``benchmarks/features.py`` times ours against.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from bgm2pose.sensing import features as F

librosa = pytest.importorskip("librosa")

SR = 48_000


def librosa_mel_filterbank() -> np.ndarray:
    return librosa.filters.mel(sr=SR, n_fft=2400, n_mels=128)


def librosa_reference(mic: np.ndarray, music: np.ndarray, mel_fb: np.ndarray) -> np.ndarray:
    """Straightforward librosa version of the base features: (4, N), (2, N) -> (9, T, 128).

    Intensity is divided without an epsilon, as in the public code: silent bins give NaN.
    """
    audio = np.concatenate([mic, music], axis=0)
    spec = librosa.stft(audio, n_fft=2400, hop_length=2400, center=False, window="hann")  # (6, F, T)
    mel_power = librosa.feature.melspectrogram(S=np.abs(spec) ** 2, sr=SR, n_fft=2400, n_mels=128)
    log_mel = librosa.power_to_db(mel_power, ref=1.0, amin=1e-10, top_db=None)
    intensity = np.real(np.conj(spec[0]) * spec[1:4])
    with np.errstate(invalid="ignore", divide="ignore"):
        intensity = intensity / np.linalg.norm(intensity, axis=0, keepdims=True)
    mel_intensity = mel_fb @ intensity  # (3, 128, T)
    return np.concatenate([log_mel, mel_intensity], axis=0).transpose(0, 2, 1)  # (9, T, 128)


def random_signals(rng: np.random.Generator, n: int = F.WINDOW_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    scale = rng.uniform(0.01, 1.0, size=(6, 1))
    audio = (rng.standard_normal((6, n)) * scale).astype(np.float32)
    return audio[:4], audio[4:]


def music_like_signals(rng: np.random.Generator, n: int = F.WINDOW_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic notes with decaying envelopes plus a little noise, different on every channel."""
    t = np.arange(n) / SR
    audio = np.empty((6, n))
    for ch in range(6):
        signal = np.zeros(n)
        for onset in rng.uniform(0, t[-1], size=5):
            f0 = rng.uniform(80, 900)
            envelope = np.where(t >= onset, np.exp(-(t - onset) * rng.uniform(2, 12)), 0.0)
            for k in range(1, 9):
                if k * f0 < SR / 2:
                    signal += envelope * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k
        audio[ch] = 0.2 * signal + 1e-3 * rng.standard_normal(n)
    audio = audio.astype(np.float32)
    return audio[:4], audio[4:]


def assert_matches_reference(ours: np.ndarray, ref: np.ndarray) -> None:
    np.testing.assert_allclose(ours[:6], ref[:6], rtol=0, atol=1e-3)
    finite = np.isfinite(ref[6:])
    np.testing.assert_allclose(ours[6:][finite], ref[6:][finite], rtol=0, atol=1e-5)


def test_filterbank_equals_librosa():
    ours = F.mel_filterbank()
    assert ours.shape == (128, 1201) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, librosa_mel_filterbank(), rtol=1e-6, atol=1e-9)
    assert F.mel_filterbank() is ours  # cached


@pytest.mark.parametrize("make_signals", [random_signals, music_like_signals])
@pytest.mark.parametrize("seed", [0, 1, 7, 8, 9, 10])
def test_window_features_match_librosa(make_signals, seed):
    mic, music = make_signals(np.random.default_rng(seed))
    ours = F.window_features(mic, music)
    assert ours.shape == (9, 12, 128) and ours.dtype == np.float32
    # The reference runs in float64 on the same float32 samples, so it is the more exact one.
    ref = librosa_reference(mic.astype(np.float64), music.astype(np.float64), librosa_mel_filterbank())
    assert np.all(np.isfinite(ref))
    assert_matches_reference(ours, ref)
    # Guard against a vacuous comparison: real spread of levels and directions.
    assert np.ptp(ours[:6]) > 20 and np.abs(ours[6:]).max() > 1e-3


def test_silence_gives_floor_db_and_zero_intensity():
    silent = F.window_features(np.zeros((4, F.WINDOW_SAMPLES)), np.zeros((2, F.WINDOW_SAMPLES)))
    np.testing.assert_allclose(silent[:6], -100.0, rtol=0, atol=1e-4)
    assert np.all(silent[6:] == 0.0)


def test_partly_silent_window_is_finite_and_matches_reference_elsewhere():
    rng = np.random.default_rng(2)
    mic, music = music_like_signals(rng)
    mic[:, : 5 * F.HOP] = 0.0  # five silent mic frames
    mic[3] = 0.0  # and a dead Z channel throughout
    music[1, 7 * F.HOP :] = 0.0
    ours = F.window_features(mic, music)
    assert np.all(np.isfinite(ours))
    np.testing.assert_allclose(ours[:4, :5], -100.0, atol=1e-4)
    np.testing.assert_allclose(ours[3], -100.0, atol=1e-4)
    np.testing.assert_allclose(ours[5, 7:], -100.0, atol=1e-4)
    assert np.all(ours[6:, :5] == 0.0)
    assert np.all(ours[8] == 0.0)  # Z carries nothing, so neither does Iz

    ref = librosa_reference(mic.astype(np.float64), music.astype(np.float64), librosa_mel_filterbank())
    assert np.isnan(ref[6:, :5]).all()  # the public-code behaviour this project replaces with 0
    assert_matches_reference(ours, ref)


def test_batch_equals_single_windows():
    rng = np.random.default_rng(3)
    pairs = [music_like_signals(rng) for _ in range(3)]
    batch = F.window_features(np.stack([m for m, _ in pairs]), np.stack([s for _, s in pairs]))
    assert batch.shape == (3, 9, 12, 128)
    for b, (mic, music) in enumerate(pairs):
        np.testing.assert_allclose(batch[b], F.window_features(mic, music), rtol=1e-6, atol=1e-6)


def test_short_recordings_grouped_into_chunks_equal_single_recordings():
    # 3-frame recordings are processed four to a chunk, the fifth alone: each must come out as
    # if computed on its own.
    rng = np.random.default_rng(11)
    pairs = [music_like_signals(rng, n=3 * F.HOP) for _ in range(5)]
    batch = F.frame_features(np.stack([m for m, _ in pairs]), np.stack([s for _, s in pairs]))
    assert batch.shape == (5, 9, 3, 128)
    for b, (mic, music) in enumerate(pairs):
        single = F.frame_features(mic, music)
        np.testing.assert_allclose(batch[b], single, rtol=1e-6, atol=1e-6)
        ref = librosa_reference(mic.astype(np.float64), music.astype(np.float64), librosa_mel_filterbank())
        assert_matches_reference(single, ref)


def test_dtype_and_memory_layout_do_not_change_features():
    rng = np.random.default_rng(12)
    mic, music = music_like_signals(rng)
    expected = F.window_features(mic, music)
    # float64 and float16 take other kernel paths; strided views another memory layout.
    np.testing.assert_allclose(
        F.window_features(mic.astype(np.float64), music.astype(np.float64)), expected, atol=1e-6
    )
    wide = np.zeros((6, 2 * F.WINDOW_SAMPLES), np.float32)
    wide[:4, ::2], wide[4:, ::2] = mic, music
    np.testing.assert_array_equal(F.window_features(wide[:4, ::2], wide[4:, ::2]), expected)
    half = F.window_features(mic.astype(np.float16), music.astype(np.float16))
    ref = librosa_reference(
        mic.astype(np.float16).astype(np.float64),
        music.astype(np.float16).astype(np.float64),
        librosa_mel_filterbank(),
    )
    assert_matches_reference(half, ref)


def test_concurrent_threads_and_repeated_calls_give_identical_results():
    # Work buffers are reused per thread: neither another thread nor an earlier call with a
    # different shape may leak into a result.
    rng = np.random.default_rng(13)
    inputs = [music_like_signals(rng) for _ in range(4)]
    expected = [F.window_features(mic, music) for mic, music in inputs]
    F.frame_features(*music_like_signals(rng, n=40 * F.HOP))
    results: dict[int, list[np.ndarray]] = {}

    def work(i: int) -> None:
        results[i] = [F.window_features(*inputs[(i + j) % 4]) for j in range(8)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i in range(4):
        for j, features in enumerate(results[i]):
            np.testing.assert_array_equal(features, expected[(i + j) % 4])


def test_long_recording_frames_slice_into_windows():
    rng = np.random.default_rng(4)
    n_frames = 40
    mic, music = music_like_signals(rng, n=n_frames * F.HOP)
    frames = F.frame_features(mic, music)
    assert frames.shape == (9, n_frames, 128)
    starts = np.array([0, 5, 17, n_frames - 12])
    windows = F.windows_from_frames(frames, starts)
    assert windows.shape == (4, 9, 12, 128)
    for w, s in zip(windows, starts):
        samples = slice(s * F.HOP, s * F.HOP + F.WINDOW_SAMPLES)
        # Same maths, different chunking and BLAS blocking: equal to float32 rounding.
        expected = F.window_features(mic[:, samples], music[:, samples])
        np.testing.assert_allclose(w, expected, rtol=1e-5, atol=1e-5)


def test_plane_wave_intensity_points_along_its_direction():
    rng = np.random.default_rng(5)
    u = np.array([0.3, -0.5, 0.8])
    u /= np.linalg.norm(u)
    s = rng.standard_normal(F.WINDOW_SAMPLES)
    mic = np.stack([s, s * u[0], s * u[1], s * u[2]]).astype(np.float32)
    music = rng.standard_normal((2, F.WINDOW_SAMPLES)).astype(np.float32)
    intensity = F.window_features(mic, music)[6:]  # (3, 12, 128)
    vectors = intensity.reshape(3, -1).T
    lengths = np.linalg.norm(vectors, axis=1)
    energetic = lengths > 1e-3 * lengths.max()
    assert energetic.mean() > 0.9
    cosines = vectors[energetic] @ u / lengths[energetic]
    assert cosines.min() > 0.999


def test_network_inputs_standardise_then_difference():
    rng = np.random.default_rng(6)
    means = np.arange(9)[None, :, None, None] * 3.0
    base = rng.normal(loc=means, scale=2.0, size=(5, 9, 12, 128)).astype(np.float32)
    stats = F.FeatureStats.fit(base)
    np.testing.assert_allclose(stats.mean, base.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(stats.std, base.std(axis=(0, 2, 3)), rtol=1e-5)

    x, m = F.network_inputs(base, stats)
    assert x.shape == (5, 11, 12, 128) and m.shape == (5, 2, 12, 128)
    assert x.dtype == np.float32 and m.dtype == np.float32
    z = lambda b, c, t, f: (base[b, c, t, f] - stats.mean[c]) / stats.std[c]  # noqa: E731
    assert x[2, 1, 3, 40] == pytest.approx(z(2, 1, 3, 40) - z(2, 4, 3, 40), abs=1e-5)  # X - left
    assert x[0, 7, 11, 0] == pytest.approx(z(0, 3, 11, 0) - z(0, 5, 11, 0), abs=1e-5)  # Z - right
    assert x[4, 9, 6, 127] == pytest.approx(z(4, 7, 6, 127), abs=1e-5)  # Iy
    assert m[1, 0, 2, 64] == pytest.approx(z(1, 4, 2, 64), abs=1e-5)
    assert m[3, 1, 9, 5] == pytest.approx(z(3, 5, 9, 5), abs=1e-5)
    # Standardised music channels have zero mean and unit variance over the fitted set.
    np.testing.assert_allclose(m.mean(axis=(0, 2, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(m.std(axis=(0, 2, 3)), 1.0, atol=1e-4)


def test_feature_stats_round_trip_and_floor():
    base = np.zeros((2, 9, 12, 128), dtype=np.float32)
    base[:, 6:] = 0.5  # constant channels: std must not be 0
    stats = F.FeatureStats.fit(base)
    assert np.all(stats.std > 0)
    x, m = F.network_inputs(base, stats)
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(m))

    restored = F.FeatureStats.from_dict(stats.to_dict())
    np.testing.assert_array_equal(restored.mean, stats.mean)
    np.testing.assert_array_equal(restored.std, stats.std)
    with pytest.raises(F.FeatureError, match="channels"):
        F.FeatureStats.from_dict({**stats.to_dict(), "channels": list(reversed(F.CHANNELS))})
    with pytest.raises(F.FeatureError, match="std > 0"):
        F.FeatureStats(mean=np.zeros(9), std=np.zeros(9))


@pytest.mark.parametrize(
    ("mic_shape", "music_shape", "message"),
    [
        ((4, 28_000), (2, 28_000), "not a positive multiple of the 2400-sample frame"),
        ((3, 28_800), (2, 28_800), r"expected \(\.\.\., 4, samples\)"),
        ((4, 28_800), (4, 28_800), r"expected \(\.\.\., 2, samples\)"),
        ((4, 28_800), (2, 26_400), "same number of samples"),
        ((2, 4, 28_800), (3, 2, 28_800), "same batch dimensions"),
        ((28_800,), (2, 28_800), "channels first"),
    ],
)
def test_bad_audio_shapes_raise(mic_shape, music_shape, message):
    with pytest.raises(F.FeatureError, match=message):
        F.frame_features(np.zeros(mic_shape, np.float32), np.zeros(music_shape, np.float32))


def test_bad_window_and_frame_arguments_raise():
    with pytest.raises(F.FeatureError, match="exactly 28800 samples"):
        F.window_features(np.zeros((4, 4800)), np.zeros((2, 4800)))
    with pytest.raises(F.FeatureError, match="floating point"):
        F.frame_features(np.zeros((4, 2400), np.int16), np.zeros((2, 2400), np.int16))
    frames = np.zeros((9, 20, 128), np.float32)
    with pytest.raises(F.FeatureError, match=r"\[0, 8\]"):
        F.windows_from_frames(frames, np.array([0, 9]))
    with pytest.raises(F.FeatureError, match="integer"):
        F.windows_from_frames(frames, np.array([0.5]))
    with pytest.raises(F.FeatureError, match=r"expected \(channels, T, 128\)"):
        F.windows_from_frames(np.zeros((6, 20, 64)), np.array([0]))
    with pytest.raises(F.FeatureError, match=r"expected \(B, 9, 12, 128\)"):
        F.network_inputs(np.zeros((9, 12, 128)), F.FeatureStats(mean=np.zeros(9), std=np.ones(9)))


def test_the_live_stream_equals_whole_windows_and_computes_only_new_frames(monkeypatch):
    rng = np.random.default_rng(3)
    mic, music = music_like_signals(rng, 40 * F.HOP)
    whole = F.window_features
    calls = []
    monkeypatch.setattr(F, "window_features", lambda m, s: calls.append(1) or whole(m, s))
    stream = F.FeatureStream()
    ends = [12, 13, 15, 16, 30, 31]  # in frames: hops of 1 and 2, then a skip of 14
    for k, end in enumerate(ends):
        cut = slice((end - 12) * F.HOP, end * F.HOP)
        m, s = mic[:, cut], music[:, cut].copy()
        if k == len(ends) - 1:
            s[:, :10] += 1e-3  # the music aligned anew: the overlap differs
        got = stream.window(m, s, end * F.HOP)
        np.testing.assert_array_equal(got, whole(m, s))
    # Whole windows: the first, the one after the skip and the realigned one.
    assert len(calls) == 3
