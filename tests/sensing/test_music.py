"""Procedural music: level, stereo, band coverage, genre character, determinism, errors.

The genre measures are computed here with plain numpy on 50 ms frames (the feature frame):
spectral flux is the mean rise in dB of 12 log-spaced bands (60 Hz - 20 kHz) from one frame
to the next, over frames that are not digital silence; an onset is a local maximum of that
flux above its 0.5 s running median plus 2 dB.
"""

from __future__ import annotations

import numpy as np
import pytest

from bgm2pose.sensing.sim.music import GENRES, MusicError, TrackSpec, generate

SR = 48_000
FRAME = 2400  # 50 ms
SECONDS = 20.0
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def clips() -> dict[tuple[str, int], np.ndarray]:
    return {(g, s): generate(TrackSpec(g, s, SECONDS)) for g in GENRES for s in SEEDS}


def frame_db(audio: np.ndarray) -> np.ndarray:
    """Power of each 50 ms frame over both channels, dBFS."""
    x = audio.astype(np.float64)
    frames = x[:, : x.shape[1] // FRAME * FRAME].reshape(2, -1, FRAME)
    return 10 * np.log10(np.mean(frames**2, axis=(0, 2)) + 1e-30)


def band_db(audio: np.ndarray) -> np.ndarray:
    """(frames, 12) band power in dB of the mono mix, Hann-windowed 50 ms frames."""
    mono = audio.astype(np.float64).mean(axis=0)
    frames = mono[: mono.size // FRAME * FRAME].reshape(-1, FRAME) * np.hanning(FRAME)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(FRAME, 1 / SR)
    edges = np.geomspace(60, 20_000, 13)
    bands = [power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1)
             for lo, hi in zip(edges[:-1], edges[1:])]
    return 10 * np.log10(np.stack(bands, axis=1) + 1e-12)


def positive_flux(audio: np.ndarray) -> np.ndarray:
    """Per frame step: mean dB rise over the bands, NaN where either frame is silent."""
    rise = np.maximum(np.diff(band_db(audio), axis=0), 0).mean(axis=1)
    loud = frame_db(audio) > -60
    return np.where(loud[1:] & loud[:-1], rise, np.nan)


def onset_rate(audio: np.ndarray) -> float:
    flux = np.nan_to_num(positive_flux(audio))
    half = 5  # frames: a 0.55 s running median
    padded = np.pad(flux, half, mode="edge")
    median = np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), axis=1)
    mid = flux[1:-1]
    peaks = (mid > flux[:-2]) & (mid >= flux[2:]) & (mid > median[1:-1] + 2.0)
    return peaks.sum() / (audio.shape[1] / SR)


def silent_runs(audio: np.ndarray) -> list[int]:
    """Lengths (in 50 ms frames) of the runs of frames below -60 dBFS."""
    silent = np.concatenate([[False], frame_db(audio) < -60, [False]]).astype(int)
    edges = np.diff(silent)
    return list(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))


def test_shape_dtype_and_level(clips):
    for (genre, seed), audio in clips.items():
        assert audio.shape == (2, int(SECONDS * SR)) and audio.dtype == np.float32, (genre, seed)
        assert np.all(np.isfinite(audio)), (genre, seed)
        rms_db = 10 * np.log10(np.mean(audio.astype(np.float64) ** 2))
        peak_db = 20 * np.log10(np.max(np.abs(audio)))
        assert -21.0 < rms_db < -19.0, (genre, seed, rms_db)
        assert peak_db < -1.0, (genre, seed, peak_db)


def test_channels_differ(clips):
    for key, audio in clips.items():
        assert np.corrcoef(audio[0], audio[1])[0, 1] < 0.99, key


def test_energy_above_10_khz_in_every_second(clips):
    freqs = np.fft.rfftfreq(SR, 1 / SR)
    for key, audio in clips.items():
        seconds = audio[:, : audio.shape[1] // SR * SR].reshape(2, -1, SR).astype(np.float64)
        power = np.abs(np.fft.rfft(seconds, axis=-1)) ** 2
        total = power.sum(axis=(0, 2))
        high = power[..., freqs > 10_000].sum(axis=(0, 2))
        playing = total > 1e-6 * total.max()
        assert playing.sum() >= 0.8 * len(total), key
        assert np.all(10 * np.log10(high[playing] / total[playing]) > -60), key
        assert 10 * np.log10(high.sum() / total.sum()) > -40, key


def test_jazz_has_stop_time_gaps_and_ambient_never_falls_silent(clips):
    for seed in SEEDS:
        assert silent_runs(clips["ambient", seed]) == []
        runs = silent_runs(clips["jazz", seed])
        assert runs and max(runs) >= 9, runs  # at least one gap of >= 0.45 s of silence
        assert max(runs) <= 41, runs  # and none much longer than 2 s
        assert sum(runs) < 0.3 * len(frame_db(clips["jazz", seed])), runs


def test_jazz_is_more_eventful_than_ambient(clips):
    for seed in SEEDS:
        ambient, jazz = clips["ambient", seed], clips["jazz", seed]
        ambient_flux = np.nanmean(positive_flux(ambient))
        jazz_flux = np.nanmean(positive_flux(jazz))
        assert jazz_flux > 1.5 * ambient_flux, (seed, ambient_flux, jazz_flux)
        ambient_rate, jazz_rate = onset_rate(ambient), onset_rate(jazz)
        # A walking bass and a ride on every beat: at least ~1.5 onsets per second at 100 bpm.
        assert jazz_rate > 1.5 and ambient_rate < 0.5, (seed, ambient_rate, jazz_rate)


def test_jazz_has_phrase_dynamics(clips):
    for seed in SEEDS:
        db = frame_db(clips["jazz", seed])
        playing = db > -60
        # 2 s loudness, counting only the frames where the band plays.
        level = [np.mean(db[i : i + 40][playing[i : i + 40]]) for i in range(0, len(db) - 40, 20)
                 if playing[i : i + 40].mean() > 0.8]
        assert max(level) - min(level) > 3.0, level


def test_same_spec_is_bitwise_identical():
    for genre in GENRES:
        spec = TrackSpec(genre, 11, 4.0)
        assert generate(spec).tobytes() == generate(TrackSpec(genre, 11, 4.0)).tobytes()


def test_seeds_make_different_tracks(clips):
    for genre in GENRES:
        a, b = clips[genre, 0], clips[genre, 1]
        assert abs(np.corrcoef(a[0], b[0])[0, 1]) < 0.3, genre
        # Not only new noise: the harmony differs, so the long-term spectrum below 2 kHz does.
        spec_a, spec_b = (np.abs(np.fft.rfft(x[0].astype(np.float64))) ** 2 for x in (a, b))
        freqs = np.fft.rfftfreq(a.shape[1], 1 / SR)
        edges = 100 * 2 ** (np.arange(0, 13 * 4 + 1) / 12)  # semitone bands, 100 Hz - 2 kHz
        bands = [(freqs >= lo) & (freqs < hi) for lo, hi in zip(edges[:-1], edges[1:])]
        level_a = np.array([10 * np.log10(spec_a[m].sum()) for m in bands])
        level_b = np.array([10 * np.log10(spec_b[m].sum()) for m in bands])
        assert np.max(np.abs(level_a - level_b)) > 6.0, genre


def test_other_rates_and_tiny_durations():
    for genre in GENRES:
        audio = generate(TrackSpec(genre, 2, 3.0), sample_rate=44_100)
        assert audio.shape == (2, 132_300) and np.all(np.isfinite(audio))
        assert np.max(np.abs(audio)) < 10 ** (-1 / 20)
        for seconds in (1e-6, 0.01):
            tiny = generate(TrackSpec(genre, 2, seconds))
            assert tiny.shape == (2, max(1, round(seconds * SR))) and np.all(np.isfinite(tiny))


def test_names_round_trip():
    spec = TrackSpec("ambient", 7, 12.5)
    assert spec.name == "ambient-0007"
    assert TrackSpec.from_name("ambient-0007", 12.5) == spec
    assert TrackSpec.from_name("jazz-12345").seed == 12345


@pytest.mark.parametrize(
    "make",
    [
        lambda: TrackSpec("techno", 0, 10.0),
        lambda: TrackSpec("jazz", 0, 0.0),
        lambda: TrackSpec("jazz", 0, -3.0),
        lambda: TrackSpec("jazz", 0, float("nan")),
        lambda: TrackSpec("jazz", -1, 10.0),
        lambda: TrackSpec("jazz", 1.5, 10.0),
        lambda: TrackSpec.from_name("jazz_0003"),
        lambda: TrackSpec.from_name("polka-0003"),
        lambda: generate(TrackSpec("jazz", 0, 1.0), sample_rate=16_000),
    ],
)
def test_bad_input_raises_music_error(make):
    with pytest.raises(MusicError):
        make()
    assert issubclass(MusicError, ValueError)
