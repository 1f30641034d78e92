"""Sample-indexed ring buffers shared between an audio callback (writer) and a worker (readers).

Every sample ever written has an absolute index: the int64 count of samples written before it
(the first sample of the stream is index 0). Readers ask for index ranges, so a recorded ring and
a reference ring can be paired by index arithmetic alone (see ``aligner``).

Layouts: ``SampleRing.write`` takes blocks channels-last ``(frames, channels)``, the layout
PortAudio hands to a callback; ``SampleRing.read`` returns channels-first ``(channels, n)``, the
project's layout for audio arrays. Storage is channels-first, so reads are contiguous copies.

Real-time rules for the writer side (``write``, ``write_silence``, ``EventLog.mark``): they copy
into preallocated arrays and assign Python ints; they take no lock, allocate no arrays and raise
only on a caller bug (wrong shape, block longer than the ring).

Concurrency without locks (one writer, any number of readers), seqlock style: before copying, the
writer announces the index its write will reach (``_pending``); after copying it publishes the
new ``end``. A reader checks its range against ``end`` (every sample in it fully written) and,
after its copy, against ``_pending`` (none of it overwritten meanwhile); if the second check
fails the copy may be torn and the read raises ``RingError``. Both attributes are Python ints
whose assignment is atomic, and the GIL orders them with the copies; numpy may drop the GIL
during a copy, which is exactly the case the re-check covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class RingError(RuntimeError):
    """A read of samples that are not (or no longer) in a ring, or a write the ring cannot hold."""


class Mark(IntEnum):
    """Kinds of events marked in an ``EventLog``; a window's flags are the lowercase names."""

    XRUN = 1  # samples lost by the audio device; the gap was filled with silence
    TRACK_CHANGE = 2  # first sample of a new track (or the silence after the last one)
    UNDERFLOW = 3  # the player had no decoded samples and played silence
    PAUSE = 4  # the player was paused and played silence

    @property
    def flag(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Event:
    index: int  # absolute sample index where the event starts
    kind: Mark
    length: int  # samples it covers; 0 for an instant (a boundary between two samples)

    def touches(self, start: int, stop: int) -> bool:
        """Whether the event lies inside the sample range [start, stop).

        An instant at index g separates samples g - 1 and g, so it is inside only when
        start < g < stop: a window that begins exactly at a track change is clean.
        """
        if self.length == 0:
            return start < self.index < stop
        return self.index < stop and self.index + self.length > start


class EventLog:
    """A preallocated, overwrite-oldest log of (index, kind, length) events; one writer.

    ``mark`` extends the newest event instead of adding one when it has the same kind and
    continues it sample for sample, so a long pause or underflow is one event, not one per
    callback, and the log does not overflow with repeats.
    """

    def __init__(self, capacity: int = 1024):
        if capacity < 1:
            raise RingError(f"event log capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._index = np.zeros(capacity, np.int64)
        self._length = np.zeros(capacity, np.int64)
        self._kind = np.zeros(capacity, np.int8)
        self._count = 0  # events ever added; published after the slot is written

    def mark(self, index: int, kind: Mark, length: int = 0) -> None:
        """Record an event (writer side: no allocation, no lock)."""
        count = self._count
        if count and length > 0:
            last = (count - 1) % self.capacity
            if (self._kind[last] == kind and self._length[last] > 0
                    and self._index[last] + self._length[last] == index):
                self._length[last] += length
                return
        slot = count % self.capacity
        self._index[slot] = index
        self._length[slot] = length
        self._kind[slot] = kind
        self._count = count + 1

    def marks_between(self, start: int, stop: int) -> list[Event]:
        """Events inside the sample range [start, stop) (see ``Event.touches``), oldest first.

        Events already overwritten by newer ones (more than ``capacity`` marks ago) are gone.
        """
        before = self._count
        index, length, kind = self._index.copy(), self._length.copy(), self._kind.copy()
        after = self._count
        # The writer may be filling slot `after % capacity` right now, which held event
        # `after - capacity`; that one and everything older is not trustworthy.
        first = max(0, after + 1 - self.capacity)
        events = []
        for seq in range(first, before):
            slot = seq % self.capacity
            event = Event(int(index[slot]), Mark(int(kind[slot])), int(length[slot]))
            if event.touches(start, stop):
                events.append(event)
        return events


class SampleRing:
    """A single-writer, multi-reader ring of ``capacity`` samples by absolute sample index.

    ``events`` is the ring's own ``EventLog``: its indices are in this ring's sample time.
    """

    def __init__(self, channels: int, capacity: int, dtype=np.float32, event_capacity: int = 1024):
        if channels < 1 or capacity < 1:
            raise RingError(
                f"a ring needs at least 1 channel and 1 sample, got {channels} and {capacity}"
            )
        self.channels = channels
        self.capacity = capacity
        self.dtype = np.dtype(dtype)
        self.events = EventLog(event_capacity)
        self._buf = np.zeros((channels, capacity), self.dtype)
        self._end = 0  # one past the newest fully written sample
        self._pending = 0  # what `_end` will be once the write in progress is done

    @property
    def end(self) -> int:
        """Index one past the newest sample."""
        return self._end

    @property
    def oldest(self) -> int:
        """Oldest index still held (and not being overwritten right now)."""
        return max(0, self._pending - self.capacity)

    def write(self, block: np.ndarray) -> None:
        """Append a ``(frames, channels)`` block (callback side)."""
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise RingError(
                f"ring write expects a (frames, {self.channels}) block, got shape {block.shape}"
            )
        frames = block.shape[0]
        if frames > self.capacity:
            raise RingError(
                f"block of {frames} frames does not fit a ring of {self.capacity}; "
                "make the ring larger"
            )
        end = self._end
        self._pending = end + frames
        pos = end % self.capacity
        first = min(frames, self.capacity - pos)
        self._buf[:, pos:pos + first] = block[:first].T
        if frames > first:
            self._buf[:, :frames - first] = block[first:].T
        self._end = end + frames

    def write_silence(self, n: int, kind: Mark | None = Mark.XRUN) -> None:
        """Append ``n`` zero samples, e.g. for a gap the device lost, so indices stay continuous.

        The gap is marked in ``events`` as ``kind`` (default XRUN) unless ``kind`` is None.
        """
        if n <= 0:
            return
        end = self._end
        if kind is not None:
            self.events.mark(end, kind, n)
        self._pending = end + n
        if n >= self.capacity:
            self._buf.fill(0)
        else:
            pos = end % self.capacity
            first = min(n, self.capacity - pos)
            self._buf[:, pos:pos + first] = 0
            if n > first:
                self._buf[:, :n - first] = 0
        self._end = end + n

    def read(self, start: int, n: int, out: np.ndarray | None = None) -> np.ndarray:
        """Copy of samples [start, start + n) as ``(channels, n)`` (worker side).

        Raises ``RingError`` if any of them is not written yet, already overwritten, or was
        overwritten while being copied.
        """
        if n > self.capacity:
            raise RingError(f"cannot read {n} samples from a ring of {self.capacity}")
        if out is None:
            out = np.empty((self.channels, n), self.dtype)
        elif out.shape != (self.channels, n):
            raise RingError(f"read into shape {out.shape}; expected {(self.channels, n)}")
        end = self._end
        if start + n > end:
            raise RingError(f"samples up to {start + n} requested; only {end} written so far")
        if start < max(0, self._pending - self.capacity):
            raise RingError(f"sample {start} requested; the oldest still held is {self.oldest}")
        pos = start % self.capacity
        first = min(n, self.capacity - pos)
        np.copyto(out[:, :first], self._buf[:, pos:pos + first])
        if n > first:
            np.copyto(out[:, first:], self._buf[:, :n - first])
        if start < self._pending - self.capacity:
            raise RingError(f"samples from {start} were overwritten while being read")
        return out
