"""``bgm2pose app``: the desktop app (playlist, devices, calibration, live 3D skeleton).

Music files given on the command line replace the saved playlist. The device choice and the
playlist are remembered in the app settings (``app.settings``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bgm2pose.app.xvfb import DisplayError, has_display


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", type=Path,
                   help="music files or folders to play (replace the saved playlist)")
    p.add_argument("--model", type=Path,
                   help="exported model NAME.onnx (default: the shipped demo model)")
    p.add_argument("--subject", help="virtual rig: subject S1..S8 (default: the first the "
                                     "model did not train on, from its card)")
    p.add_argument("--seed", type=int, default=0,
                   help="virtual rig: motion and noise seed (default: %(default)s)")
    p.add_argument("--start", action="store_true", help="go live as soon as the window opens")


def qt_application():
    """The QApplication (created once), with the GL views sharing one context."""
    from PyQt6 import QtWidgets

    from bgm2pose.app.skeleton_view import share_gl_contexts

    app = QtWidgets.QApplication.instance()
    if app is None:
        share_gl_contexts()
        app = QtWidgets.QApplication(sys.argv[:1])
        app.setOrganizationName("bgm2pose")
        app.setApplicationName("bgm2pose")
    return app


def close_qt_application() -> None:
    """Delete the QApplication, closing its display connection (before a private X server
    stops: Qt treats a vanished server as a fatal error)."""
    from PyQt6 import QtWidgets, sip

    app = QtWidgets.QApplication.instance()
    if app is not None:
        app.closeAllWindows()
        app.processEvents()
        sip.delete(app)


def run(args: argparse.Namespace) -> int:
    if not has_display():
        raise DisplayError("there is no display (DISPLAY and WAYLAND_DISPLAY are unset), so "
                           "the app cannot open a window; run it on a desktop, or try "
                           "'bgm2pose demo', which runs headless")
    app = qt_application()
    from bgm2pose.app.live_engine import LiveOptions
    from bgm2pose.app.main_window import MainWindow
    from bgm2pose.app.settings import app_settings

    settings = app_settings()
    window = MainWindow(LiveOptions(model=args.model, subject=args.subject, seed=args.seed),
                        settings)
    if args.files:
        window.playlist.model.remove(list(range(window.playlist.model.rowCount())))
        window.playlist.add_paths(args.files)
    window.show()
    if args.start:
        window.start()
    return app.exec()
