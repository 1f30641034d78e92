"""Session folders: one recorded or simulated take of the rig.

Layout (DESIGN.md "Data"):
  session.toml     rig geometry, sample rate, subject, track, latency, mic convention, provenance
  mic.flac         4 channels as recorded (in ``mic_convention``), 24-bit
  reference.flac   2 channels (left, right) exactly as played, 24-bit
  poses.npy        (frames, 21, 3) float32, metres, y up, at ``pose_fps``; optional: a
                   session without it (or with 0 frames) is unlabelled, ``Session.poses`` None;
                   a frame a teacher was unsure of is NaN (never a training target)
  confidence.npy   (frames, 21) float32 in [0, 1]: a teacher's confidence in each joint of
                   ``poses.npy`` (``sensing.teacher``); only in sessions a teacher labelled

Time base: sample n of ``mic.flac`` was captured while sample ``n - latency_samples`` of
``reference.flac`` was being played (so a simulated session has latency 0). Pose frame f
belongs to time ``pose_offset_s + f / pose_fps`` on the mic's clock.
"""

from __future__ import annotations

import tomllib
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import tomli_w

from bgm2pose.sensing.bformat import CONVENTIONS, to_internal
from bgm2pose.sensing.errors import UserError

SESSION_FILE = "session.toml"
MIC_FILE = "mic.flac"
REFERENCE_FILE = "reference.flac"
POSES_FILE = "poses.npy"
CONFIDENCE_FILE = "confidence.npy"
FORMAT_VERSION = 1
POSE_SHAPE = (21, 3)  # joints x (x, y, z) of each pose frame
# How session.toml must write each kind of SessionInfo field (TOML integers count as floats).
_TOML_KINDS = {int: "a whole number", float: "a number", str: "text", dict: "a table"}


class SessionError(UserError, ValueError):
    """A session folder that cannot be read or written."""


@dataclass
class SessionInfo:
    sample_rate: int = 48_000
    rig: dict = field(default_factory=dict)
    subject: dict = field(default_factory=dict)  # name, height, build
    track: str = ""
    latency_samples: float = 0.0
    mic_convention: str = "internal"
    pose_fps: float = 120.0
    pose_offset_s: float = 0.0
    provenance: dict = field(default_factory=dict)  # tool, version, seed, created, ...
    format_version: int = FORMAT_VERSION


@dataclass
class Session:
    folder: Path
    info: SessionInfo
    mic: np.ndarray  # (4, N) float32, internal B-format convention
    reference: np.ndarray  # (2, N') float32, left, right
    poses: np.ndarray | None  # (F, 21, 3) float32, or None when not annotated

    @property
    def duration_s(self) -> float:
        return self.mic.shape[1] / self.info.sample_rate


def _check_audio(name: str, audio: np.ndarray, channels: int) -> np.ndarray:
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 2 or audio.shape[0] != channels:
        raise SessionError(f"{name} must have shape ({channels}, samples), got {audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise SessionError(f"{name} contains NaN or inf samples; fix the signal before saving")
    peak = float(np.max(np.abs(audio), initial=0.0))
    if peak >= 1.0:
        raise SessionError(
            f"{name} peaks at {peak:.3f}, above full scale, and would clip in a 24-bit file; "
            "lower the gain before saving"
        )
    return audio


def write_session(
    folder: str | Path,
    info: SessionInfo,
    mic: np.ndarray,
    reference: np.ndarray,
    poses: np.ndarray | None = None,
) -> Path:
    """Write a session folder; the folder must not hold a session already."""
    folder = Path(folder)
    if (folder / SESSION_FILE).exists():
        raise SessionError(f"{folder} already holds a session; choose a new folder or delete it")
    if info.mic_convention not in CONVENTIONS:
        raise SessionError(
            f"mic convention {info.mic_convention!r} is unknown; use one of {', '.join(CONVENTIONS)}"
        )
    mic = _check_audio("mic audio", mic, 4)
    reference = _check_audio("reference audio", reference, 2)
    if poses is not None:
        poses = np.asarray(poses, np.float32)
        if poses.ndim != 3 or poses.shape[1:] != POSE_SHAPE:
            raise SessionError(f"poses must have shape (frames, 21, 3), got {poses.shape}")
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / MIC_FILE, mic.T, info.sample_rate, subtype="PCM_24")
    sf.write(folder / REFERENCE_FILE, reference.T, info.sample_rate, subtype="PCM_24")
    if poses is not None:
        np.save(folder / POSES_FILE, poses)
    # session.toml last: its presence marks a complete session.
    (folder / SESSION_FILE).write_text(tomli_w.dumps(asdict(info)))
    return folder


def read_info(folder: str | Path) -> SessionInfo:
    path = Path(folder) / SESSION_FILE
    if not path.is_file():
        raise SessionError(f"{folder} is not a session folder (no {SESSION_FILE}); pass a folder "
                           "written by 'bgm2pose simulate' or a recording")
    try:
        info = SessionInfo(**tomllib.loads(path.read_text(encoding="utf-8")))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, TypeError) as exc:
        raise SessionError(f"{path} is not a valid session description ({exc}); "
                           "re-create the session") from None
    _check_info(info, path)
    return info


def _check_info(info: SessionInfo, path: Path) -> None:
    """Each field of the kind its dataclass declares, and the rates positive: a mistyped
    value is named here, not quoted back by whatever uses it first."""
    for name, kind in typing.get_type_hints(SessionInfo).items():
        value = getattr(info, name)
        # bool is an int to Python, not to a person writing `sample_rate = true`.
        fits = isinstance(value, kind) or (kind is float and isinstance(value, int))
        if not fits or isinstance(value, bool):
            raise SessionError(f"{path} gives {name} = {value!r}, which is not "
                               f"{_TOML_KINDS[kind]}; correct it, e.g. {_default(name)}")
    for name in ("sample_rate", "pose_fps"):
        if getattr(info, name) <= 0:
            raise SessionError(f"{path} gives {name} = {getattr(info, name)!r}, which is not "
                               f"positive; correct it, e.g. {_default(name)}")


def _default(name: str) -> str:
    """The TOML line of a SessionInfo field at its default, e.g. ``sample_rate = 48000``."""
    return tomli_w.dumps({name: getattr(SessionInfo(), name)}).strip()


def _read_audio(path: Path, channels: int, sample_rate: int) -> np.ndarray:
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, OSError) as exc:
        raise SessionError(f"cannot read {path} ({exc}); the session is incomplete") from None
    if data.shape[1] != channels or sr != sample_rate:
        raise SessionError(
            f"{path} has {data.shape[1]} channels at {sr} Hz, expected {channels} at "
            f"{sample_rate} Hz as session.toml says"
        )
    return np.ascontiguousarray(data.T)


def read_session(folder: str | Path) -> Session:
    """Read a session; the mic audio is converted to the internal B-format convention."""
    folder = Path(folder)
    info = read_info(folder)
    mic = _read_audio(folder / MIC_FILE, 4, info.sample_rate)
    mic = to_internal(mic, info.mic_convention, axis=0).astype(np.float32, copy=False)
    reference = _read_audio(folder / REFERENCE_FILE, 2, info.sample_rate)
    poses_path = folder / POSES_FILE
    poses = _read_poses(poses_path) if poses_path.is_file() else None
    if poses is not None and not len(poses):
        # Recordings through a real device used to write a 0-frame file: no labels either.
        poses = None
    return Session(folder, info, mic, reference, poses)


def _read_poses(path: Path) -> np.ndarray:
    """``poses.npy`` as (frames, 21, 3) float32; never unpickles (a pickle runs code)."""
    try:
        # read_array, not np.load: np.load takes any file that is not .npy for a pickle, and
        # its message then suggests loading it unsafely.
        with open(path, "rb") as fh:
            poses = np.lib.format.read_array(fh, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        raise SessionError(f"{path} is not a .npy array of plain numbers (pickled, damaged or "
                           "another format); re-create it as (frames, 21, 3) float32 with "
                           "numpy.save") from None
    if poses.ndim != 3 or poses.shape[1:] != POSE_SHAPE or poses.dtype.kind not in "fiu":
        raise SessionError(f"{path} holds a {poses.dtype} array of shape {poses.shape}, not "
                           "poses (frames, 21, 3) in metres; re-create it with numpy.save")
    return poses.astype(np.float32, copy=False)


def find_sessions(root: str | Path) -> list[Path]:
    """All session folders below ``root`` (sorted), including ``root`` itself."""
    root = Path(root)
    return sorted(p.parent for p in root.rglob(SESSION_FILE))
