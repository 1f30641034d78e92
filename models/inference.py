"""Pose estimation with an exported model (``NAME.onnx`` + ``NAME.json``) in onnxruntime.

``PoseModel.predict`` takes raw base features, (B, 9, 12, 128) or one window (9, 12, 128)
float32 from ``features.window_features``, and returns poses (B, 12, 21, 3) or (12, 21, 3),
normalised per frame (hips origin, hip-spine length 1). The feature standardisation is
inside the graph (``export``), so nothing else is needed at run time. torch is not imported.

The shipped demo model lives at ``models/pretrained/demo.onnx`` (package data).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bgm2pose.models.skeleton import N_JOINTS
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.features import CHANNELS, FRAMES_PER_WINDOW, N_MELS

INPUT_NAME = "base"
OUTPUT_NAME = "poses"
_WINDOW = (len(CHANNELS), FRAMES_PER_WINDOW, N_MELS)
_HOW_TO_MAKE = ("train one with 'bgm2pose train DATA --out DIR' and export it with "
                "'bgm2pose export DIR/checkpoint.pt MODEL.onnx'")


class ModelError(UserError, ValueError):
    """A model file that cannot be opened, or input it cannot take."""


def demo_model_path() -> Path:
    """The demo model shipped with the package (it may be absent in a development tree)."""
    return Path(__file__).resolve().parent / "pretrained" / "demo.onnx"


class PoseModel:
    """An onnxruntime session on an exported model, with its model card."""

    def __init__(self, path: str | Path, threads: int = 1):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file {self.path} does not exist; {_HOW_TO_MAKE}.")
        card = self.path.with_suffix(".json")
        if not card.is_file():
            raise ModelError(f"model {self.path} has no model card {card.name} beside it; "
                             "re-export it with 'bgm2pose export'.")
        try:
            self.card: dict = json.loads(card.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"model card {card} is not valid JSON ({exc}); re-export the model.") from None
        if threads < 1:
            raise ModelError(f"threads is {threads}; onnxruntime needs at least 1.")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise ModelError(f"onnxruntime cannot load {self.path} ({type(exc).__name__}); "
                             f"the file is not an exported model: {_HOW_TO_MAKE}.") from None
        names = ([i.name for i in self._session.get_inputs()], [o.name for o in self._session.get_outputs()])
        if names != ([INPUT_NAME], [OUTPUT_NAME]):
            raise ModelError(f"model {self.path} has inputs/outputs {names}, not ['{INPUT_NAME}'] -> "
                             f"['{OUTPUT_NAME}']; export it with 'bgm2pose export'.")

    def predict(self, base: np.ndarray) -> np.ndarray:
        """Base features (B, 9, 12, 128) or (9, 12, 128) -> poses (B, 12, 21, 3) or (12, 21, 3)."""
        base = np.asarray(base)
        single = base.ndim == 3
        if single:
            base = base[None]
        if base.ndim != 4 or base.shape[1:] != _WINDOW or base.shape[0] == 0:
            raise ModelError(f"base features have shape {base.shape}; expected (B, 9, 12, 128) or "
                             "(9, 12, 128) from features.window_features.")
        feed = np.ascontiguousarray(base, dtype=np.float32)
        poses = self._session.run([OUTPUT_NAME], {INPUT_NAME: feed})[0]
        poses = poses.reshape(len(feed), FRAMES_PER_WINDOW, N_JOINTS, 3)
        return poses[0] if single else poses
