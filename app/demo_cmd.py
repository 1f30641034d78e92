"""``bgm2pose demo``: the app on the virtual rig, with generated music and the shipped model:
a virtual person moves between the speakers and the skeleton follows.

Honest by default: the subject and the music are ones the model did not train on, read from
its card (``LiveEngine``), and the live MAE is shown beside the mean-pose predictor's on the
same windows. A subject or track given that the model trained on is said in one sentence.

The demo keeps its settings in a temporary file, so the operator's saved playlist and device
choice are neither used nor changed. Without a display (no DISPLAY / WAYLAND_DISPLAY) it
says so, runs the same window and pipeline under a private Xvfb for ``--seconds``, prints the
live figures as it goes and writes a PNG of the window to show what it would have displayed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bgm2pose.app.app_cmd import close_qt_application, qt_application
from bgm2pose.app.xvfb import has_display, virtual_display
from bgm2pose.models.inference import demo_model_path
from bgm2pose.sensing.errors import UserError

STARTUP_TIMEOUT_S = 180.0
PRINT_EVERY_S = 3.0
WINDOW_SIZE = (1600, 900)


class DemoError(UserError, RuntimeError):
    """The demo cannot run (no model, the pipeline did not start)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path,
                   help="exported model NAME.onnx (default: the shipped demo model)")
    p.add_argument("--seconds", type=float, default=15.0,
                   help="without a display: how long to run headless (default: %(default)s)")
    p.add_argument("--screenshot", type=Path, default=Path("bgm2pose-demo.png"),
                   help="without a display: PNG of the window (default: %(default)s)")
    p.add_argument("--subject", help="virtual subject S1..S8 (default: the first the model "
                                     "did not train on, from its card)")
    p.add_argument("--generated", nargs="+", default=[], metavar="NAME",
                   help="generated tracks to play, as <genre>-<seed>, e.g. jazz-0003 (default: "
                        "an ambient and a jazz track the model did not train on)")
    p.add_argument("--seed", type=int, default=0,
                   help="motion and noise seed (default: %(default)s)")


def _model(args: argparse.Namespace) -> Path:
    if args.model is not None:
        return args.model
    path = demo_model_path()
    if not path.is_file():
        raise DemoError(f"no trained demo model is shipped in this build yet ({path} is "
                        "missing); pass one with --model NAME.onnx (see 'bgm2pose export')")
    return path


def _window(args: argparse.Namespace, model: Path, folder: str):
    from PyQt6.QtCore import QSettings

    from bgm2pose.app.live_engine import LiveOptions
    from bgm2pose.app.main_window import MainWindow

    settings = QSettings(str(Path(folder) / "demo.ini"), QSettings.Format.IniFormat)
    window = MainWindow(LiveOptions(model=model, subject=args.subject, seed=args.seed,
                                    generated=list(args.generated)), settings)
    window.setWindowTitle("bgm2pose demo — virtual rig")
    window.resize(*WINDOW_SIZE)
    return window


def run(args: argparse.Namespace) -> int:
    model = _model(args)
    with tempfile.TemporaryDirectory(prefix="bgm2pose-demo-") as folder:
        if has_display():
            app = qt_application()
            window = _window(args, model, folder)
            window.show()
            window.start()
            return app.exec()
        print("demo: no display (DISPLAY and WAYLAND_DISPLAY are unset), so no window opens; "
              f"running the same pipeline headless for {args.seconds:g} s and drawing the "
              f"window under Xvfb into {args.screenshot}")
        with virtual_display(*WINDOW_SIZE):
            try:
                return _headless(args, model, folder)
            finally:
                close_qt_application()


def _headless(args: argparse.Namespace, model: Path, folder: str) -> int:
    from PyQt6 import QtCore, QtWidgets

    from bgm2pose.app.main_window import status_text

    app = qt_application()
    window = _window(args, model, folder)
    window.show()
    window.start()
    try:
        if not window.wait_started(STARTUP_TIMEOUT_S):
            raise DemoError(f"the live pipeline did not start: {window.live_label.text()}")
        engine = window.engine
        print(f"demo: live on the {engine.backend.name} with {model.name}, "
              f"{engine.describe()}; the skeleton follows the virtual person")
        for warning in engine.warnings:
            print(f"demo: warning: {warning}")
        t0 = last = time.monotonic()
        while (now := time.monotonic()) - t0 < args.seconds:
            app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 20)
            time.sleep(0.01)
            if now - last >= PRINT_EVERY_S:
                last = now
                _, stats = window.engine.feed.latest()
                if stats is not None:
                    print(f"demo: {now - t0:4.0f} s  {status_text(stats)}", flush=True)
        _, stats = window.engine.feed.latest()
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        if not window.screenshot().save(str(args.screenshot)):
            raise DemoError(f"cannot write the screenshot {args.screenshot}; choose a "
                            "writable path with --screenshot")
    finally:
        window.close()
        QtWidgets.QApplication.processEvents()
    if stats is None:
        raise DemoError("the pipeline published no poses; run 'bgm2pose run' to see why")
    print(f"demo: {stats.windows} windows estimated, {stats.windows_per_s:.1f} windows/s, "
          f"inference {stats.inference_ms:.1f} ms, end-to-end {stats.e2e_ms:.0f} ms"
          + (f", {stats.mae_text()}, PCKh@0.5 {100 * stats.pckh:.1f}%"
             if stats.mae is not None else ""))
    print(f"demo: screenshot written to {args.screenshot}")
    return 0
