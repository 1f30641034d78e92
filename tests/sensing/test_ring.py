import threading
import time
import tracemalloc

import numpy as np
import pytest

from bgm2pose.sensing.ring import Event, EventLog, Mark, RingError, SampleRing


def counter_block(start: int, frames: int, channels: int) -> np.ndarray:
    """(frames, channels) block whose channel c holds sample index * (c + 1)."""
    idx = np.arange(start, start + frames, dtype=np.float64)[:, None]
    return (idx * np.arange(1, channels + 1)).astype(np.float32)


def test_write_read_across_the_wrap_around():
    ring = SampleRing(3, 100)
    written = 0
    for frames in (37, 41, 29, 53, 11, 64):  # 235 samples: wraps twice, blocks straddle it
        ring.write(counter_block(written, frames, 3))
        written += frames
    assert ring.end == 235 and ring.oldest == 135
    got = ring.read(140, 90)
    assert got.shape == (3, 90) and got.dtype == np.float32
    np.testing.assert_array_equal(got, counter_block(140, 90, 3).T)
    out = np.full((3, 100), -1, np.float32)
    assert ring.read(135, 100, out) is out
    np.testing.assert_array_equal(out, counter_block(135, 100, 3).T)


def test_reading_overwritten_or_unwritten_samples_raises():
    ring = SampleRing(2, 50)
    ring.write(counter_block(0, 40, 2))
    ring.write(counter_block(40, 30, 2))
    with pytest.raises(RingError, match="oldest"):
        ring.read(19, 10)
    with pytest.raises(RingError, match="written"):
        ring.read(60, 11)
    with pytest.raises(RingError):
        ring.read(-5, 10)
    np.testing.assert_array_equal(ring.read(20, 50), counter_block(20, 50, 2).T)


def test_bad_blocks_are_refused():
    ring = SampleRing(2, 16)
    with pytest.raises(RingError, match="frames, 2"):
        ring.write(np.zeros((2, 8), np.float32))  # channels first by mistake
    with pytest.raises(RingError, match="larger"):
        ring.write(np.zeros((17, 2), np.float32))


def test_write_silence_keeps_indices_and_marks_the_gap():
    ring = SampleRing(1, 64)
    ring.write(counter_block(0, 10, 1) + 1)
    ring.write_silence(5)
    ring.write(counter_block(15, 10, 1) + 1)
    got = ring.read(0, 25)[0]
    np.testing.assert_array_equal(got[10:15], 0)
    np.testing.assert_array_equal(got[15:], np.arange(15, 25) + 1)
    assert ring.events.marks_between(0, 25) == [Event(10, Mark.XRUN, 5)]
    assert ring.events.marks_between(15, 25) == []  # the gap ends where this range starts
    ring.write_silence(200)  # longer than the ring
    assert ring.end == 225
    np.testing.assert_array_equal(ring.read(161, 64), 0)


def test_event_log_ranges_merging_and_overwrite():
    log = EventLog(capacity=4)
    log.mark(100, Mark.TRACK_CHANGE)
    assert log.marks_between(100, 200) == []  # a window starting at a new track is clean
    assert log.marks_between(99, 200) == [Event(100, Mark.TRACK_CHANGE, 0)]
    log.mark(300, Mark.PAUSE, 10)
    log.mark(310, Mark.PAUSE, 10)  # continues the pause: one event
    log.mark(400, Mark.PAUSE, 10)  # a new pause
    assert log.marks_between(315, 316) == [Event(300, Mark.PAUSE, 20)]
    assert [e.index for e in log.marks_between(0, 1000)] == [100, 300, 400]
    for index in (500, 600, 700):
        log.mark(index, Mark.XRUN, 1)
    # 6 events in 4 slots, the newest slot counted as possibly in flight: 3 remain.
    assert [e.index for e in log.marks_between(0, 1000)] == [500, 600, 700]


def test_concurrent_writer_and_reader_never_see_torn_data():
    """A writer thread streams a counter; every read either matches it exactly or raises."""
    modulus = 1 << 20  # float32 holds these integers exactly
    ring = SampleRing(2, 4096)
    stop = threading.Event()

    def writer():
        # Bursts of unpaced writes (more than the ring holds) race the reads; short pauses
        # between bursts let reads complete, so the test sees many of both on a loaded machine.
        block = np.empty((97, 2), np.float32)
        written = 0
        while not stop.is_set():
            idx = np.arange(written, written + len(block)) % modulus
            block[:, 0] = idx
            block[:, 1] = -idx
            ring.write(block)
            written += len(block)
            if written % (97 * 64) == 0:
                time.sleep(0.001)

    thread = threading.Thread(target=writer)
    thread.start()
    rng = np.random.default_rng(0)
    good = refused = 0
    try:
        deadline = threading.Event()
        timer = threading.Timer(1.0, deadline.set)
        timer.start()
        while not deadline.is_set():
            end = ring.end
            n = int(rng.integers(1, 2048))
            # Half the reads aim at the oldest edge, where the writer overwrites what is being
            # read; half at the middle, where they should succeed.
            edge = end - ring.capacity + int(rng.integers(0, 200))
            start = max(0, edge if rng.random() < 0.5 else end - ring.capacity // 2)
            try:
                got = ring.read(start, n)
            except RingError:
                refused += 1
                continue
            expected = np.arange(start, start + n) % modulus
            np.testing.assert_array_equal(got[0], expected)
            np.testing.assert_array_equal(got[1], -expected)
            good += 1
    finally:
        stop.set()
        thread.join()
    print(f"reads: {good} checked, {refused} refused; {ring.end} samples written")
    assert good > 100 and ring.end > 2 * ring.capacity


def test_write_allocates_nothing_per_call():
    ring = SampleRing(4, 48_000)
    block = np.ones((1024, 4), np.float32)  # 16 KiB: a temporary copy would show in the peak
    for _ in range(50):
        ring.write(block)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(1000):
            ring.write(block)
            ring.write_silence(7)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 1024
    assert peak - before < 4096
