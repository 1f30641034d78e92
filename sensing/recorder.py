"""A crash-safe session recorder: streams the live rings into a session folder (``session``).

A thread copies, from ring sample ``first_sample`` on (0: from the backend's first callback),
the recorded ring (4 ch, internal B-format) to ``mic.flac``, the reference ring (2 ch) to
``reference.flac`` and, on the virtual rig, the ground-truth poses to ``poses.npy``. A rig
that knows no poses (a real room) leaves ``poses.npy`` out: the session is unlabelled. With a
``teacher`` (``sensing.teacher``) the poses are the teacher's instead, resampled onto the
120 fps frames with their confidences in ``confidence.npy`` and masked frames NaN
(``teacher.align``); the recorder writes a frame once the teacher's poses around it are known
(``lag_s`` plus the largest gap it interpolates across), the rest when it stops. A
recorder can so join a running pipeline: ``first_sample`` = the rings' current end. ``session.toml`` is written at ``start`` (so even a
killed recording is a session folder) and rewritten by ``stop`` with what the run found.

Crash safety: every ``flush_s`` (at most 1 s) the files are made readable as they stand on
disk. libsndfile writes a FLAC file's sample count into its STREAMINFO header only when it
closes the file; a killed process would leave a count of 0 ("unknown"), which libsndfile
cannot read back. So after each flush the recorder writes into that header the samples the
encoder has certainly written out: whole FLAC blocks, less the one sample libFLAC holds back
as look-ahead. ``poses.npy`` has a fixed-size header rewritten with the frame count. A
killed recording therefore reads with ``session.read_session`` up to its last flush.

Time base (as ``session``): both rings count from the backend's first callback, so ring mic
sample n pairs with ring reference sample n - latency; ring pose frame f is at ring mic sample
``f * rate / 120``, as ``AudioBackend.ground_truth`` defines it. File sample k of both audio
files is ring sample ``first_sample + k``, so the files keep the pairing "mic k with
reference k - latency". The pose file starts at ring frame ``ceil(first_sample / (rate /
120))``, and ``pose_offset_s`` is that frame's time from file sample 0 (0 when
``first_sample`` is a whole frame). Samples a ring lost before the recorder read them (it
fell more than a ring behind, or ``first_sample`` was already gone) are written as silence
and counted in ``lost_samples``.

A write the disk refuses (full, a file-size limit, the disk gone) stops the recording; the
files keep what reached them, and ``error`` is one sentence naming the cause and the fix, for
the caller to show and to end with a failure status: the data after that point is lost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import soundfile as sf
import tomli_w
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.ring import RingError, SampleRing
from bgm2pose.sensing.session import (
    CONFIDENCE_FILE, MIC_FILE, POSE_SHAPE, POSES_FILE, REFERENCE_FILE, SESSION_FILE, SessionInfo,
)
from bgm2pose.sensing.teacher import PoseTeacher
from bgm2pose.sensing.teacher.align import MAX_GAP_S, MIN_CONFIDENCE, check_min_confidence, resample

POSE_FPS = 120
_CHUNK = 48_000  # samples copied per file per pass: bounded work and memory
_NPY_HEADER = 128  # bytes, fixed so the frame count can be rewritten in place
# Largest value a 24-bit sample holds; louder float samples would wrap, not clip.
_FULL_SCALE = 1.0 - 2.0 ** -23
_STREAMINFO_COUNT_BITS = 36


class RecorderError(UserError, RuntimeError):
    """A recording folder that cannot be used."""


class _FlacStream:
    """One FLAC file appended to, readable on disk after every ``flush``."""

    def __init__(self, path: Path, channels: int, sample_rate: int):
        self.path = path
        self.written = 0
        self._file = sf.SoundFile(path, "w", sample_rate, channels, subtype="PCM_24",
                                  format="FLAC")

    def write(self, audio: np.ndarray) -> None:
        """Append ``(channels, n)`` samples."""
        self._file.write(np.clip(audio, -_FULL_SCALE, _FULL_SCALE).T)
        self.written += audio.shape[1]

    def flush(self) -> None:
        self._file.flush()
        if self.written == 0:  # libsndfile writes the header with the first samples
            return
        with open(self.path, "r+b") as fh:
            head = fh.read(26)
            # STREAMINFO must be the file's first metadata block: "fLaC", block type 0.
            if head[:4] != b"fLaC" or head[4] & 0x7F != 0:
                raise RecorderError(f"{self.path} does not start with a FLAC STREAMINFO "
                                    "block; this libsndfile cannot record crash-safely")
            block = int.from_bytes(head[10:12], "big")  # the encoder's (max) block size
            encoded = max(0, (self.written - 1) // block * block)
            packed = int.from_bytes(head[18:26], "big")
            packed = (packed >> _STREAMINFO_COUNT_BITS << _STREAMINFO_COUNT_BITS) | encoded
            fh.seek(18)
            fh.write(packed.to_bytes(8, "big"))

    def close(self) -> None:
        self._file.close()  # writes the true count (and checksum)


class _PoseStream:
    """A float32 ``.npy`` of (frames, *row) appended to frame by frame (``poses.npy``,
    ``confidence.npy``); its header always states the frames on disk."""

    def __init__(self, path: Path, row: tuple[int, ...] = POSE_SHAPE):
        self.path = path
        self.row = row
        self.frames = 0
        self._fh = open(path, "w+b")
        self._header()

    def _header(self) -> None:
        shape = (self.frames, *self.row)
        text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}"
        prefix = b"\x93NUMPY\x01\x00"
        body = text.ljust(_NPY_HEADER - len(prefix) - 2 - 1) + "\n"
        self._fh.seek(0)
        self._fh.write(prefix + len(body).to_bytes(2, "little") + body.encode("latin1"))

    def write(self, poses: np.ndarray) -> None:
        self._fh.seek(_NPY_HEADER + self.frames * 4 * int(np.prod(self.row)))
        self._fh.write(np.ascontiguousarray(poses, "<f4").tobytes())
        self.frames += len(poses)

    def flush(self) -> None:
        self._fh.flush()  # frames first, then the header that counts them
        self._header()
        self._fh.flush()

    def close(self) -> None:
        self.flush()
        self._fh.close()


class SessionRecorder:
    """Records the rings into ``folder`` from ``start`` to ``stop``; see the module docstring.

    ``ground_truth(start_sample, n)`` (``AudioBackend.ground_truth``) gives the poses of the
    frames in recorded samples [start_sample, start_sample + n), or None (no poses recorded).
    ``first_sample``: the ring index the recording starts at (``info.pose_offset_s`` is set
    from it). ``teacher``: label with a started pose teacher instead; its frames with a joint
    below ``min_confidence`` are masked.
    """

    def __init__(self, folder: str | Path, recorded: SampleRing, reference: SampleRing,
                 info: SessionInfo,
                 ground_truth: Callable[[int, int], np.ndarray | None] | None = None,
                 flush_s: float = 0.5, first_sample: int = 0,
                 teacher: PoseTeacher | None = None, min_confidence: float = MIN_CONFIDENCE):
        if not 0 < flush_s <= 1.0:
            raise RecorderError(f"flush interval {flush_s} s must be in (0, 1]; a crash keeps "
                                "the audio up to the last flush")
        self.folder = Path(folder)
        if (self.folder / SESSION_FILE).exists():
            raise RecorderError(f"{self.folder} already holds a session; choose a new folder "
                                "for the recording or delete the old one")
        if recorded.channels != 4 or reference.channels != 2:
            raise RecorderError(f"rings of {recorded.channels} and {reference.channels} "
                                "channels given; a session records 4 mic and 2 reference "
                                "channels")
        if first_sample < 0:
            raise RecorderError(f"first sample {first_sample} is negative; rings count from 0, "
                                "so start at 0 or at a later ring index")
        if teacher is not None and ground_truth is not None:
            raise RecorderError("both a ground truth and a teacher given; a session's poses come "
                                "from one of them")
        self.recorded = recorded
        self.reference = reference
        self.info = info
        self.ground_truth = ground_truth
        self.teacher = teacher
        self.min_confidence = check_min_confidence(min_confidence)
        self._hold = 0 if teacher is None else round((teacher.lag_s + MAX_GAP_S) * info.sample_rate)
        self.flush_s = flush_s
        self.first_sample = first_sample
        self.lost_samples = 0
        self.error: str | None = None
        self._frame = info.sample_rate // POSE_FPS
        self._first_frame = -(-first_sample // self._frame)  # ring frame of poses.npy row 0
        info.pose_offset_s = (self._first_frame * self._frame - first_sample) / info.sample_rate
        self._streams: tuple[_FlacStream, _FlacStream] | None = None
        self._poses: _PoseStream | None = None  # opened with the first poses the rig knows
        self._confidence: _PoseStream | None = None  # and this with a teacher's first
        self._poses_ended = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._started = datetime.now(UTC)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Create the files and start recording (while ring sample ``first_sample`` is still
        held: with the backend for 0, at once for the rings' current end)."""
        if self._thread is not None:
            raise RecorderError("the recorder is already started; call start() once")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            rate = self.info.sample_rate
            self._streams = (_FlacStream(self.folder / MIC_FILE, 4, rate),
                             _FlacStream(self.folder / REFERENCE_FILE, 2, rate))
            self._write_info(complete=False)
        except (OSError, sf.SoundFileError) as exc:
            raise RecorderError(f"cannot record into {self.folder} ({exc}); choose a folder "
                                "you can write to") from None
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    def stop(self, latency_samples: float | None = None) -> Path:
        """Write what is left in the rings, close the files and finish ``session.toml``
        (with the final latency, if given); idempotent. Returns the folder."""
        if self._thread is None:
            return self.folder
        self._stop.set()
        self._thread.join()
        self._thread = None
        if latency_samples is not None:
            self.info.latency_samples = float(latency_samples)
        try:
            for stream in self._streams:
                stream.close()
            for stream in (self._poses, self._confidence):
                if stream is not None:
                    stream.close()
            self._write_info(complete=True)
        except (OSError, sf.SoundFileError) as exc:
            self.error = self.error or self._write_failed(exc)
        return self.folder

    @property
    def seconds(self) -> float:
        """Mic audio written so far."""
        return 0.0 if self._streams is None else self._streams[0].written / self.info.sample_rate

    # -- worker ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.flush_s):
                self._copy(final=False)
                self._flush()
            self._copy(final=True)  # the rest, up to where the rings ended
        except (OSError, sf.SoundFileError) as exc:  # keep what is on disk, say why
            self.error = self._write_failed(exc)
        except Exception as exc:  # a bug: still keep what is on disk and say so
            self.error = f"the recording stopped: {type(exc).__name__}: {exc}"

    def _write_failed(self, exc: Exception) -> str:
        # An OSError has the reason (e.g. "No space left on device"); soundfile reports any
        # write libsndfile could not make as "System error.", which adds nothing.
        reason = f" ({exc.strerror})" if isinstance(exc, OSError) and exc.strerror else ""
        return (f"the recording into {self.folder} stopped after {self.seconds:.1f} s because "
                f"the disk refused a write{reason}, so the rest of the run was not recorded; "
                "free space on that disk (or raise the file-size limit), or record to another "
                "folder")

    def _copy(self, final: bool) -> None:
        mic, ref = self._streams
        while True:
            # Both files stop at the same ring index: the audio callback fills one ring before
            # the other, and a stop between the two must not leave them of different lengths.
            end = min(self.recorded.end, self.reference.end)
            moved = self._move(self.recorded, mic, end) + self._move(self.reference, ref, end)
            self._move_poses(mic.written, final)
            if not moved:
                return

    def _move(self, ring: SampleRing, stream: _FlacStream, end: int) -> int:
        """Copy up to one chunk of ``ring``'s new samples before ring index ``end``;
        returns how many."""
        start = self.first_sample + stream.written
        n = min(end - start, _CHUNK)
        if n <= 0:
            return 0
        try:
            audio = ring.read(start, n)
        except RingError:  # overwritten before we got to it: keep the timeline, say so
            lost = min(n, max(ring.oldest, start + 1) - start)
            self.lost_samples += lost
            stream.write(np.zeros((ring.channels, lost), np.float32))
            return lost
        stream.write(audio)
        return n

    def _move_poses(self, mic_written: int, final: bool) -> None:
        if self._poses_ended or (self.ground_truth is None and self.teacher is None):
            return
        first = self._first_frame + (0 if self._poses is None else self._poses.frames)
        known = self.first_sample + mic_written - (0 if final else self._hold)
        stop = -(-known // self._frame)
        if stop <= first:
            return
        try:
            poses, confidence = self._labels(first, stop, self.first_sample + mic_written)
        except RingError:  # frames already forgotten: the pose file ends here
            self._poses_gone()
            return
        if poses is None or len(poses) != stop - first:
            return
        if self._poses is None:
            # Row 0 is ring frame _first_frame: no frame was written before this one.
            self._poses = _PoseStream(self.folder / POSES_FILE)
            if confidence is not None:
                self._confidence = _PoseStream(self.folder / CONFIDENCE_FILE, POSE_SHAPE[:1])
        self._poses.write(poses)
        if confidence is not None:
            self._confidence.write(confidence)

    def _labels(self, first: int, stop: int,
                end: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Poses (and a teacher's confidences) of ring frames [first, stop); ``end``: the
        ring index the recording has reached, which no teacher pose is asked beyond."""
        if self.teacher is None:
            return self.ground_truth(first * self._frame, (stop - first) * self._frame), None
        rate = self.info.sample_rate
        gap = MAX_GAP_S * rate
        taught = self.teacher.poses(first * self._frame - gap, min(stop * self._frame + gap, end))
        return resample(taught, first, stop - first, self._frame, rate, self.min_confidence)

    def _poses_gone(self) -> None:
        for stream in (self._poses, self._confidence):
            if stream is not None:
                stream.close()
        self._poses = self._confidence = None
        self._poses_ended = True
        source = "ground-truth" if self.teacher is None else "teacher's"
        self.error = f"the {source} poses fell out of the pose tape; poses.npy stops early"

    def _flush(self) -> None:
        for stream in self._streams:
            stream.flush()
        for stream in (self._poses, self._confidence):
            if stream is not None:
                stream.flush()

    def _write_info(self, complete: bool) -> None:
        self.info.provenance = {
            **self.info.provenance, "recorded": self._started.isoformat(timespec="seconds"),
            "complete": complete and self.error is None, "lost_samples": self.lost_samples,
            **({"error": self.error} if self.error else {}),
            **({"teacher": {**self.teacher.describe(), "min_confidence": self.min_confidence}}
               if self.teacher is not None else {}),
        }
        (self.folder / SESSION_FILE).write_text(tomli_w.dumps(asdict(self.info)))
