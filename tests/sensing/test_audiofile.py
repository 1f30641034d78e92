import numpy as np
import pytest
import soundfile as sf

from bgm2pose.sensing.audiofile import SAMPLE_RATE, AudioFileError, check_music, read_music
from bgm2pose.sensing.errors import UserError

AMPLITUDE = 0.5


def _tones(freqs, sr, seconds=1.5):
    t = np.arange(int(round(seconds * sr))) / sr
    return np.stack([AMPLITUDE * np.sin(2 * np.pi * f * t) for f in freqs], axis=1)


def _peak_hz(x):
    """Frequency of the strongest FFT bin of a 1 s stretch from the middle (1 Hz bins)."""
    mid = len(x) // 2
    seg = x[mid - SAMPLE_RATE // 2 : mid + SAMPLE_RATE // 2] * np.hanning(SAMPLE_RATE)
    return float(np.argmax(np.abs(np.fft.rfft(seg))))


def _level_db(x):
    """RMS of the middle, away from the resampler's edge transients, re the written tone."""
    mid = x[len(x) // 4 : 3 * len(x) // 4]
    return 20 * np.log10(np.sqrt(np.mean(mid.astype(np.float64) ** 2)) / (AMPLITUDE / np.sqrt(2)))


def _band_level(x, hz):
    mid = len(x) // 2
    seg = x[mid - SAMPLE_RATE // 2 : mid + SAMPLE_RATE // 2] * np.hanning(SAMPLE_RATE)
    return float(np.abs(np.fft.rfft(seg))[int(hz)])


# (file name, write kwargs, sample rate, channels)
CASES = [
    ("mono44k.wav", {"subtype": "PCM_24"}, 44_100, 1),
    ("stereo48k.flac", {"subtype": "PCM_24"}, 48_000, 2),
    ("tone22k.ogg", {"format": "OGG", "subtype": "VORBIS"}, 22_050, 2),
]


@pytest.mark.parametrize(("name", "kwargs", "sr", "channels"), CASES)
def test_read_music_resamples_to_48k_stereo(tmp_path, name, kwargs, sr, channels):
    path = tmp_path / name
    data = _tones([1000] * channels, sr)
    sf.write(path, data, sr, **kwargs)

    info = check_music(path)
    assert (info.sample_rate, info.channels, info.frames) == (sr, channels, len(data))
    assert info.duration_s == pytest.approx(len(data) / sr)

    out = read_music(path)
    assert out.dtype == np.float32 and out.shape[0] == 2 and out.flags.c_contiguous
    assert abs(out.shape[1] - len(data) * SAMPLE_RATE / sr) <= 4
    for ch in out:
        assert _peak_hz(ch) == pytest.approx(1000, abs=1)
        assert abs(_level_db(ch)) < 0.1
    if channels == 1:
        assert np.array_equal(out[0], out[1])


def test_the_start_of_a_file_is_the_start_of_the_whole(tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(path, _tones([440, 660], 44_100, seconds=3.0), 44_100)
    np.testing.assert_array_equal(read_music(path, 1.25), read_music(path)[:, :60_000])


def test_six_channel_wav_keeps_front_left_and_right(tmp_path):
    path = tmp_path / "surround.wav"
    freqs = [1000, 2000, 3000, 4000, 5000, 6000]
    sf.write(path, _tones(freqs, 48_000), 48_000, subtype="FLOAT")
    left, right = read_music(path)
    assert _peak_hz(left) == 1000 and _peak_hz(right) == 2000
    # Dropped, not mixed in: nothing of the centre channel's 3 kHz is left.
    assert _band_level(left, 3000) < 1e-4 * _band_level(left, 1000)
    # 48 kHz float input passes through untouched.
    np.testing.assert_array_equal(left, _tones(freqs, 48_000)[:, 0].astype(np.float32))


def test_mp3_when_libsndfile_supports_it(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3 support")
    path = tmp_path / "song.mp3"
    data = _tones([1000, 1000], 44_100, seconds=2.0)
    try:
        sf.write(path, data, 44_100, format="MP3", subtype="MPEG_LAYER_III")
    except sf.SoundFileError:
        pytest.skip("this libsndfile decodes MP3 but cannot write it")
    assert check_music(path).format == "MP3"
    out = read_music(path)
    # MP3 frames are 1152 samples; allow one frame of encoder padding either way.
    assert abs(out.shape[1] - 2.0 * SAMPLE_RATE) <= 1152 * SAMPLE_RATE / 44_100
    for ch in out:
        assert _peak_hz(ch) == pytest.approx(1000, abs=1)
        assert abs(_level_db(ch)) < 0.1


def test_missing_file(tmp_path):
    path = tmp_path / "nothing.wav"
    with pytest.raises(AudioFileError, match="nothing.wav.*does not exist"):
        read_music(path)
    with pytest.raises(UserError, match="nothing.wav"):
        check_music(path)


def test_text_file_named_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    with pytest.raises(AudioFileError, match="notes.wav.*could not be decoded"):
        read_music(path)


@pytest.mark.parametrize("make", ["zero_bytes", "zero_frames"])
def test_empty_file(tmp_path, make):
    path = tmp_path / "empty.flac"
    if make == "zero_bytes":
        path.touch()
    else:
        sf.write(path, np.zeros((0, 2)), 48_000)
    with pytest.raises(AudioFileError, match="empty.flac.*(empty|no audio)"):
        read_music(path)


def test_unsupported_format(tmp_path):
    path = tmp_path / "track.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    with pytest.raises(AudioFileError, match="track.m4a.*format.*convert it to one of .*flac"):
        check_music(path)
