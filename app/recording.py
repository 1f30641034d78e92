"""The record button's side: a crash-safe session folder of a live run (``sensing.recorder``).

Record on a running pipeline joins it: the recorder copies the rings from their current end
(rounded down to a whole pose frame, so the session's ``pose_offset_s`` is 0) and nothing
restarts. With no pipeline running, the window starts one with a recorder that copies the
rings from their first sample. Sessions go to a new folder
``session-YYYYmmdd-HHMMSS`` under the recordings folder (``RECORDINGS_KEY`` in the app
settings, default ``~/bgm2pose-sessions``). The rings hold internal B-format, so the session's
mic convention is "internal" whatever the device's.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from PyQt6.QtCore import QSettings

from bgm2pose.app.live_engine import LiveEngine
from bgm2pose.sensing.recorder import POSE_FPS, SessionRecorder
from bgm2pose.sensing.teacher import PoseTeacher
from bgm2pose.sensing.teacher.align import MIN_CONFIDENCE

RECORDINGS_KEY = "recording/folder"


def recordings_folder(settings: QSettings) -> Path:
    return Path(str(settings.value(RECORDINGS_KEY, Path.home() / "bgm2pose-sessions")))


def new_session_folder(root: Path, prefix: str = "session") -> Path:
    """A fresh folder name ``<prefix>-YYYYmmdd-HHMMSS`` under ``root`` (not created)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = root / f"{prefix}-{stamp}"
    n = 1
    while folder.exists():
        n += 1
        folder = root / f"{prefix}-{stamp}-{n}"
    return folder


def start_recorder(engine: LiveEngine, folder: Path, from_now: bool = False,
                   teacher: PoseTeacher | None = None,
                   min_confidence: float = MIN_CONFIDENCE) -> SessionRecorder:
    """A started recorder of ``engine``'s rings (labelled by a started ``teacher``, or by the
    ground truth on the virtual rig): from the rings' first sample (call before
    ``engine.start()``), or ``from_now`` on a running engine: from the rings' current end,
    rounded down to a whole pose frame."""
    first = 0
    if from_now:
        frame = engine.backend.sample_rate // POSE_FPS
        first = engine.backend.recorded.end // frame * frame
    recorder = engine.recorder(folder, "bgm2pose app", first_sample=first, teacher=teacher,
                               min_confidence=min_confidence)
    recorder.start()
    return recorder
