"""Music files to the project's playback format: 48 kHz stereo float32, channels first (2, N).

Decoding is libsndfile's (through soundfile): WAV, FLAC, OGG/Vorbis/Opus, AIFF, CAF, ... and
MP3 when the bundled libsndfile was built with it (1.1 and later). Resampling is soxr "HQ".

Channels: mono is played on both speakers; stereo is kept as (left, right); files with more
than two channels keep the first two, which are front left and front right in the WAV/FLAC
channel order (the centre, LFE and surround channels are dropped, not mixed in).
"""

from __future__ import annotations

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


def audio_info(path: str | Path) -> AudioInfo:
    """What a music file holds, read from its header without decoding the audio."""
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"music file {path} does not exist; check the path")
    if path.stat().st_size == 0:
        raise AudioFileError(f"music file {path} is empty; choose a file that contains audio")
    try:
        info = sf.info(str(path))
    except sf.SoundFileError as exc:
        if path.suffix.lower() not in _EXTENSIONS:
            supported = ", ".join(sorted(e.lstrip(".") for e in _EXTENSIONS))
            raise AudioFileError(
                f"music file {path} has a format this build cannot decode; convert it to one "
                f"of {supported}"
            ) from exc
        raise AudioFileError(
            f"music file {path} could not be decoded (damaged or not audio); re-export it as "
            "WAV or FLAC"
        ) from exc
    if info.frames <= 0:
        raise _no_audio(path)
    return AudioInfo(
        path=path, sample_rate=int(info.samplerate), channels=int(info.channels),
        frames=int(info.frames), duration_s=info.frames / info.samplerate, format=info.format,
    )


def read_music(path: str | Path) -> np.ndarray:
    """Decode a music file to (2, N) float32 at 48 kHz (left, right)."""
    path = Path(path)
    info = audio_info(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.SoundFileError as exc:
        raise AudioFileError(
            f"music file {path} could not be decoded past its header (truncated or damaged); "
            "re-export it as WAV or FLAC"
        ) from exc
    if len(data) == 0:
        raise _no_audio(path)
    stereo = np.repeat(data, 2, axis=1) if info.channels == 1 else data[:, :2]
    if sr != SAMPLE_RATE:
        stereo = soxr.resample(stereo, sr, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(stereo.T, dtype=np.float32)
