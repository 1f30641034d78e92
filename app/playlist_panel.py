"""The playlist panel: edit the list (files, folders, drag and drop, remove, reorder) and
control the player (play/pause, previous/next, repeat), with the track position.

The panel edits a ``PlaylistModel`` and, while the live pipeline runs, drives its ``Player``
(``attach``). Row i is player track i when the player was built from this playlist
(``mirrors=True``); a player of the bundled generated music (empty playlist) is only shown.

Edits reach a mirroring player while it plays (``Player.set_tracks``: added, removed and
reordered rows; the track playing plays on, a removed one to its end, and the new order
follows). What the player cannot take goes through signals to the window that owns the
pipeline: ``restart_requested`` when the last row was removed (the pipeline falls back to the
bundled music) or the list was edited while a player of the bundled music plays;
``play_requested`` for play with no pipeline running. ``refresh`` (on the window's timer) copies the player's status
into the model: the playing row, its position, and the tracks it skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PyQt6 import QtCore, QtGui, QtWidgets
from PyQt6.QtCore import QSettings

from bgm2pose.app.playlist_model import PlaylistModel, format_time
from bgm2pose.sensing.player import Player, Repeat, Track

REPEAT_KEY = "playlist/repeat"
_REPEAT_LABEL = {Repeat.OFF: "Repeat: off", Repeat.ALL: "Repeat: all", Repeat.ONE: "Repeat: one"}
_NEXT_REPEAT = {Repeat.OFF: Repeat.ALL, Repeat.ALL: Repeat.ONE, Repeat.ONE: Repeat.OFF}


class PlaylistPanel(QtWidgets.QWidget):
    play_requested = QtCore.pyqtSignal()
    restart_requested = QtCore.pyqtSignal()

    def __init__(self, settings: QSettings, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.settings = settings
        self.model = PlaylistModel(self)
        self.player: Player | None = None
        self.mirrors = False
        self.repeat = Repeat(str(settings.value(REPEAT_KEY, Repeat.ALL.value)))
        self.setAcceptDrops(True)

        self.view = QtWidgets.QListView()
        self.view.setModel(self.model)
        self.view.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setWordWrap(True)
        self.view.doubleClicked.connect(lambda index: self.play_row(index.row()))
        self.now_playing = QtWidgets.QLabel("Stopped")
        self.now_playing.setWordWrap(True)

        def button(text: str, slot, tip: str = "") -> QtWidgets.QPushButton:
            b = QtWidgets.QPushButton(text)
            b.clicked.connect(slot)
            b.setToolTip(tip)
            return b

        edit = QtWidgets.QHBoxLayout()
        edit.addWidget(button("Add files…", self._add_files_dialog))
        edit.addWidget(button("Add folder…", self._add_folder_dialog))
        edit.addWidget(button("Remove", self.remove_selected))
        edit.addWidget(button("▲", lambda: self.move_selected(-1), "move up"))
        edit.addWidget(button("▼", lambda: self.move_selected(1), "move down"))
        transport = QtWidgets.QHBoxLayout()
        transport.addWidget(button("◀◀", self.previous, "previous track"))
        self.play_button = button("▶ Play", self.play_pause)
        transport.addWidget(self.play_button)
        transport.addWidget(button("▶▶", self.next, "next track"))
        self.repeat_button = button(_REPEAT_LABEL[self.repeat], self.cycle_repeat)
        transport.addWidget(self.repeat_button)

        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(QtWidgets.QLabel("<b>Playlist</b> (drop music files or folders here)"))
        layout.addWidget(self.view, 1)
        layout.addLayout(edit)
        layout.addLayout(transport)
        layout.addWidget(self.now_playing)
        self.model.restore(settings)

    # -- the pipeline's player ----------------------------------------------------------------

    def attach(self, player: Player, mirrors: bool) -> None:
        """Drive ``player`` (``mirrors``: it was built from this playlist, row i = track i)."""
        self.player, self.mirrors = player, mirrors
        player.set_repeat(self.repeat)
        self.refresh()

    def detach(self) -> None:
        self.player = None
        self.model.set_playing(None, 0.0)
        self.play_button.setText("▶ Play")
        self.now_playing.setText("Stopped")

    def refresh(self) -> None:
        """Show the player's state (call on a timer; reads, never waits)."""
        if self.player is None:
            return
        status = self.player.status()
        if self.mirrors:
            for skipped in status.skipped:
                self.model.mark_problem(skipped.index, skipped.reason)
            self.model.set_playing(status.track, status.position_s)
        self.play_button.setText("▶ Play" if status.paused else "❚❚ Pause")
        if status.track_name is None:
            text = "Finished the playlist" if status.finished else "Starting…"
        else:
            text = (f"{'Paused' if status.paused else 'Playing'}: {status.track_name}  "
                    f"{format_time(status.position_s)}")
            if not self.mirrors:
                text += "\n(the playlist is empty: bundled generated music)"
        if status.skipped:
            text += f"\nSkipped: {status.skipped[-1].name}: {status.skipped[-1].reason}"
        self.now_playing.setText(text)

    # -- editing --------------------------------------------------------------------------------

    def add_paths(self, paths: list[str | Path]) -> None:
        """Add files and folders; a mirroring player gets the new tracks at once."""
        new = self.model.add(paths)
        self.model.save(self.settings)
        if not new or self.player is None:
            return
        if not self.mirrors:
            self.restart_requested.emit()
            return
        first = len(self.player.tracks)
        finished = self.player.status().finished
        self.player.set_tracks([*self.player.tracks, *(Track.from_file(e.path) for e in new)])
        if finished:
            self.player.select(first)

    def remove_selected(self) -> None:
        rows = [i.row() for i in self.view.selectionModel().selectedRows()]
        if rows:
            self.model.remove(rows)
            gone = set(rows)
            self._structure_changed(lambda tracks: [t for i, t in enumerate(tracks)
                                                    if i not in gone])

    def move_selected(self, offset: int) -> None:
        rows = [i.row() for i in self.view.selectionModel().selectedRows()]
        if len(rows) != 1:
            return
        target = self.model.move(rows[0], offset)
        if target != rows[0]:
            self.view.setCurrentIndex(self.model.index(target))

            def moved(tracks: list[Track]) -> list[Track]:
                tracks.insert(target, tracks.pop(rows[0]))
                return tracks

            self._structure_changed(moved)

    def _structure_changed(self, edit: Callable[[list[Track]], list[Track]]) -> None:
        """Save the list and give a mirroring player the same ``edit`` of its tracks."""
        self.model.save(self.settings)
        if self.player is None:
            return
        tracks = edit(list(self.player.tracks)) if self.mirrors else []
        if tracks:
            self.player.set_tracks(tracks)
        else:
            self.restart_requested.emit()

    def _add_files_dialog(self) -> None:
        files, _ = QtWidgets.QFileDialog.getOpenFileNames(
            self, "Add music files", "",
            "Music (*.wav *.flac *.ogg *.opus *.mp3 *.aif *.aiff);;All files (*)")
        self.add_paths(files)

    def _add_folder_dialog(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Add a folder of music")
        if folder:
            self.add_paths([folder])

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.add_paths(paths)
            event.acceptProposedAction()

    # -- transport --------------------------------------------------------------------------------

    def play_pause(self) -> None:
        if self.player is None:
            self.play_requested.emit()
        elif self.player.status().paused:
            self.player.resume()
        else:
            self.player.pause()
        self.refresh()

    def play_row(self, row: int) -> None:
        if self.player is not None and self.mirrors and 0 <= row < len(self.player.tracks):
            self.player.resume()
            self.player.select(row)
        elif self.player is None:
            self.play_requested.emit()

    def next(self) -> None:
        if self.player is not None:
            self.player.next()

    def previous(self) -> None:
        if self.player is not None:
            self.player.previous()

    def cycle_repeat(self) -> None:
        self.set_repeat(_NEXT_REPEAT[self.repeat])

    def set_repeat(self, repeat: Repeat) -> None:
        self.repeat = repeat
        self.repeat_button.setText(_REPEAT_LABEL[repeat])
        self.settings.setValue(REPEAT_KEY, repeat.value)
        if self.player is not None:
            self.player.set_repeat(repeat)
