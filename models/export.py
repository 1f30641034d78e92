"""ONNX export of a trained network with its feature standardisation inside the graph.

A model file is ``NAME.onnx`` plus its JSON model card ``NAME.json`` beside it.

- ONNX input ``base``: float32 (B, C, 12, 128), the raw features the model reads
  (``models.inputs``: 9 base features from ``features.window_features``, 17 channel features
  from ``sensing.channel``, or both), in the order the card's ``input.channels`` lists; B is
  dynamic.
- ONNX output ``poses``: float32 (B, 12, 63), 12 frames of 21 joints x (x, y, z),
  normalised per frame (hips origin, hip-spine length 1).
- The card is the caller's dict plus what export knows: format version, input/output
  description, the ONNX file's SHA-256 (``inference`` refuses a card beside another file),
  method and network config (when the network carries them), the feature statistics (also
  baked into the graph), git revision of the code, torch version, creation time and the
  measured torch/onnxruntime parity. Callers add ``data`` and ``metrics``.

Parity: the exported graph is run by onnxruntime on random base features drawn from the
statistics' own distribution, for batch sizes 1 and 3, and must match torch within
``PARITY_TOLERANCE`` (absolute, normalised pose units).
"""

from __future__ import annotations

import json
import subprocess
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from bgm2pose.models.baselines import METHODS
from bgm2pose.models.graph import PoseGraph
from bgm2pose.models.inference import (
    CARD_FORMAT, INPUT_NAME, OUTPUT_NAME, OUTPUT_SHAPE, card_path, input_shape, onnx_digest,
)
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.features import FRAMES_PER_WINDOW, N_MELS, FeatureStats

PARITY_TOLERANCE = 1e-4
_MAX_BATCH = 4096


class ExportError(UserError, RuntimeError):
    """A model that cannot be exported, or whose export does not reproduce torch."""


def git_revision() -> str | None:
    """The commit of the code (with "-dirty" when the tree has changes), or None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}-dirty" if dirty else rev


def _sample_base(stats: FeatureStats, batch: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((batch, len(stats.channels), FRAMES_PER_WINDOW, N_MELS)).astype(np.float32)
    return z * stats.std[:, None, None] + stats.mean[:, None, None]


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def parity(graph: nn.Module, path: Path, stats: FeatureStats) -> float:
    """Max abs difference between torch and onnxruntime over batches of 1 and 3."""
    session = _session(path)
    worst = 0.0
    for batch in (1, 3):
        base = _sample_base(stats, batch, seed=batch)
        with torch.no_grad():
            expected = graph(torch.from_numpy(base)).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: base})[0]
        if got.shape != expected.shape:
            raise ExportError(f"the exported graph returns {got.shape} for a batch of {batch}, torch "
                              f"{expected.shape}; the network does not support a dynamic batch.")
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def _method(network: nn.Module) -> str | None:
    name = type(network).__name__.lower()
    return name if name in METHODS else None


def export_onnx(model: nn.Module, stats: FeatureStats, path: Path, card: dict) -> dict:
    """Write ``path`` (ONNX, input ``base``, output ``poses``) and its card beside it; check
    torch/onnxruntime parity; return the card as written."""
    path = Path(path)
    if path.suffix != ".onnx":
        raise ExportError(f"model path {path} must end in .onnx; the card is written beside it as .json.")
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    graph = PoseGraph(model, stats).cpu().eval()
    try:
        example = torch.from_numpy(_sample_base(stats, 2, seed=0))
        batch = torch.export.Dim("batch", min=1, max=_MAX_BATCH)
        with warnings.catch_warnings():
            # The exporter warns about its own internals (deprecations, axis naming).
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph, (example,), str(path), dynamo=True, external_data=False,
                dynamic_shapes={"base": {0: batch}}, input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], verbose=False,
            )
        difference = parity(graph, path, stats)
    finally:
        model.train(was_training)
    if not difference < PARITY_TOLERANCE:
        path.unlink(missing_ok=True)
        raise ExportError(f"the exported model differs from torch by {difference:.2e} (limit "
                          f"{PARITY_TOLERANCE:g}); the network uses an operator onnxruntime "
                          "computes differently, so it was not written.")
    config = getattr(model, "config", None)
    written = {
        **card,
        "format": CARD_FORMAT,
        "input": {"name": INPUT_NAME, "shape": input_shape(stats.channels), "channels": list(stats.channels),
                  "dtype": "float32"},
        "output": {"name": OUTPUT_NAME, "shape": OUTPUT_SHAPE, "dtype": "float32",
                   "units": "normalised per frame: hips origin, hip-spine length 1"},
        "onnx_sha256": onnx_digest(path),
        "feature_stats": stats.to_dict(),
        "parity_max_abs": difference,
        "git_revision": git_revision(),
        "torch_version": torch.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    written.setdefault("method", _method(model))
    if config is not None and hasattr(config, "to_dict"):
        written.setdefault("preset", config.name)
        written.setdefault("config", config.to_dict())
    card_path(path).write_text(json.dumps(written, indent=2) + "\n")
    return written
