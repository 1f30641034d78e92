"""Frames per second the live 3D view draws at 1280x720 while the live pipeline runs.

Run: ``.venv/bin/python benchmarks/gui.py [--seconds 10] [--model NAME.onnx]``. The main
window runs on the virtual rig in real time (audio rendering, features, inference, the
window's timers, spectrograms and meters) inside a private Xvfb, so the GL view is drawn by
Mesa's software rasteriser (llvmpipe) on the CPU cores the pipeline also uses. The 3D view is
fixed at 1280x720 and asked to redraw as often as the event loop can; the figure is the
paintGL calls per second over the measured span (after a warm-up). A display's vsync would
cap it at the refresh rate; Xvfb has none.

Without ``--model`` it uses the shipped demo model, or, when none is shipped, an untrained
network of the "cpu" preset exported to a temporary folder (inference costs the same).
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from untrained import untrained_model  # noqa: E402

GOAL_FPS = 30.0
VIEW_SIZE = (1280, 720)
WARM_UP_S = 2.0


def measure(model: Path, seconds: float) -> tuple[float, float, float]:
    """(view frames per second, pipeline windows per second, seconds measured)."""
    from PyQt6 import QtCore, QtWidgets
    from PyQt6.QtCore import QSettings

    from bgm2pose.app.app_cmd import qt_application
    from bgm2pose.app.live_engine import LiveOptions
    from bgm2pose.app.main_window import MainWindow

    app = qt_application()
    with tempfile.TemporaryDirectory() as folder:
        settings = QSettings(str(Path(folder) / "bench.ini"), QSettings.Format.IniFormat)
        window = MainWindow(LiveOptions(model=model), settings)
        window.view_panel.container.setFixedSize(*VIEW_SIZE)
        window.resize(1900, 1000)
        window.show()
        window.start()
        try:
            if not window.wait_started(180):
                raise SystemExit(f"the live pipeline did not start: {window.live_label.text()}")
            redraw = QtCore.QTimer()
            redraw.timeout.connect(window.view.update)
            redraw.start(0)

            def run_for(span: float) -> None:
                end = time.monotonic() + span
                while time.monotonic() < end:
                    app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 5)

            run_for(WARM_UP_S)
            frames0, windows0, t0 = window.view.frames_drawn, _windows(window), time.monotonic()
            run_for(seconds)
            span = time.monotonic() - t0
            fps = (window.view.frames_drawn - frames0) / span
            wps = (_windows(window) - windows0) / span
            redraw.stop()
            size = (window.view.width(), window.view.height())
            assert size == VIEW_SIZE, f"the view is {size}, not {VIEW_SIZE}"
        finally:
            window.close()
            QtWidgets.QApplication.processEvents()
    return fps, wps, span


def _windows(window) -> int:
    _, stats = window.engine.feed.latest()
    return 0 if stats is None else stats.windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--model", type=Path)
    args = parser.parse_args()

    from bgm2pose.app.app_cmd import close_qt_application
    from bgm2pose.app.xvfb import virtual_display
    from bgm2pose.models.inference import demo_model_path

    with tempfile.TemporaryDirectory() as folder:
        model = args.model or (demo_model_path() if demo_model_path().is_file()
                               else untrained_model(Path(folder)))
        with virtual_display(1920, 1080):
            try:
                fps, wps, span = measure(model, args.seconds)
            finally:
                close_qt_application()
    print(f"model: {model.name}; measured {span:.1f} s after a {WARM_UP_S:.0f} s warm-up")
    print(f"live pipeline meanwhile: {wps:.1f} windows/s (real time: 20 at a 50 ms hop)")
    print(f"3D view frames per second at {VIEW_SIZE[0]}x{VIEW_SIZE[1]} (Xvfb, software GL, "
          f"live pipeline running): {fps:.1f} (goal >= {GOAL_FPS:.0f} fps)")


if __name__ == "__main__":
    main()
