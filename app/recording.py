"""The record button's side: a crash-safe session folder of a live run (``sensing.recorder``).

The recorder copies the rings from sample 0 on, so it starts together with the engine (the
window restarts the pipeline when Record is pressed); sessions go to a new folder
``session-YYYYmmdd-HHMMSS`` under the recordings folder (``RECORDINGS_KEY`` in the app
settings, default ``~/bgm2pose-sessions``). The rings hold internal B-format, so the session's
mic convention is "internal" whatever the device's.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from PyQt6.QtCore import QSettings

from bgm2pose.app.live_engine import LiveEngine
from bgm2pose.sensing.recorder import SessionRecorder

RECORDINGS_KEY = "recording/folder"


def recordings_folder(settings: QSettings) -> Path:
    return Path(str(settings.value(RECORDINGS_KEY, Path.home() / "bgm2pose-sessions")))


def new_session_folder(root: Path) -> Path:
    """A fresh folder name under ``root`` (not created)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = root / f"session-{stamp}"
    n = 1
    while folder.exists():
        n += 1
        folder = root / f"session-{stamp}-{n}"
    return folder


def start_recorder(engine: LiveEngine, folder: Path) -> SessionRecorder:
    """A started recorder of ``engine``'s rings (and ground truth on the virtual rig); call
    before ``engine.start()`` so the first samples are still in the rings."""
    recorder = SessionRecorder(folder, engine.backend.recorded, engine.player.reference,
                               engine.session_info("bgm2pose app"), ground_truth=engine.backend.ground_truth)
    recorder.start()
    return recorder
