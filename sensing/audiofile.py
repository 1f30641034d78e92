"""Music files to the project's playback format: 48 kHz stereo float32, channels first (2, N).

Decoding is libsndfile's (through soundfile): WAV, FLAC, OGG/Vorbis/Opus, AIFF, CAF, ... and
MP3 when the bundled libsndfile was built with it (1.1 and later). Resampling is soxr "HQ".
Playback streams a file in blocks (``stream_music``), so memory does not grow with its length.

Channels: mono is played on both speakers; stereo is kept as (left, right); files with more
than two channels keep the first two, which are front left and front right in the WAV/FLAC
channel order (the centre, LFE and surround channels are dropped, not mixed in).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from bgm2pose.sensing.errors import UserError

SAMPLE_RATE = 48_000

# Extensions of formats libsndfile decodes; a file with another extension that fails to
# open is reported as an unsupported format rather than as a damaged file.
_EXTENSIONS = {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc",
               ".caf", ".w64", ".rf64", ".au", ".snd"}
if "MP3" in sf.available_formats():
    _EXTENSIONS.add(".mp3")


# Frames decoded from the end of a file to prove it is all there (0.1 s at 48 kHz).
_TAIL_FRAMES = 4_800
# File frames decoded at a time when streaming: 0.1 s, a block the player's decoder copies
# in one step.
BLOCK_FRAMES = 4_800


class AudioFileError(UserError, ValueError):
    """A music file that does not exist, cannot be decoded, or holds no audio."""


@dataclass(frozen=True)
class AudioInfo:
    path: Path
    sample_rate: int
    channels: int
    frames: int
    duration_s: float
    format: str  # libsndfile's format name, e.g. "WAV", "FLAC", "OGG", "MP3"


def _no_audio(path: Path) -> AudioFileError:
    return AudioFileError(
        f"music file {path} holds no audio samples; choose one that contains audio"
    )


def _undecodable(path: Path) -> AudioFileError:
    return AudioFileError(
        f"music file {path} could not be decoded (damaged or not audio); re-export it as "
        "WAV or FLAC"
    )


def _damaged(path: Path) -> AudioFileError:
    return AudioFileError(
        f"music file {path} could not be decoded past its header (truncated or damaged); "
        "re-export it as WAV or FLAC"
    )


def _looks_like_mp3(head: bytes) -> bool:
    """An ID3 tag or an MPEG frame sync (11 set bits) at the start."""
    return head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF
                                       and head[1] & 0xE0 == 0xE0)


def check_music(path: str | Path) -> AudioInfo:
    """What a music file holds, or an ``AudioFileError`` naming why it cannot be played and
    the fix: missing, a folder, unreadable, empty, a format this build lacks, not audio, no
    samples, or cut short.

    The one check of a music file, shared by everything that takes music (``bgm2pose run
    --tracks``, the app's playlist, ``bgm2pose simulate --music``, ``read_music``), so each
    names the same cause. It reads the header and decodes the last samples only: a truncated
    file (an unfinished copy) has a header that promises more audio than there is, which
    would otherwise surface only when its turn to play came.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except IsADirectoryError:
        raise AudioFileError(f"{path} is a folder, not a music file; choose the music files "
                             "themselves") from None
    except FileNotFoundError:
        raise AudioFileError(f"music file {path} does not exist; check the path") from None
    except PermissionError:
        raise AudioFileError(f"music file {path} is unreadable (permission denied); make it "
                             f"readable, e.g. chmod a+r '{path}'") from None
    except OSError as exc:
        raise AudioFileError(f"music file {path} cannot be read ({exc.strerror}); copy it to "
                             "a local disk") from None
    if not head:
        raise AudioFileError(f"music file {path} is empty; choose a file that contains audio")
    # libsndfile's MP3 decoder (mpg123) prints resync notes straight to the process's stderr
    # while it searches garbage for a frame, around our one-sentence message: refuse a file
    # that does not even start like MP3 before it gets there.
    if path.suffix.lower() == ".mp3" and not _looks_like_mp3(head):
        raise _undecodable(path)
    try:
        info = sf.info(str(path))
    except sf.SoundFileError as exc:
        if path.suffix.lower() not in _EXTENSIONS:
            supported = ", ".join(sorted(e.lstrip(".") for e in _EXTENSIONS))
            raise AudioFileError(
                f"music file {path} has a format this build cannot decode; convert it to one "
                f"of {supported}"
            ) from exc
        raise _undecodable(path) from exc
    if info.frames <= 0:
        raise _no_audio(path)
    tail = min(info.frames, _TAIL_FRAMES)
    try:
        with sf.SoundFile(str(path)) as f:
            f.seek(info.frames - tail)
            last = f.read(tail, dtype="float32")
    except sf.SoundFileError:  # the seek or the decoding past the end of what is there
        last = ()
    if len(last) < tail:
        promised = info.frames / info.samplerate
        raise AudioFileError(
            f"music file {path} is cut short (its header promises {promised:.1f} s of audio "
            "that is not all there, e.g. an unfinished copy); copy or export it again"
        )
    return AudioInfo(
        path=path, sample_rate=int(info.samplerate), channels=int(info.channels),
        frames=int(info.frames), duration_s=info.frames / info.samplerate, format=info.format,
    )


def stream_music(path: str | Path, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """Decode a music file block by block: (2, n) float32 blocks at 48 kHz (left, right).

    The file is checked now (``check_music``); decoding happens as the blocks are taken, about
    ``block_frames`` file frames at a time, so a track of any length costs a block's memory.
    The blocks join up to the samples the whole file resampled at once gives, exactly (soxr's
    streaming resampler carries its filter state from block to block)."""
    path = Path(path)
    info = check_music(path)
    resampler = None
    if info.sample_rate != SAMPLE_RATE:
        resampler = soxr.ResampleStream(info.sample_rate, SAMPLE_RATE, 2, dtype="float32",
                                        quality="HQ")
    return _blocks(path, block_frames, resampler)


def _blocks(path: Path, block_frames: int,
            resampler: soxr.ResampleStream | None) -> Iterator[np.ndarray]:
    try:
        with sf.SoundFile(str(path)) as f:
            buffer = np.empty((block_frames, f.channels), np.float32)
            while True:
                data = buffer[:_read(f, buffer)]
                last = len(data) < block_frames
                stereo = np.repeat(data, 2, axis=1) if f.channels == 1 else data[:, :2]
                if resampler is not None:
                    stereo = resampler.resample_chunk(np.ascontiguousarray(stereo), last=last)
                if len(stereo):
                    yield np.ascontiguousarray(stereo.T)
                if last:
                    return
    except sf.SoundFileError as exc:
        raise _damaged(path) from exc


def _read(f: sf.SoundFile, buffer: np.ndarray) -> int:
    """Read the next frames of ``f`` into ``buffer`` (frames, channels) float32; how many.

    Straight through libsndfile: soundfile's ``read`` seeks to where it counts the file to be
    after every call, and libsndfile's MP3 seek (1.2.2) is not sample-exact, so an MP3 read in
    blocks came out garbled (the first ~4 000 samples of every 4 800-frame block)."""
    frames = sf._snd.sf_readf_float(f._file, sf._ffi.cast("float *", buffer.ctypes.data),
                                     len(buffer))
    if frames < len(buffer) and f._errorcode:
        raise sf.LibsndfileError(f._errorcode)
    return frames


def read_music(path: str | Path, seconds: float | None = None) -> np.ndarray:
    """Decode a music file to (2, N) float32 at 48 kHz (left, right): all of it, or its first
    ``seconds`` (decoding no further than they need). Playback streams it instead
    (``stream_music``)."""
    want = None if seconds is None else round(seconds * SAMPLE_RATE)
    blocks, have = [], 0
    for block in stream_music(path):
        blocks.append(block)
        have += block.shape[1]
        if want is not None and have >= want:
            break
    return np.concatenate(blocks, axis=1)[:, :want]
