"""Channel features: the transfer-function estimate, its background, silence, streaming."""

import numpy as np
import pytest
import scipy.fft
import scipy.signal

from bgm2pose.sensing.channel import (
    CHANNELS, FAR_FLOOR_DB, PAIRS, ChannelError, ChannelSettings, ChannelStream, ChannelTracker, channel_frames,
)
from bgm2pose.sensing.features import HOP, SAMPLE_RATE

NEAR = slice(0, len(PAIRS))
FAR = slice(len(PAIRS), 2 * len(PAIRS))
VALID = CHANNELS.index("valid")


def _music(seconds: float, seed: int = 0) -> np.ndarray:
    """Stereo noise whose channels correlate (0.7), as most music's do."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    left = rng.standard_normal(n)
    return 0.1 * np.stack([left, 0.7 * left + 0.7 * rng.standard_normal(n)])


def _firs(seed: int, delay: int = 5, spread: int = 60) -> np.ndarray:
    """(4 mics, 2 speakers, taps): a direct tap each and a short decaying tail."""
    rng = np.random.default_rng(seed)
    firs = np.zeros((4, 2, delay + spread + 60))
    for c in range(4):
        for s in range(2):
            d = delay + rng.integers(0, spread)
            firs[c, s, d] = rng.uniform(0.3, 1.0) * rng.choice([-1, 1])
            firs[c, s, d + 5 : d + 50] = 0.05 * rng.standard_normal(45) * np.exp(-np.arange(45) / 10)
    return firs


def _room(firs: np.ndarray, music: np.ndarray) -> np.ndarray:
    return np.stack([sum(scipy.signal.lfilter(firs[c, s], [1.0], music[s]) for s in range(2))
                     for c in range(4)])


def _response(firs: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """(bins, 4, 2) frequency response of the FIRs."""
    phase = np.exp(-2j * np.pi * np.outer(freqs, np.arange(firs.shape[-1])) / SAMPLE_RATE)
    return np.einsum("ft,cst->fcs", phase, firs)


def test_the_estimate_recovers_a_known_two_by_four_filter_from_correlated_inputs():
    music = _music(8.0)
    firs = _firs(1)
    tracker = ChannelTracker(ChannelSettings(short_s=20.0))
    transfer = tracker.push(_room(firs, music), music).transfer
    freqs = scipy.fft.rfftfreq(4096, 1 / SAMPLE_RATE)[(scipy.fft.rfftfreq(4096, 1 / SAMPLE_RATE) >= 300)
                                                      & (scipy.fft.rfftfreq(4096, 1 / SAMPLE_RATE) <= 18_000)]
    truth = _response(firs, freqs)
    error = np.sum(np.abs(transfer - truth) ** 2) / np.sum(np.abs(truth) ** 2)
    assert 10 * np.log10(error) < -40


def test_a_stream_pushed_hop_by_hop_gives_the_frames_of_one_push():
    music = _music(4.0, seed=2)
    mic = _room(_firs(3), music)
    settings = ChannelSettings(settle_s=1.0)
    whole = channel_frames(mic, music, settings)
    tracker = ChannelTracker(settings)
    hops = np.concatenate([tracker.push(mic[:, i : i + HOP], music[:, i : i + HOP]).features
                           for i in range(0, mic.shape[1], HOP)], axis=1)
    assert whole.shape == (len(CHANNELS), mic.shape[1] // HOP, 128)
    assert whole[VALID, -1, 0] == 1.0  # settled after a second
    np.testing.assert_allclose(hops, whole, atol=1e-5)


def test_the_live_stream_of_overlapping_windows_gives_the_recordings_frames():
    music = _music(6.0, seed=11)
    mic = _room(_firs(12), music)
    whole = channel_frames(mic, music)
    stream = ChannelStream()
    window = 12 * HOP
    # Windows every hop, one of them skipped (an xrun): the next window catches up.
    ends = [e for e in range(window, mic.shape[1] + 1, HOP) if e != window + 20 * HOP]
    for end in ends:
        got = stream.window(mic[:, end - window : end], music[:, end - window : end], end)
        assert got.shape == (len(CHANNELS), 12, 128)
        if end > window:
            np.testing.assert_allclose(got, whole[:, end // HOP - 12 : end // HOP], atol=1e-5)


def test_the_background_settles_on_the_room_and_follows_a_changed_one():
    settings = ChannelSettings(background_s=2.0, settle_s=1.0)
    tracker = ChannelTracker(settings)
    a, b = _firs(4), _firs(5)
    music = _music(16.0, seed=6)
    half = music.shape[1] // 2
    first = tracker.push(_room(a, music[:, :half]), music[:, :half]).features
    # Unchanged room: after settling, the difference from the background is small.
    settled = np.mean(first[NEAR, 40:] ** 2)
    # The room changes (a piece of furniture moved): the difference jumps, then fades as
    # the background learns the new room (time constant 2 s, 6 s later about e^-3 of it).
    second = tracker.push(_room(b, music[:, half:]), music[:, half:]).features
    jump = np.mean(second[NEAR, 8:14] ** 2)
    late = np.mean(second[NEAR, -20:] ** 2)
    assert jump > 100 * settled
    assert late < jump / 30
    assert np.all(second[VALID] == 1.0)


def test_silent_music_is_flagged_and_neutral_and_leaves_the_background_alone():
    settings = ChannelSettings(settle_s=1.0)
    music = _music(8.0, seed=7)
    gap = slice(4 * SAMPLE_RATE, 6 * SAMPLE_RATE)
    music[:, gap] = 0.0
    mic = _room(_firs(8), music)
    frames = channel_frames(mic, music, settings)
    t = np.arange(frames.shape[1]) * HOP / SAMPLE_RATE
    # Frames whose 0.3 s of cross-spectra lie wholly in the gap.
    silent = (t >= 4.6) & (t + HOP / SAMPLE_RATE <= 6.0)
    assert silent.sum() >= 20
    assert np.all(frames[VALID, silent] == 0.0)
    assert np.all(frames[NEAR][:, silent] == 0.0)
    assert np.all(frames[FAR][:, silent] == FAR_FLOOR_DB)
    # After the gap the same room reads as the same room: the background was not disturbed.
    before, after = frames[FAR][:, (t > 3.0) & (t < 4.0)], frames[FAR][:, t > 7.0]
    assert np.all(frames[VALID, t > 7.0] == 1.0)
    assert abs(after.mean() - before.mean()) < 3.0


def _piano(seconds: float, seed: int = 0) -> np.ndarray:
    """Stereo notes of 11 harmonics every 0.5 s, decaying: a sparse, changing spectrum."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    out = np.zeros((2, len(t)))
    for start in np.arange(0, seconds, 0.5):
        f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
        envelope = np.where(t >= start, np.exp(-(t - start) / 0.8), 0)
        note = sum(rng.uniform(0.2, 1) / h * np.sin(2 * np.pi * f0 * h * t) for h in range(1, 12))
        pan = rng.uniform(0.2, 0.8)
        out += 0.05 * np.array([[pan], [1 - pan]]) * envelope * note
    return out


def test_a_still_room_reads_as_still_under_a_solo_piano():
    # Bins between a piano's harmonics are barely excited; their estimate is a guess, which
    # must not read as the room changing.
    music = _piano(8.0)
    frames = channel_frames(_room(_firs(2), music), music, ChannelSettings(settle_s=1.0))
    valid = frames[VALID, :, 0] == 1.0
    assert valid.mean() > 0.8
    assert np.sqrt(np.mean(frames[NEAR][:, valid] ** 2)) < 0.015  # 0.031 unweighted


def test_the_features_do_not_depend_on_the_playback_level():
    music = _music(4.0, seed=9)
    mic = _room(_firs(10), music)
    settings = ChannelSettings(settle_s=1.0)
    loud, quiet = channel_frames(mic, music, settings), channel_frames(0.01 * mic, music, settings)
    np.testing.assert_allclose(quiet, loud, atol=1e-3)


def test_audio_that_is_not_whole_aligned_frames_is_refused_with_a_sentence():
    tracker = ChannelTracker()
    with pytest.raises(ChannelError, match="multiple"):
        tracker.push(np.zeros((4, 1000)), np.zeros((2, 1000)))
    with pytest.raises(ChannelError, match="channels first"):
        tracker.push(np.zeros((1000, 4)), np.zeros((2, 1000)))
    with pytest.raises(ChannelError, match="resample"):
        ChannelTracker(sample_rate=44_100)
