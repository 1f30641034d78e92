"""PNG figures of the benchmark report (PCKh curves, skeletons, learning curves), drawn
with pyqtgraph's image exporter.

matplotlib is not a dependency; pyqtgraph (already needed by the app) renders off screen
with ``QT_QPA_PLATFORM=offscreen``, which is set here when no platform was chosen, so the
figures work on a headless machine. Skeletons are drawn as two orthographic views of a
normalised pose frame: front (x, y) and side (z, y), y up.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bgm2pose.sensing.skeleton import BONES, as_joints

_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def _pg():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import pyqtgraph as pg
    from pyqtgraph.exporters import ImageExporter
    from PyQt6.QtWidgets import QApplication

    if QApplication.instance() is None:
        _pg.app = QApplication([])  # kept alive for the process: Qt needs exactly one
    pg.setConfigOptions(antialias=True, background="w", foreground="k")
    return pg, ImageExporter


def _export(widget, path: Path, width: int, height: int) -> None:
    pg, ImageExporter = _pg()
    widget.resize(width, height)
    # Lay the widget out at its final size before grabbing the scene.
    widget.show()
    pg.QtWidgets.QApplication.processEvents()
    exporter = ImageExporter(widget.scene())
    exporter.parameters()["width"] = width
    path.parent.mkdir(parents=True, exist_ok=True)
    exporter.export(str(path))


def pck_curves(curves: dict[str, list[float]], thresholds: list[float], path: Path, title: str) -> None:
    """One line per predictor: PCKh against the threshold (x head length)."""
    pg, _ = _pg()
    plot = pg.PlotWidget(title=title)
    plot.addLegend(offset=(10, -10))
    plot.setLabel("bottom", "threshold (x head length)")
    plot.setLabel("left", "PCKh")
    plot.setYRange(0, 1)
    plot.showGrid(x=True, y=True, alpha=0.3)
    for i, (label, values) in enumerate(curves.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        plot.plot(thresholds, values, pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=6,
                  symbolBrush=colour, name=label)
    _export(plot, path, 900, 560)


def skeletons(examples: list[tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> None:
    """Predicted (red) and true (black) skeletons, one column per (pred, truth) pose pair,
    front view on top and side view below."""
    pg, _ = _pg()
    layout = pg.GraphicsLayoutWidget()
    layout.addLabel(title, colspan=len(examples))
    for view, (h, name) in enumerate(((0, "front (x, y)"), (2, "side (z, y)"))):
        layout.nextRow()
        for pred, truth in examples:
            plot = layout.addPlot(title=name)
            plot.setAspectLocked(True)
            plot.hideAxis("bottom")
            plot.hideAxis("left")
            for pose, colour in ((truth, (0, 0, 0)), (pred, (214, 39, 40))):
                j = as_joints(np.asarray(pose))
                segments = np.array([[j[a, [h, 1]], j[b, [h, 1]]] for a, b in BONES]).reshape(-1, 2)
                plot.plot(segments[:, 0], segments[:, 1], connect="pairs", pen=pg.mkPen(colour, width=3))
    _export(layout, path, 300 * len(examples), 760)


def learning_curves(runs: dict[str, dict], path: Path, title: str, columns: int = 3) -> None:
    """One panel per run: the train pose loss (blue) and the validation pose loss (orange) per
    epoch, and a dashed line at the best epoch (the weights kept end there). ``runs`` maps
    a label to a result's ``training`` record."""
    pg, _ = _pg()
    layout = pg.GraphicsLayoutWidget()
    layout.addLabel(title, colspan=columns)
    for i, (label, training) in enumerate(runs.items()):
        if i % columns == 0:
            layout.nextRow()
        plot = layout.addPlot(title=f"{label}: {training['epochs_run']} epochs, {training['stop']}")
        plot.setLabel("bottom", "epoch")
        plot.showGrid(x=True, y=True, alpha=0.3)
        epochs = [h["epoch"] for h in training["history"]]
        for term, colour in (("pose", _COLOURS[0]), ("val_pose", _COLOURS[1])):
            values = [h[term] for h in training["history"] if term in h]
            if values:
                plot.plot(epochs[: len(values)], values, pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=4,
                          symbolBrush=colour)
        dashed = pg.mkPen((90, 90, 90), style=pg.QtCore.Qt.PenStyle.DashLine)
        plot.addItem(pg.InfiniteLine(training["best_epoch"], angle=90, pen=dashed))
    rows = -(-len(runs) // columns)
    _export(layout, path, 440 * columns, 60 + 260 * rows)
