import numpy as np
import pytest

from bgm2pose.sensing.aligner import Aligner, AlignerError
from bgm2pose.sensing.ring import Mark, SampleRing

GAINS = np.array([1.0, 0.5, -0.25, 0.125])  # per mic channel, so channels are told apart


def feed(recorded: SampleRing, reference: SampleRing, latency: float, total: int,
         block: int = 480, ratio: float = 1.0) -> None:
    """Reference sample m holds the value m; the mic hears it ``latency`` samples late, so
    recorded sample n holds (n - latency) * ratio (scaled per channel): ground truth in values."""
    for start in range(reference.end, total, block):
        m = np.arange(start, min(start + block, total), dtype=np.float64)
        reference.write(np.stack([m, -m], axis=1).astype(np.float32))
        recorded.write((((m - latency) * ratio)[:, None] * GAINS).astype(np.float32))


def rings(capacity: int = 200_000) -> tuple[SampleRing, SampleRing]:
    return SampleRing(4, capacity), SampleRing(2, capacity)


@pytest.mark.parametrize("latency", [1234.0, 1234.4, 1234.6, 1234.5])
def test_windows_pair_each_mic_sample_with_the_nearest_reference_sample(latency):
    recorded, reference = rings()
    aligner = Aligner(recorded, reference, latency)
    feed(recorded, reference, latency, 100_000)
    win = aligner.next_window()
    assert win.mic.shape == (4, 28_800) and win.music.shape == (2, 28_800)
    assert win.mic.dtype == np.float32 and win.music.dtype == np.float32
    assert win.end_sample == 100_000 // 2_400 * 2_400
    assert win.capture_time == win.end_sample / 48_000
    n = np.arange(win.end_sample - 28_800, win.end_sample)
    np.testing.assert_allclose(win.mic / GAINS[:, None], np.broadcast_to(n - latency, (4, n.size)),
                               atol=0.02)
    # The paired reference sample is the one nearest to n - latency (halves round up).
    np.testing.assert_allclose(win.music[0], np.floor(n - latency + 0.5), atol=0.02)
    np.testing.assert_array_equal(win.music[1], -win.music[0])
    assert win.reference_start == win.music[0, 0]
    residual = win.mic[0].astype(np.float64) - win.music[0]
    assert np.all(np.abs(residual) <= 0.5 + 0.02)
    assert win.flags == set()


def test_latency_update_and_clock_ratio_move_the_pairing():
    recorded, reference = rings()
    ratio = 1.0005  # the reference device's clock runs 500 ppm fast
    aligner = Aligner(recorded, reference, latency=300.0, window=4_800, hop=480,
                      clock_ratio=ratio)
    feed(recorded, reference, 300.0, 60_000, ratio=ratio)
    win = aligner.next_window()
    centre = 2_400
    # At the window's centre the pairing follows (n - latency) * ratio to within half a sample.
    residual = win.mic[0].astype(np.float64) - win.music[0]
    assert abs(residual[centre]) <= 0.5 + 0.02
    # Within the window the clocks drift apart by (ratio - 1) per sample.
    assert residual[-1] - residual[0] == pytest.approx(4_799 * (ratio - 1), abs=0.02)

    aligner.set_clock_ratio(1.0)
    aligner.set_latency(4_000.0)
    feed(recorded, reference, 300.0, 61_000, ratio=ratio)
    win = aligner.next_window()
    n = np.arange(win.end_sample - 4_800, win.end_sample)
    np.testing.assert_allclose(win.music[0], n - 4_000, atol=0.02)
    with pytest.raises(AlignerError):
        aligner.set_latency(float("nan"))
    with pytest.raises(AlignerError):
        aligner.set_clock_ratio(0.0)


def test_windows_straddling_marks_are_flagged():
    recorded, reference = rings()
    aligner = Aligner(recorded, reference, latency=1_000.0, window=4_800, hop=2_400)
    feed(recorded, reference, 1_000.0, 20_000)
    # Newest window: recorded [14_400, 19_200), reference [13_400, 18_400).
    recorded.events.mark(15_000, Mark.XRUN, 100)
    reference.events.mark(12_000, Mark.TRACK_CHANGE)  # before the reference range
    reference.events.mark(13_400, Mark.TRACK_CHANGE)  # the range starts with the new track
    win = aligner.next_window()
    assert win.end_sample == 19_200 and win.reference_start == 13_400
    assert win.flags == {"xrun"}

    reference.events.mark(20_000, Mark.TRACK_CHANGE)
    feed(recorded, reference, 1_000.0, 21_600)  # recorded [16_800, 21_600): xrun is behind
    assert aligner.next_window().flags == {"track_change"}
    recorded.events.mark(23_000, Mark.XRUN, 10)
    feed(recorded, reference, 1_000.0, 24_000)
    assert aligner.next_window().flags == {"xrun", "track_change"}
    feed(recorded, reference, 1_000.0, 28_800)  # recorded [24_000, 28_800): clean again
    assert aligner.next_window().flags == set()


def test_falling_behind_skips_to_the_newest_and_counts_drops():
    recorded, reference = rings()
    aligner = Aligner(recorded, reference, latency=0.0, window=4_800, hop=480)
    feed(recorded, reference, 0.0, 4_800)
    assert aligner.next_window().end_sample == 4_800
    assert aligner.next_window() is None
    feed(recorded, reference, 0.0, 4_800 + 10 * 480 + 100)
    win = aligner.next_window()
    assert win.end_sample == 4_800 + 10 * 480
    assert aligner.dropped == 9 and aligner.emitted == 2
    np.testing.assert_allclose(win.music[0], np.arange(win.end_sample - 4_800, win.end_sample))


def test_reference_not_played_yet_waits_and_lost_reference_is_counted():
    recorded, reference = SampleRing(4, 50_000), SampleRing(2, 50_000)
    aligner = Aligner(recorded, reference, latency=200.0, window=4_800, hop=480)
    # The recorded side runs ahead of the reference (as split devices may): a window is
    # complete only once its reference samples exist too.
    m = np.arange(10_000, dtype=np.float32)
    recorded.write(np.repeat((m - 200)[:, None], 4, axis=1))
    reference.write(np.stack([m[:6_000], -m[:6_000]], axis=1))
    win = aligner.next_window()
    assert win.end_sample == 5_760  # the next grid end, 6_240, needs reference up to 6_040
    np.testing.assert_array_equal(win.mic[0], win.music[0])
    assert aligner.next_window() is None
    reference.write(np.stack([m[6_000:], -m[6_000:]], axis=1))
    assert aligner.next_window().end_sample == 9_600
    # Skipped: the grid ends 4_800 and 5_280 before the first window, 7 before the second.
    assert aligner.dropped == 2 + 7 and aligner.unavailable == 0

    # Reference from before playback started (index < 0) never exists.
    early = Aligner(SampleRing(4, 50_000), SampleRing(2, 50_000), latency=9_000.0,
                    window=4_800, hop=480)
    feed(early.recorded, early.reference, 9_000.0, 10_000)
    assert early.next_window() is None and early.unavailable == 1
    assert early.next_window() is None and early.unavailable == 1  # counted once

    # Reference already overwritten: the latency reaches further back than its ring holds.
    late = Aligner(SampleRing(4, 50_000), SampleRing(2, 6_000), latency=3_000.0,
                   window=4_800, hop=480)
    feed(late.recorded, late.reference, 3_000.0, 20_000)
    assert late.next_window() is None and late.unavailable == 1


def test_bad_settings_are_refused():
    recorded, reference = rings(10_000)
    with pytest.raises(AlignerError, match="rings"):
        Aligner(recorded, reference, latency=0.0)
    with pytest.raises(AlignerError, match="positive"):
        Aligner(recorded, reference, latency=0.0, window=4_800, hop=0)
