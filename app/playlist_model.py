"""The playlist the operator edits: music files in play order, each checked when added.

``PlaylistModel`` is a Qt list model (one row per file) that the playlist panel shows. A file
is checked when it is added (``sensing.audiofile.check_music``: header and last samples): its
duration is shown, or the reason it cannot be played, in which case the row is marked and the
player skips it (the ``Player`` also reports tracks whose decoding fails later, through
``mark_problem``). Row i of the model is track i of the player built from ``paths()``.

``current``/``position_s`` say which row is playing and how far; the panel sets them from
``Player.status()`` on its timer. The list is saved as absolute paths in the app settings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from PyQt6 import QtCore, QtGui
from PyQt6.QtCore import QSettings, Qt

from bgm2pose.app.settings import string_list
from bgm2pose.sensing.audiofile import check_music
from bgm2pose.sensing.errors import UserError

SETTINGS_KEY = "playlist/files"
# What a folder scan picks up: anything that looks like music, decodable or not, so a file
# this build cannot play is listed with its reason rather than silently left out.
MUSIC_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif",
                            ".aiff", ".aifc", ".caf", ".w64", ".rf64", ".au", ".m4a", ".aac",
                            ".wma"})
PROBLEM_COLOUR = QtGui.QColor(220, 80, 80)


@dataclass(frozen=True)
class PlaylistEntry:
    path: Path
    duration_s: float | None  # None when the file cannot be played
    problem: str | None = None  # why it cannot be played: one sentence with the fix

    @classmethod
    def check(cls, path: str | Path) -> PlaylistEntry:
        path = Path(path).expanduser().absolute()
        try:
            return cls(path, check_music(path).duration_s)
        except UserError as exc:
            return cls(path, None, str(exc))


def format_time(seconds: float) -> str:
    """m:ss, or h:mm:ss from an hour on."""
    s = int(seconds)
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def music_files(folder: str | Path) -> list[Path]:
    """Music files under ``folder`` (recursively), sorted by path."""
    return sorted(p for p in Path(folder).rglob("*")
                  if p.is_file() and p.suffix.lower() in MUSIC_SUFFIXES)


class PlaylistModel(QtCore.QAbstractListModel):
    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.entries: list[PlaylistEntry] = []
        self.current: int | None = None
        self.position_s = 0.0

    # -- Qt model ---------------------------------------------------------------------------

    def rowCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.entries)

    def data(self, index: QtCore.QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = index.row()
        entry = self.entries[row]
        if role == Qt.ItemDataRole.DisplayRole:
            return self.row_text(row)
        if role == Qt.ItemDataRole.ToolTipRole:
            return entry.problem or str(entry.path)
        if role == Qt.ItemDataRole.ForegroundRole and entry.problem:
            return QtGui.QBrush(PROBLEM_COLOUR)
        if role == Qt.ItemDataRole.FontRole and row == self.current:
            font = QtGui.QFont()
            font.setBold(True)
            return font
        return None

    def row_text(self, row: int) -> str:
        entry = self.entries[row]
        if entry.problem:
            return f"✗ {entry.path.name}: {entry.problem}"
        total = format_time(entry.duration_s or 0.0)
        if row == self.current:
            return f"▶ {entry.path.name}   {format_time(self.position_s)} / {total}"
        return f"   {entry.path.name}   {total}"

    # -- editing ----------------------------------------------------------------------------

    def add(self, paths: list[str | Path]) -> list[PlaylistEntry]:
        """Append files (folders are scanned for music); returns the new entries. A folder
        with no music in it (one named like a file, x.wav, or an empty one) is listed itself,
        with the reason it cannot be played, rather than vanishing without a word."""
        files: list[Path] = []
        for p in map(Path, paths):
            files.extend((music_files(p) or [p]) if p.is_dir() else [p])
        new = [PlaylistEntry.check(f) for f in files]
        if new:
            first = len(self.entries)
            self.beginInsertRows(QtCore.QModelIndex(), first, first + len(new) - 1)
            self.entries.extend(new)
            self.endInsertRows()
        return new

    def remove(self, rows: list[int]) -> None:
        for row in sorted(set(rows), reverse=True):
            if 0 <= row < len(self.entries):
                self.beginRemoveRows(QtCore.QModelIndex(), row, row)
                del self.entries[row]
                self.endRemoveRows()
                if self.current is not None:
                    self.current = None if self.current == row else (
                        self.current - (self.current > row))

    def move(self, row: int, offset: int) -> int:
        """Move ``row`` by ``offset`` places (clamped); returns its new row."""
        target = max(0, min(len(self.entries) - 1, row + offset))
        if target == row or not 0 <= row < len(self.entries):
            return row
        # Qt's moveRows counts the destination before the move: one past when moving down.
        self.beginMoveRows(QtCore.QModelIndex(), row, row, QtCore.QModelIndex(),
                           target + (target > row))
        entry = self.entries.pop(row)
        self.entries.insert(target, entry)
        self.endMoveRows()
        if self.current == row:
            self.current = target
        elif self.current is not None and min(row, target) <= self.current <= max(row, target):
            self.current += 1 if target < row else -1
        return target

    def mark_problem(self, row: int, problem: str) -> None:
        if 0 <= row < len(self.entries) and self.entries[row].problem != problem:
            self.entries[row] = replace(self.entries[row], problem=problem, duration_s=None)
            self._changed(row)

    def set_playing(self, row: int | None, position_s: float) -> None:
        rows = {r for r in (self.current, row) if r is not None and r < len(self.entries)}
        self.current, self.position_s = row, position_s
        for r in rows:
            self._changed(r)

    def _changed(self, row: int) -> None:
        index = self.index(row)
        self.dataChanged.emit(index, index)

    # -- queries and persistence ------------------------------------------------------------

    def paths(self) -> list[Path]:
        return [e.path for e in self.entries]

    def save(self, settings: QSettings) -> None:
        settings.setValue(SETTINGS_KEY, [str(p) for p in self.paths()])

    def restore(self, settings: QSettings) -> None:
        """Replace the list with the saved one (each file checked again)."""
        self.beginResetModel()
        self.entries = [PlaylistEntry.check(p) for p in string_list(settings, SETTINGS_KEY)]
        self.current = None
        self.endResetModel()
