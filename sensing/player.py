"""Gapless playlist playback: a decode-ahead thread feeds the audio callback through a FIFO.

Three parties share a Player without locks:
- the decoder (a thread started by ``start``, or ``pump`` called by hand) decodes tracks block
  by block (a music file streams: only its current block is in memory, whatever its length)
  and copies their samples into a preallocated FIFO of ``fifo_frames``;
- the audio callback calls ``callback_fill(out)``: it copies the next FIFO samples into ``out``
  (``(frames, 2)`` float32, channels last as PortAudio has it) and writes exactly ``out`` into
  ``reference``, so the reference ring holds what was played, by sample index;
- control calls (``next``, ``previous``, ``select``, ``set_tracks``, ``pause``, ``resume``,
  ``set_repeat``) and ``status`` come from another thread (GUI, command line; one at a time).

Track boundaries travel beside the samples as (FIFO index, track) records, published before the
samples they precede, so the callback knows the exact sample where a track starts and marks
TRACK_CHANGE there in ``reference.events``. A skip (next/previous/select) is a boundary with the
"flush" bit: the callback jumps straight to it, dropping the old track's queued samples. The
decoder keeps ``block_frames`` of the FIFO free during normal decode-ahead so that the first
block of a skipped-to track always fits and the switch plays without a gap.

Track identity: a track gets an id when it enters the playlist, and the boundary records and
the callback's playing track hold ids, not list positions, so ``set_tracks`` can reorder,
remove or add tracks while playing without touching what the callback reads. The decoder
applies it like the other commands: the track playing plays on (a removed one to its end),
and what follows it is the new order's next track. Samples of other tracks already queued
behind it that the new order does not want are cut with a handshake: the decoder posts the
boundary to cut at (``_cut_seq``), and the callback, at its next start, either accepts (it
has not reached that boundary: it plays no further than it until the cut is done) or refuses
(it is already past it; the decoder plans again from the new track). Only then does the
decoder rewind its FIFO end to the boundary and queue the new next track there, so the cut
costs no gap as long as the new track is decoded before the queued samples run out.

Silence: pause plays silence (marked PAUSE), keeps sample indices moving and holds the track
position; an empty FIFO while a track is due plays silence, counted in ``underflows`` and marked
UNDERFLOW; after the last track (repeat off) it is silence, neither counted nor marked.

Skipping: a track whose loader raises a ``UserError`` (``AudioFileError`` for a bad file, or
``PlayerError`` for an array of the wrong shape) is skipped, remembered with its reason in
``status().skipped`` and not tried again; playback continues with the next track. A track that
fails part-way (a file damaged past where ``check_music`` looked) ends there, and is
remembered and not tried again the same way.
"""

from __future__ import annotations

import functools
import math
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from bgm2pose.sensing.audiofile import AudioFileError, check_music, stream_music
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.ring import Mark, SampleRing

SAMPLE_RATE = 48_000
END = -1  # "track" index of the silence after the last track
_BOUNDARY_SLOTS = 64


class PlayerError(UserError, ValueError):
    """A playlist, track or player setting that cannot be played."""


class Repeat(Enum):
    OFF = "off"  # stop after the last track
    ALL = "all"  # start over after the last track
    ONE = "one"  # play the current track again and again (next/previous still move)


@dataclass(frozen=True)
class Track:
    name: str
    # Returns (2, N) float32 at 48 kHz, or an iterator of (2, n) blocks of it (a streamed
    # file); runs in the decoder.
    loader: Callable[[], np.ndarray | Iterator[np.ndarray]]
    # Why the track cannot be played, as found when it was made (one sentence with the fix);
    # the player still tries it in turn (its loader raises the reason again, or the file was
    # fixed meanwhile), but whoever lists or records the tracks can say so up front.
    problem: str | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> Track:
        """A track of a music file, checked now (``audiofile.check_music``, which reads the
        header and the last samples, not the whole file)."""
        try:
            check_music(path)
        except AudioFileError as exc:
            problem = str(exc)
        else:
            problem = None
        return cls(Path(path).name, functools.partial(stream_music, path), problem)


@dataclass(frozen=True)
class SkippedTrack:
    index: int
    name: str
    reason: str


@dataclass(frozen=True)
class PlayerStatus:
    track: int | None  # index of the track playing; None before the first, after the last and
    # while a track removed from the playlist plays out
    track_name: str | None
    position_s: float  # seconds played of the current track
    paused: bool
    finished: bool  # played to the end of the playlist (repeat off)
    repeat: Repeat
    underflows: int  # callbacks that found the FIFO empty while a track was due
    buffered_s: float  # decoded audio waiting in the FIFO
    skipped: tuple[SkippedTrack, ...]
    error: str | None  # an unexpected failure that stopped the decoder


class Player:
    def __init__(self, tracks: Sequence[Track | np.ndarray], *, block_frames: int = 4_800,
                 ring_capacity: int = 10 * SAMPLE_RATE, fifo_frames: int = 2 * SAMPLE_RATE,
                 repeat: Repeat = Repeat.OFF, sample_rate: int = SAMPLE_RATE):
        if not tracks:
            raise PlayerError("the playlist is empty; add at least one track")
        if block_frames < 1 or fifo_frames < 2 * block_frames:
            raise PlayerError(
                f"the FIFO ({fifo_frames} frames) must hold at least two decoder blocks of "
                f"{block_frames} frames; make it larger"
            )
        listed = tuple(t if isinstance(t, Track) else _array_track(i, t)
                       for i, t in enumerate(tracks))
        ids = tuple(range(len(listed)))
        self._names = {i: t.name for i, t in zip(ids, listed)}  # every id ever given
        self._next_id = len(listed)
        self._requested = (listed, ids)  # controls: the playlist as last set
        self._listing = (listed, ids)  # decoder and status: the playlist as applied
        self.block_frames = block_frames
        self.sample_rate = sample_rate
        self.reference = SampleRing(2, ring_capacity)
        self.repeat = repeat

        self._fifo = np.zeros((fifo_frames, 2), np.float32)
        self._fifo_end = 0  # decoder: FIFO index one past the newest published sample
        self._read = 0  # callback: FIFO index of the next sample to play
        self._b_index = np.zeros(_BOUNDARY_SLOTS, np.int64)
        self._b_track = np.zeros(_BOUNDARY_SLOTS, np.int64)  # track ids
        self._b_flush = np.zeros(_BOUNDARY_SLOTS, bool)
        self._b_count = 0  # decoder: boundaries published
        self._b_next = 0  # callback: boundaries applied

        # Callback state.
        self._paused = False
        self._playing: int | None = None  # track id, END, or None before the first boundary
        self._track_pos = 0
        self._underflows = 0

        # Decoder state.
        self._commands: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._primed = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._error: Exception | None = None
        self._broken: dict[int, SkippedTrack] = {}  # by list index
        self._dec_track: int | None = 0  # list index to load next; None: nothing left
        self._source: Iterator[np.ndarray] = iter(())  # the rest of the track being decoded
        self._data: np.ndarray | None = None  # its block being queued
        self._data_id = 0  # track id of `_data`
        self._pos = 0
        # Removed track id -> id of the first listed track that followed it (None: it was
        # after the last), so what follows a removed track that still plays is known.
        self._after: dict[int, int | None] = {}
        # Cut handshake (module docstring): boundary seq to cut at (-1: none), the callback's
        # answer (seq it saw, and whether it accepted), the track id before the cut.
        self._cut_seq = -1
        self._cut_ack = -1
        self._cut_ok = False
        self._cut_prev = END
        self._need_boundary = True
        self._flush = False
        # The track id the listener is about to hear, to resolve next/previous against before
        # the callback has reached it; `_intent_seq` is its boundary (None: not pushed yet).
        self._intent = 0
        self._intent_seq: int | None = None

    # -- audio callback -------------------------------------------------------------------

    def callback_fill(self, out: np.ndarray) -> None:
        """Fill ``out`` ``(frames, 2)`` with the next samples and record them as reference."""
        frames = out.shape[0]
        ref = self.reference
        index = ref.end
        cut = self._cut_seq  # read first: once it is -1, the decoder's rewind is visible below
        accepted = False
        if cut >= 0:
            accepted = self._b_next <= cut
            self._cut_ok = accepted
            self._cut_ack = cut
        if self._paused:
            out.fill(0)
            ref.events.mark(index, Mark.PAUSE, frames)
            ref.write(out)
            return
        written = self._fifo_end  # read before the boundaries, which are published first
        count = self._b_count
        if accepted:  # play nothing from the cut on until the decoder has rewound
            written = min(written, int(self._b_index[cut % _BOUNDARY_SLOTS]))
            count = min(count, cut)
        nxt = self._b_next
        read = self._read
        flush = -1
        for seq in range(nxt, count):
            if self._b_flush[seq % _BOUNDARY_SLOTS]:
                flush = seq
        if flush >= 0:
            nxt = flush
            read = int(self._b_index[flush % _BOUNDARY_SLOTS])
        cap = self._fifo.shape[0]
        filled = 0
        while filled < frames:
            boundary = int(self._b_index[nxt % _BOUNDARY_SLOTS]) if nxt < count else written
            if nxt < count and boundary <= read:
                self._playing = int(self._b_track[nxt % _BOUNDARY_SLOTS])
                self._track_pos = 0
                ref.events.mark(index + filled, Mark.TRACK_CHANGE)
                nxt += 1
                continue
            n = min(frames - filled, boundary - read)
            if n <= 0:
                break
            pos = read % cap
            first = min(n, cap - pos)
            out[filled:filled + first] = self._fifo[pos:pos + first]
            if n > first:
                out[filled + first:filled + n] = self._fifo[:n - first]
            read += n
            filled += n
            self._track_pos += n
        self._read = read  # frees the FIFO space only now that it is copied
        self._b_next = nxt
        if filled < frames:
            out[filled:] = 0
            if self._playing != END:
                self._underflows += 1
                ref.events.mark(index + filled, Mark.UNDERFLOW, frames - filled)
        ref.write(out)

    # -- controls (any thread) ------------------------------------------------------------

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def set_repeat(self, repeat: Repeat) -> None:
        self.repeat = repeat

    def next(self) -> None:
        """Skip to the next track (after the last: the first with repeat all, else stop)."""
        self._command("next", 0)

    def previous(self) -> None:
        """Go back one track (before the first: the last with repeat all, else the first)."""
        self._command("previous", 0)

    def select(self, index: int) -> None:
        """Play track ``index`` now."""
        if not 0 <= index < len(self.tracks):
            raise PlayerError(
                f"track {index} is not in the playlist; choose 0 to {len(self.tracks) - 1}"
            )
        self._command("select", index)

    @property
    def tracks(self) -> tuple[Track, ...]:
        """The playlist as last given (``set_tracks`` takes effect on the decoder's next step)."""
        return self._requested[0]

    def set_tracks(self, tracks: Sequence[Track]) -> None:
        """Replace the playlist while playing, e.g. reordered, with tracks removed or added.

        Tracks are matched by identity: a ``Track`` object of the current list keeps its
        identity (the track playing plays on without a gap, a removed one to its end); the
        new order applies from the track after the one playing."""
        if not tracks:
            raise PlayerError("the playlist is empty; keep at least one track")
        if not all(isinstance(t, Track) for t in tracks):
            raise PlayerError("set_tracks takes Track objects; wrap arrays in Track(name, "
                              "loader)")
        spare: dict[int, list[int]] = {}
        for track, track_id in zip(*self._requested):
            spare.setdefault(id(track), []).append(track_id)
        ids = []
        for track in tracks:
            reuse = spare.get(id(track))
            if reuse:
                ids.append(reuse.pop(0))
            else:
                ids.append(self._next_id)
                self._names[self._next_id] = track.name
                self._next_id += 1
        self._requested = (tuple(tracks), tuple(ids))
        self._command("tracks", self._requested)

    def status(self) -> PlayerStatus:
        playing = self._playing
        ids = self._listing[1]
        now = playing is not None and playing != END
        track = ids.index(playing) if now and playing in ids else None
        return PlayerStatus(
            track=track, track_name=self._names[playing] if now else None,
            position_s=self._track_pos / self.sample_rate if now else 0.0,
            paused=self._paused, finished=playing == END, repeat=self.repeat,
            underflows=self._underflows,
            buffered_s=(self._fifo_end - self._read) / self.sample_rate,
            skipped=tuple(self._broken.values()),
            error=None if self._error is None else f"{type(self._error).__name__}: {self._error}",
        )

    # -- decoder --------------------------------------------------------------------------

    def start(self, prime_timeout: float = 30.0) -> None:
        """Start the decode-ahead thread and wait until the first track is queued."""
        if self._thread is not None:
            raise PlayerError("the player is already started; call start() once")
        self._thread = threading.Thread(target=self._run, name="player-decoder", daemon=True)
        self._thread.start()
        self._primed.wait(prime_timeout)

    def close(self) -> None:
        """Stop the decode-ahead thread."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Player:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def pump(self) -> None:
        """Do the decoder's work in the calling thread until the FIFO is full or the playlist
        is queued to its end (for tests and offline rendering, instead of ``start``)."""
        if self._thread is not None:
            raise PlayerError("pump() is for a player without a decoder thread; don't start it")
        while self._service():
            pass

    def _run(self) -> None:
        idle = self.block_frames / self.sample_rate / 2
        try:
            while not self._stop:
                self._wake.clear()  # before the work, so a command posted meanwhile wakes us
                if not self._service():
                    self._wake.wait(idle)
        except Exception as exc:  # a bug, not a bad track: keep it for status() to show
            self._error = exc
            self._primed.set()

    def _command(self, kind: str, arg: object) -> None:
        self._commands.put((kind, arg))
        self._wake.set()

    def _service(self) -> bool:
        """One step of decoder work; False when there is nothing to do right now."""
        if self._cut_seq >= 0:
            return self._finish_cut()
        progressed = False
        while self._cut_seq < 0:
            try:
                kind, arg = self._commands.get_nowait()
            except queue.Empty:
                break
            if kind == "tracks":
                self._replace(*arg)
            else:
                self._apply(kind, arg)
            progressed = True
        if self._cut_seq >= 0:
            return progressed
        if self._need_boundary and self._b_count - self._b_next >= _BOUNDARY_SLOTS:
            return progressed
        if self._data is None:
            track = self._dec_track
            if track is None:
                return progressed
            if track == END:
                self._push_boundary(self._fifo_end, END)
                self._dec_track = None
            else:
                self._load(track)
            return True
        if self._pos == self._data.shape[1]:
            if not self._next_block():
                self._dec_track = self._index_after(self._data_id)
                self._data = None
                self._need_boundary = True
            return True
        reserve = 0 if self._flush else self.block_frames
        cap = self._fifo.shape[0]
        space = cap - (self._fifo_end - self._read) - reserve
        n = min(self.block_frames, space, self._data.shape[1] - self._pos)
        if n <= 0:
            return progressed
        write = self._fifo_end
        pos = write % cap
        first = min(n, cap - pos)
        self._fifo[pos:pos + first] = self._data[:, self._pos:self._pos + first].T
        if n > first:
            self._fifo[:n - first] = self._data[:, self._pos + first:self._pos + n].T
        if self._need_boundary:
            self._push_boundary(write, self._data_id)
        self._fifo_end = write + n  # published last: the callback may now play these
        self._pos += n
        return True

    def _push_boundary(self, index: int, track: int) -> None:
        seq = self._b_count
        slot = seq % _BOUNDARY_SLOTS
        self._b_index[slot] = index
        self._b_track[slot] = track
        self._b_flush[slot] = self._flush
        if self._intent_seq is None:
            self._intent, self._intent_seq = track, seq
        self._b_count = seq + 1
        self._need_boundary = False
        self._flush = False
        self._primed.set()

    def _apply(self, kind: str, index: int) -> None:
        """Turn a control command into a flush to the track it asks for."""
        n = len(self._listing[1])
        pending = self._intent_seq is None or self._b_next <= self._intent_seq
        base = self._intent if pending or self._playing is None else self._playing
        wrap = self.repeat is Repeat.ALL
        if kind == "select":
            target = index
        elif kind == "next":
            target = END if base == END else math.floor(self._position(base)) + 1
            if target >= n:
                target = 0 if wrap else END
        else:
            target = n - 1 if base == END else math.ceil(self._position(base)) - 1
            if target < 0:
                target = n - 1 if wrap else 0
        self._intent, self._intent_seq = self._id(target), None
        self._dec_track = target
        self._data = None
        self._need_boundary = True
        self._flush = True

    # -- playlist replacement (decoder) -----------------------------------------------------

    def _id(self, track: int) -> int:
        return END if track == END else self._listing[1][track]

    def _position(self, track_id: int) -> float:
        """List index of a track id; a removed track sits half a place before the track
        that followed it (so next gives that track, previous the one before)."""
        ids = self._listing[1]
        if track_id in ids:
            return ids.index(track_id)
        after = self._after.get(track_id)
        return (len(ids) if after is None else ids.index(after)) - 0.5

    def _index_after(self, track_id: int) -> int:
        """The list index (or END) to play after track ``track_id`` has played to its end."""
        if track_id == END:
            return END
        listed = track_id in self._listing[1]
        if listed and self.repeat is Repeat.ONE:
            return self._listing[1].index(track_id)
        following = math.floor(self._position(track_id)) + 1
        if following >= len(self._listing[1]):
            return 0 if self.repeat is Repeat.ALL else END
        return following

    def _playable(self, track: int) -> int:
        """``track``, or the first one after it not known to be broken (END if none)."""
        n = len(self._listing[1])
        for _ in range(n):
            if track == END or track not in self._broken:
                return track
            track = track + 1 if track + 1 < n else (END if self.repeat is Repeat.OFF else 0)
        return END

    def _replace(self, tracks: tuple[Track, ...], ids: tuple[int, ...]) -> None:
        """Apply ``set_tracks``: re-index the decoder's state, then re-plan what follows."""
        old = self._listing[1]
        where = {track_id: i for i, track_id in enumerate(ids)}
        for i, track_id in enumerate(old):
            if track_id not in where:
                self._after[track_id] = next((t for t in old[i + 1:] if t in where), None)
        for removed, after in self._after.items():  # earlier removals that lost their anchor
            while after is not None and after not in where:
                after = self._after.get(after)
            self._after[removed] = after
        self._broken = {where[old[i]]: SkippedTrack(where[old[i]], s.name, s.reason)
                        for i, s in self._broken.items() if old[i] in where}
        load = self._dec_track
        load_id = None if load is None else self._id(load)
        self._listing = (tracks, ids)
        if load_id is not None and load_id != END:  # the same track, or the one after it
            load = math.ceil(self._position(load_id))
            self._dec_track = load if load < len(ids) else self._index_after(load_id)
        if self._flush:  # a skip not queued yet drops all that is queued: only re-index it
            self._intent = self._id(self._dec_track)
        else:
            self._plan()
        if self._need_boundary and self._data is not None and (
                self._dec_track in (None, END) or self._data_id != self._id(self._dec_track)):
            self._data = None  # loaded for a place in the list that now holds another track

    def _plan(self) -> None:
        """Keep the queued boundaries the new order agrees with; cut at the first it does
        not, or, if all agree, make the track after them the new order's."""
        nxt = self._b_next  # before `_playing`: a race then errs towards a refused cut
        prev = self._playing
        for seq in range(nxt, self._b_count):
            slot = seq % _BOUNDARY_SLOTS
            track_id = int(self._b_track[slot])
            if self._b_flush[slot] or prev is None:  # a skip's target stands if still listed
                agrees = track_id == END or track_id in self._listing[1]
            else:
                agrees = track_id == self._id(self._playable(self._index_after(prev)))
            if not agrees:
                self._cut_prev, self._cut_ack, self._cut_seq = prev, -1, seq
                return
            prev = track_id
        if self._need_boundary and prev is not None:
            self._dec_track = None if prev == END else self._index_after(prev)

    def _finish_cut(self) -> bool:
        """The decoder's side of the cut handshake: rewind once the callback accepted."""
        seq = self._cut_seq
        if self._cut_ack != seq:
            return False  # no callback has started since the cut was posted
        if not self._cut_ok:  # the callback is already past the cut: plan from where it is
            self._cut_seq = -1
            self._plan()
            return True
        self._fifo_end = int(self._b_index[seq % _BOUNDARY_SLOTS])
        self._b_count = seq
        self._cut_seq = -1  # last: the callback now reads the rewound end and count
        prev = self._cut_prev
        self._dec_track = None if prev == END else self._index_after(prev)
        self._data = None
        self._need_boundary = True
        if self._intent_seq is not None and self._intent_seq >= seq:
            self._intent = END if self._dec_track is None else self._id(self._dec_track)
            self._intent_seq = None
        return True

    def _load(self, track: int) -> None:
        """Load ``track``, or the first playable one after it, as the one to decode."""
        while (track := self._playable(track)) != END:
            try:
                self._source = self._open(track)
                self._data = self._block(next(self._source, None), self._id(track))
                break
            except UserError as exc:
                self._skip(track, exc)
        self._pos = 0
        self._dec_track = track
        if track != END:
            self._data_id = self._id(track)
        if self._intent_seq is None:
            self._intent = self._id(track)

    def _open(self, track: int) -> Iterator[np.ndarray]:
        source = self._listing[0][track].loader()
        if isinstance(source, Iterator):
            return source
        return iter((np.asarray(source, dtype=np.float32),))

    def _block(self, block: np.ndarray | None, track_id: int) -> np.ndarray:
        if block is None or block.ndim != 2 or block.shape[0] != 2 or block.shape[1] == 0:
            shape = "nothing" if block is None else f"audio of shape {block.shape}"
            raise PlayerError(
                f"track {self._names[track_id]!r} gave {shape}; its loader must return "
                "(2, N) samples with N > 0, or blocks of them"
            )
        return block

    def _next_block(self) -> bool:
        """Make the next block of the track being decoded current; False at its end (or where
        it fails, which skips it from then on)."""
        try:
            block = next(self._source, None)
            if block is None:
                return False
            self._data = self._block(block, self._data_id)
        except UserError as exc:
            if self._data_id in self._listing[1]:
                self._skip(self._listing[1].index(self._data_id), exc)
            return False
        self._pos = 0
        return True

    def _skip(self, track: int, exc: UserError) -> None:
        self._broken[track] = SkippedTrack(track, self._listing[0][track].name, str(exc))


def _array_track(index: int, samples: np.ndarray) -> Track:
    return Track(f"track {index + 1}", lambda: samples)
