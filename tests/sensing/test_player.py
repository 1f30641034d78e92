import time
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import soxr

from bgm2pose.sensing.audiofile import AudioFileError
from bgm2pose.sensing.player import Player, PlayerError, Repeat, Track
from bgm2pose.sensing.ring import Event, Mark

RNG = np.random.default_rng(7)


def noise(frames: int) -> np.ndarray:
    return RNG.standard_normal((2, frames)).astype(np.float32)


def play(player: Player, calls: int, frames: int, pump: bool = True) -> np.ndarray:
    """Run the audio callback ``calls`` times; returns everything it output, (N, 2)."""
    out = np.empty((calls * frames, 2), np.float32)
    for i in range(calls):
        if pump:
            player.pump()
        player.callback_fill(out[i * frames:(i + 1) * frames])
    return out


def track_changes(player: Player) -> list[int]:
    events = player.reference.events.marks_between(-1, player.reference.end + 1)
    return [e.index for e in events if e.kind is Mark.TRACK_CHANGE]


def buffered_callback(player: Player, frames: int) -> np.ndarray:
    """One callback of ``frames``, made once the decoder has that much queued (or after 5 s),
    as a device's callback would find it."""
    deadline = time.monotonic() + 5
    while player.status().buffered_s * 48_000 < frames and time.monotonic() < deadline:
        time.sleep(0.001)
    out = np.empty((frames, 2), np.float32)
    player.callback_fill(out)
    return out

def test_threaded_playback_is_gapless_and_the_reference_is_what_was_played():
    tracks = [noise(10_007), noise(3_001), noise(25_013)]
    total = sum(t.shape[1] for t in tracks)
    player = Player(tracks, block_frames=1_000, fifo_frames=4_096, ring_capacity=60_000)
    frames, outs = 512, []
    with player:
        while len(outs) * frames < total + 2 * frames:
            # Play in "real time": give the decoder until the FIFO holds a callback's worth,
            # or all that is left of the playlist for the last one.
            deadline = time.monotonic() + 5
            wanted = min(frames, total - len(outs) * frames)
            while wanted > 0 and time.monotonic() < deadline \
                    and player.status().buffered_s * 48_000 < wanted:
                time.sleep(0.001)
            out = np.empty((frames, 2), np.float32)
            player.callback_fill(out)
            outs.append(out)
    played = np.concatenate(outs)
    np.testing.assert_array_equal(played[:total], np.concatenate(tracks, axis=1).T)
    np.testing.assert_array_equal(played[total:], 0)
    np.testing.assert_array_equal(player.reference.read(0, len(played)), played.T)
    assert track_changes(player) == [0, 10_007, 13_008, total]  # the last: end of playlist
    status = player.status()
    assert status.underflows == 0 and status.finished and status.track is None
    assert status.error is None


def test_broken_tracks_are_skipped_with_their_reason(tmp_path):
    good = [noise(3_000), noise(2_000)]
    mono_wav = tmp_path / "tone.wav"
    tone = np.sin(np.arange(4_410) * 0.05).astype(np.float32)
    sf.write(mono_wav, tone, 44_100)  # decoded, made stereo and resampled by read_music
    tracks = [Track("first", lambda: good[0]),
              Track.from_file(tmp_path / "missing.flac"),
              Track("wrong shape", lambda: np.zeros((3, 100), np.float32)),
              Track("second", lambda: good[1]),
              Track.from_file(mono_wav)]
    player = Player(tracks, block_frames=500, fifo_frames=2_000)
    played = play(player, 40, 256)
    status = player.status()
    assert [(s.index, s.name) for s in status.skipped] == [(1, "missing.flac"),
                                                          (2, "wrong shape")]
    assert "does not exist" in status.skipped[0].reason
    assert "(3, 100)" in status.skipped[1].reason
    np.testing.assert_array_equal(played[:5_000], np.concatenate(good, axis=1).T)
    assert track_changes(player)[:3] == [0, 3_000, 5_000]
    resampled = track_changes(player)[3] - 5_000
    assert resampled == 4_800  # 0.1 s at 44.1 kHz is 4 800 samples at 48 kHz
    np.testing.assert_array_equal(played[5_000:9_800, 0], played[5_000:9_800, 1])
    assert status.underflows == 0 and status.finished


def test_a_track_that_fails_part_way_ends_there_and_is_not_tried_again():
    first, second = noise(3_000), noise(1_500)

    def damaged():
        yield first[:, :1_000]
        yield first[:, 1_000:2_000]
        raise AudioFileError("music file d.flac could not be decoded past its header")

    player = Player([Track("damaged", damaged), Track("fine", lambda: second)],
                    block_frames=500, fifo_frames=2_000, repeat=Repeat.ALL)
    played = play(player, 20, 250)
    # Its first 2 000 samples, then the next track, then (repeat all) that one again.
    np.testing.assert_array_equal(played[:2_000], first[:, :2_000].T)
    np.testing.assert_array_equal(played[2_000:3_500], second.T)
    np.testing.assert_array_equal(played[3_500:5_000], second.T)
    assert track_changes(player)[:3] == [0, 2_000, 3_500]
    skipped = player.status().skipped
    assert [(s.index, s.name) for s in skipped] == [(0, "damaged")]
    assert "past its header" in skipped[0].reason


def test_pause_plays_silence_and_keeps_indices_moving():
    track = noise(20_000)
    player = Player([track], block_frames=1_000, fifo_frames=4_000)
    first = play(player, 5, 300)
    player.pause()
    paused = play(player, 4, 300)
    assert player.reference.end == 9 * 300
    assert player.status().paused and player.status().position_s == 1_500 / 48_000
    player.resume()
    resumed = play(player, 5, 300)
    np.testing.assert_array_equal(paused, 0)
    np.testing.assert_array_equal(np.concatenate([first, resumed]), track[:, :3_000].T)
    np.testing.assert_array_equal(player.reference.read(1_500, 1_200), 0)
    assert player.reference.events.marks_between(1_400, 3_000) == [
        Event(1_500, Mark.PAUSE, 1_200)]  # one event for the whole pause
    assert player.status().underflows == 0


def test_an_empty_fifo_underflows_and_playback_resumes_without_losing_samples():
    track = noise(10_000)
    player = Player([track], block_frames=1_000, fifo_frames=3_000)
    player.pump()  # decode-ahead stops one block short of full: 2 000 frames queued
    starved = play(player, 3, 800, pump=False)
    assert player.status().underflows == 1
    np.testing.assert_array_equal(starved[:2_000], track[:, :2_000].T)
    np.testing.assert_array_equal(starved[2_000:], 0)
    assert [e for e in player.reference.events.marks_between(0, 2_400)
            if e.kind is Mark.UNDERFLOW] == [Event(2_000, Mark.UNDERFLOW, 400)]
    later = play(player, 4, 800)
    np.testing.assert_array_equal(later, track[:, 2_000:5_200].T)


def test_next_previous_select_and_repeat():
    tracks = [noise(6_000), noise(5_000), noise(4_000)]
    player = Player(tracks, block_frames=500, fifo_frames=2_000)
    a = play(player, 2, 700)  # 1 400 frames of track 0
    player.next()
    b = play(player, 2, 700)  # switches at the next callback, without a gap
    np.testing.assert_array_equal(a, tracks[0][:, :1_400].T)
    np.testing.assert_array_equal(b, tracks[1][:, :1_400].T)
    assert track_changes(player) == [0, 1_400]
    assert player.status().track == 1 and player.status().position_s == 1_400 / 48_000

    player.previous()
    np.testing.assert_array_equal(play(player, 1, 700), tracks[0][:, :700].T)
    player.select(2)
    np.testing.assert_array_equal(play(player, 1, 700), tracks[2][:, :700].T)
    assert player.status().track_name == "track 3"
    with pytest.raises(PlayerError, match="choose 0 to 2"):
        player.select(3)

    player.set_repeat(Repeat.ONE)  # track 2 again after its end
    again = play(player, 10, 700)
    np.testing.assert_array_equal(again[:3_300], tracks[2][:, 700:].T)
    np.testing.assert_array_equal(again[3_300:7_000], tracks[2][:, :3_700].T)

    player.set_repeat(Repeat.ALL)
    player.next()  # from the last track: wraps to the first
    np.testing.assert_array_equal(play(player, 1, 700), tracks[0][:, :700].T)
    player.previous()  # from the first: wraps to the last
    np.testing.assert_array_equal(play(player, 1, 700), tracks[2][:, :700].T)

    player.set_repeat(Repeat.OFF)
    player.next()  # from the last track with repeat off: the playlist ends
    np.testing.assert_array_equal(play(player, 2, 700), 0)
    assert player.status().finished and player.status().underflows == 0
    player.previous()  # and can be started again from the end
    np.testing.assert_array_equal(play(player, 1, 700), tracks[2][:, :700].T)


def test_skip_with_the_decoder_thread_switches_without_a_gap():
    tracks = [noise(48_000), noise(48_000)]
    player = Player(tracks, block_frames=1_000, fifo_frames=8_000)
    frames, outs = 256, []
    with player:
        for i in range(400):
            if i == 10:
                player.next()
            outs.append(buffered_callback(player, frames))
            if player.status().track == 1 and len(outs) > 20:
                break
    played = np.concatenate(outs)
    switch = track_changes(player)[1]  # wherever the decoder's reaction put it
    assert switch >= 10 * frames and switch % frames == 0  # flushes act at a callback start
    np.testing.assert_array_equal(played[:switch], tracks[0][:, :switch].T)
    np.testing.assert_array_equal(played[switch:], tracks[1][:, :len(played) - switch].T)
    assert player.status().underflows == 0


def test_two_quick_skips_move_two_tracks():
    tracks = [noise(3_000) for _ in range(4)]
    player = Player(tracks, block_frames=500, fifo_frames=2_000)
    play(player, 1, 500)
    player.next()
    player.next()
    np.testing.assert_array_equal(play(player, 1, 500), tracks[2][:, :500].T)


def test_callback_fill_allocates_nothing_per_call():
    tracks = [noise(150_000), noise(150_000)]  # the FIFO crosses a track change meanwhile
    player = Player(tracks, block_frames=4_800, fifo_frames=300_000, ring_capacity=96_000)
    player.pump()
    out = np.empty((256, 2), np.float32)  # 2 KiB: a temporary copy of it shows in the peak
    for _ in range(20):
        player.callback_fill(out)
    player.pause()
    player.callback_fill(out)
    player.resume()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for i in range(1_000):
            if i == 500:
                player.pause()
            if i == 520:
                player.resume()
            player.callback_fill(out)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert player.status().track == 1 and player.status().underflows == 0
    assert after - before < 1024
    assert peak - before < 2048


def test_a_long_music_file_streams_in_blocks_and_plays_as_resampled_whole(tmp_path):
    # Three minutes of 44.1 kHz stereo: 69 MB once decoded whole at 48 kHz as float32.
    path = tmp_path / "long.flac"
    second = np.arange(44_100) / 44_100
    with sf.SoundFile(path, "w", 44_100, 2, subtype="PCM_16") as f:
        for k in range(180):
            f.write(0.3 * np.stack([np.sin(2 * np.pi * (220 + k) * second),
                                    np.sin(2 * np.pi * (330 + k) * second)], axis=1))
    player = Player([Track.from_file(path)], block_frames=4_800, fifo_frames=96_000)
    played = np.empty((20 * 48_000, 2), np.float32)  # the first 20 s
    tracemalloc.start()
    try:
        for block in np.split(played, 200):
            player.pump()
            player.callback_fill(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    status = player.status()
    assert status.track == 0 and status.underflows == 0 and not status.skipped
    # Decoding holds a block or two beside the FIFO (made with the player); the whole file
    # decoded at once peaked at 130 MB here.
    assert peak < 2_000_000
    head = sf.read(path, frames=16 * 44_100, dtype="float32")[0]
    expected = soxr.resample(head, 44_100, 48_000, quality="HQ")[:15 * 48_000]
    np.testing.assert_allclose(played[:15 * 48_000], expected, rtol=0, atol=1e-6)


def test_bad_settings_are_refused():
    with pytest.raises(PlayerError, match="empty"):
        Player([])
    with pytest.raises(PlayerError, match="two decoder blocks"):
        Player([noise(10)], block_frames=1_000, fifo_frames=1_500)


def test_replacing_the_tracks_keeps_the_current_one_and_follows_the_new_order():
    tracks = [noise(6_000), noise(5_000), noise(4_000), noise(3_000)]
    listed = [Track(f"t{i}", lambda t=t: t) for i, t in enumerate(tracks)]
    # The FIFO takes the whole playlist: tracks 1..3 are queued behind track 0 and get cut.
    player = Player(listed, block_frames=500, fifo_frames=20_000)
    first = play(player, 2, 500)
    player.set_tracks([listed[0], listed[2], listed[1]])  # 2 before 1, 3 removed
    assert player.tracks == (listed[0], listed[2], listed[1])
    rest = play(player, 30, 500)
    played = np.concatenate([first, rest])
    expected = np.concatenate([tracks[0], tracks[2], tracks[1]], axis=1).T
    np.testing.assert_array_equal(played[:15_000], expected)
    np.testing.assert_array_equal(played[15_000:], 0)
    assert track_changes(player) == [0, 6_000, 10_000, 15_000]
    status = player.status()
    assert status.underflows == 0 and status.finished

    # Moving the playing track moves its index; next then follows the new order.
    player = Player(listed, block_frames=500, fifo_frames=20_000)
    play(player, 2, 500)
    player.set_tracks([listed[1], listed[3], listed[0], listed[2]])
    np.testing.assert_array_equal(play(player, 1, 500), tracks[0][:, 1_000:1_500].T)
    assert player.status().track == 2 and player.status().track_name == "t0"
    player.next()
    np.testing.assert_array_equal(play(player, 1, 500), tracks[2][:, :500].T)
    assert player.status().track == 3


def test_a_removed_playing_track_plays_to_its_end_then_its_successor():
    tracks = [noise(4_000), noise(3_000), noise(2_000)]
    listed = [Track(f"t{i}", lambda t=t: t) for i, t in enumerate(tracks)]
    player = Player(listed, block_frames=500, fifo_frames=2_000)  # only 0 is queued yet
    first = play(player, 2, 500)
    player.set_tracks([listed[2], listed[1]])
    middle = play(player, 1, 500)
    status = player.status()
    assert status.track is None and status.track_name == "t0" and not status.finished
    rest = play(player, 16, 500)
    played = np.concatenate([first, middle, rest])
    # t0 was followed by t1, which is now last: after it the playlist ends (repeat off).
    np.testing.assert_array_equal(played[:7_000], np.concatenate(tracks[:2], axis=1).T)
    np.testing.assert_array_equal(played[7_000:], 0)
    assert track_changes(player) == [0, 4_000, 7_000]
    assert player.status().underflows == 0
    with pytest.raises(PlayerError, match="keep at least one track"):
        player.set_tracks([])


def test_replacing_the_tracks_with_the_decoder_thread_is_gapless():
    tracks = [noise(30_000) for _ in range(3)]
    listed = [Track(f"t{i}", lambda t=t: t) for i, t in enumerate(tracks)]
    # A FIFO longer than a track: the decoder has queued part of track 1 before the change.
    player = Player(listed, block_frames=1_000, fifo_frames=48_000)
    frames, outs = 256, []
    with player:
        for i in range(1_000):
            if i == 10:
                assert player.status().buffered_s * 48_000 > 30_000 - 10 * frames
                player.set_tracks([listed[0], listed[2]])
            # Callbacks at about the real rate, as a device makes them: the decoder needs a
            # few of them (not a few microseconds) to make the cut before track 0 ends.
            time.sleep(frames / 48_000)
            outs.append(buffered_callback(player, frames))
            if player.status().finished:
                break
    played = np.concatenate(outs)
    np.testing.assert_array_equal(played[:60_000], np.concatenate([tracks[0], tracks[2]],
                                                                   axis=1).T)
    np.testing.assert_array_equal(played[60_000:], 0)
    assert track_changes(player) == [0, 30_000, 60_000]
    assert player.status().underflows == 0 and player.status().error is None
