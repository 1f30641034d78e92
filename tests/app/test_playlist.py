"""The playlist: files checked when added, bad ones marked with the reason and skipped by
the real player, order and removal, folders and drag and drop, saved and restored."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import soundfile as sf
from PyQt6 import QtCore, QtGui

from bgm2pose.app.playlist_panel import PlaylistPanel
from bgm2pose.sensing.player import Player, Repeat, Track


def _wav(path, seconds=0.5, hz=440.0, rate=48_000):
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * hz * t), rate)
    return path


def _play(player: Player, seconds: float) -> None:
    block = np.zeros((2400, 2), np.float32)
    for _ in range(int(seconds * 48_000 / 2400)):
        player.callback_fill(block)


def test_bad_file_shows_its_reason_and_playback_continues_with_the_next(qtbot, settings,
                                                                         tmp_path):
    good1, good2 = _wav(tmp_path / "one.wav"), _wav(tmp_path / "two.wav", hz=660)
    later_bad = _wav(tmp_path / "later.wav")
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("these are not samples")
    panel = PlaylistPanel(settings)
    qtbot.addWidget(panel)
    panel.add_paths([good1, not_audio, later_bad, good2])

    model = panel.model
    assert model.entries[1].problem and "could not be decoded" in model.entries[1].problem
    assert "notes.wav" in model.row_text(1) and model.entries[1].problem in model.row_text(1)
    assert model.entries[0].problem is None and abs(model.entries[0].duration_s - 0.5) < 1e-6
    # A file that was fine when added and broke before its turn: the player finds out.
    later_bad.write_bytes(b"\0" * 10)

    player = Player([Track.from_file(p) for p in model.paths()])
    panel.attach(player, mirrors=True)
    player.pump()  # decode in this thread: the whole (short) playlist fits the FIFO
    _play(player, 0.6)  # through the first track
    heard = []
    for _ in range(20):
        _play(player, 0.1)
        panel.refresh()
        heard.append(model.current)
    assert 3 in heard, f"the player never reached the next good track: {heard}"
    assert model.entries[2].problem and "later.wav" in model.entries[2].problem
    assert "✗" in model.row_text(2)
    assert "Skipped" in panel.now_playing.text()


def test_reorder_remove_folder_and_drop(qtbot, settings, tmp_path):
    music = tmp_path / "music"
    (music / "sub").mkdir(parents=True)
    a, b = _wav(music / "a.wav"), _wav(music / "sub" / "b.flac")
    (music / "cover.jpg").write_bytes(b"jpeg")
    c = _wav(tmp_path / "c.wav")
    panel = PlaylistPanel(settings)
    qtbot.addWidget(panel)
    panel.add_paths([music])
    assert panel.model.paths() == [a, b]

    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(c))])
    drop = QtGui.QDropEvent(QtCore.QPointF(5, 5), QtCore.Qt.DropAction.CopyAction, mime,
                            QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier)
    panel.dropEvent(drop)
    assert panel.model.paths() == [a, b, c]

    panel.view.setCurrentIndex(panel.model.index(2))
    panel.move_selected(-1)
    panel.move_selected(-1)
    assert panel.model.paths() == [c, a, b]
    panel.view.setCurrentIndex(panel.model.index(1))
    panel.remove_selected()
    assert panel.model.paths() == [c, b]


def test_playlist_and_repeat_are_restored_in_the_next_session(qtbot, settings, tmp_path):
    files = [_wav(tmp_path / f"{name}.wav") for name in ("x", "y")]
    panel = PlaylistPanel(settings)
    qtbot.addWidget(panel)
    panel.add_paths(files)
    panel.set_repeat(Repeat.ONE)
    settings.sync()

    again = PlaylistPanel(settings)
    qtbot.addWidget(again)
    assert again.model.paths() == files
    assert again.repeat is Repeat.ONE
    player = Player([Track.from_file(p) for p in files])
    again.attach(player, mirrors=True)
    assert player.repeat is Repeat.ONE


def test_removing_and_moving_tracks_while_live_does_not_restart_the_engine(
        qtbot, settings, tmp_path, standin_model):
    from bgm2pose.app.live_engine import LiveOptions
    from bgm2pose.app.main_window import MainWindow
    from bgm2pose.sensing.ring import Mark

    files = [_wav(tmp_path / f"{name}.wav", seconds=1.5, hz=hz)
             for name, hz in (("a", 330.0), ("b", 440.0), ("c", 550.0), ("d", 660.0))]
    window = MainWindow(LiveOptions(model=standin_model, realtime=True), settings)
    qtbot.addWidget(window)
    window.playlist.add_paths(files)
    window.playlist.set_repeat(Repeat.OFF)
    restarts = []
    window.playlist.restart_requested.connect(lambda: restarts.append(True))
    window.start()
    assert window.wait_started(120), window.live_label.text()
    engine = window.engine
    player = engine.player
    qtbot.waitUntil(lambda: player.status().track == 0, timeout=10_000)
    # The 15 s FIFO has queued the whole playlist: b, c and d get cut and queued anew.
    panel = window.playlist
    panel.view.setCurrentIndex(panel.model.index(1))
    panel.remove_selected()  # b
    panel.view.setCurrentIndex(panel.model.index(2))
    panel.move_selected(-1)  # d before c
    assert [p.name for p in panel.model.paths()] == ["a.wav", "d.wav", "c.wav"]
    qtbot.waitUntil(lambda: player.status().finished, timeout=20_000)
    assert not restarts and window.engine is engine and engine.running

    ring = player.reference
    starts = [e.index for e in ring.events.marks_between(-1, ring.end + 1)
              if e.kind is Mark.TRACK_CHANGE]
    assert np.diff(starts).tolist() == [72_000] * 3  # a, d, c back to back, then the end
    for start, played in zip(starts, (files[0], files[3], files[2])):
        expected = sf.read(played, dtype="float32")[0]
        np.testing.assert_allclose(ring.read(start, 72_000)[0], expected, atol=1e-6)
    assert player.status().underflows == 0
    window.close()


def test_each_kind_of_bad_file_is_listed_with_its_own_reason(bad_music):
    # In a process of its own: root reads a chmod 000 file, so the unreadable one is added
    # by user nobody (bad_music.as_user); the model needs no QApplication.
    add = ("import sys; from bgm2pose.app.playlist_model import PlaylistModel; "
           "m = PlaylistModel(); m.add([sys.argv[1]]); "
           "print(len(m.entries)); print(m.row_text(0) if m.entries else '')")
    r = subprocess.run([*bad_music.as_user, sys.executable, "-c", add, bad_music.path],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, **bad_music.env))
    assert r.returncode == 0, r.stderr
    count, row = r.stdout.splitlines()
    assert count == "1", "the file vanished from the playlist without a word"
    assert row.startswith("✗ ") and bad_music.phrase in row, row
