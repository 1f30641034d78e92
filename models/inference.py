"""Pose estimation with an exported model (``NAME.onnx`` + ``NAME.json``) in onnxruntime.

``PoseModel.predict`` takes the raw features the model reads (``PoseModel.inputs``, see
``models.inputs``: base features from ``features.window_features``, channel features from
``sensing.channel``, or both), (B, C, 12, 128) or one window (C, 12, 128) float32, and
returns poses (B, 12, 21, 3) or (12, 21, 3),
normalised per frame (hips origin, hip-spine length 1). The feature standardisation is
inside the graph (``export``), so nothing else is needed at run time. torch is not imported.

A model is checked when it is opened, so a wrong file is one sentence then, not a traceback
or a wrong answer later: its card's input channels must be an input this version reads, its
ONNX input and output the project's for them (``input_shape`` -> ``OUTPUT_SHAPE``), and its card (``NAME.json``, written by ``export``) must be of a format this
version reads, record that same interface, belong to this very ONNX file (format 2 records
the file's SHA-256; format 1 predates that) and hold a mean pose of 21 x 3 numbers if any.

The shipped demo model lives at ``models/pretrained/demo.onnx`` (package data).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bgm2pose.sensing.skeleton import N_JOINTS
from bgm2pose.sensing.errors import UserError, require_file
from bgm2pose.models.inputs import INPUTS, InputsError, input_channels, inputs_of
from bgm2pose.sensing.features import CHANNELS, FRAMES_PER_WINDOW, N_MELS

CARD_FORMAT = 2
CARD_FORMATS = (1, 2)  # the card formats this version reads
INPUT_NAME = "base"
OUTPUT_NAME = "poses"
OUTPUT_SHAPE = ["B", FRAMES_PER_WINDOW, 3 * N_JOINTS]
_HOW_TO_MAKE = ("train one with 'bgm2pose train DATA --out DIR' and export it with "
                "'bgm2pose export DIR/checkpoint.pt MODEL.onnx'")
_REEXPORT = "re-export the model with 'bgm2pose export'"


class ModelError(UserError, ValueError):
    """A model file that cannot be opened, or input it cannot take."""


def demo_model_path() -> Path:
    """The demo model shipped with the package (it may be absent in a development tree)."""
    return Path(__file__).resolve().parent / "pretrained" / "demo.onnx"


def card_path(onnx_path: str | Path) -> Path:
    """The JSON model card beside an ONNX file."""
    return Path(onnx_path).with_suffix(".json")


def onnx_digest(onnx_path: str | Path) -> str:
    """SHA-256 (hex) of an ONNX file, as a format-2 card records it."""
    with open(onnx_path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def input_shape(channels) -> list:
    """The ONNX input shape of a model reading ``channels``, as cards record it; "B" is the batch."""
    return ["B", len(channels), FRAMES_PER_WINDOW, N_MELS]


def _check_interface(session: ort.InferenceSession, path: Path) -> None:
    """The model must take and give what ``predict`` feeds and reshapes: every dimension
    but the batch fixed to the project's, the input's channels those of an input the project
    has (the card then says which)."""
    for kind, nodes, name, shapes in (
            ("input", session.get_inputs(), INPUT_NAME, [input_shape(input_channels(i)) for i in INPUTS]),
            ("output", session.get_outputs(), OUTPUT_NAME, [OUTPUT_SHAPE])):
        found = [(n.name, n.type, list(n.shape[1:])) for n in nodes]
        if not any(found == [(name, "tensor(float)", shape[1:])] for shape in shapes):
            shape = " or ".join(map(str, shapes))
            described = ", ".join(f"{n.name!r} {n.type} {n.shape}" for n in nodes) or "none"
            raise ModelError(f"model {path} has the {kind} {described}, not {name!r} float32 of "
                             f"shape {shape}; it is not a model of this project: {_HOW_TO_MAKE}.")


def _read_card(path: Path) -> tuple[dict, tuple[str, ...], np.ndarray | None]:
    """The card beside ``path``, checked against it (module docstring), the input channels
    it records and its mean pose as (63,) float32 or None."""
    card_file = card_path(path)
    where = f"model card {card_file}"
    if not card_file.is_file():
        raise ModelError(f"model {path} has no model card {card_file.name} beside it; "
                         f"{_REEXPORT}.")
    try:
        card = json.loads(card_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{where} is not valid JSON ({exc}); {_REEXPORT}.") from None
    if not isinstance(card, dict):
        raise ModelError(f"{where} is not a JSON object; {_REEXPORT}.")
    version = card.get("format")
    if version not in CARD_FORMATS:
        raise ModelError(f"{where} has format {version!r}, which this bgm2pose does not read "
                         f"(it reads {', '.join(map(str, CARD_FORMATS))}); {_REEXPORT} or "
                         "update bgm2pose.")
    described = card.get("input") if isinstance(card.get("input"), dict) else {}
    channels = described.get("channels", CHANNELS)  # format 1 predates other inputs than the paper's
    channels = tuple(channels) if isinstance(channels, (list, tuple)) else ()
    try:
        inputs_of(channels)
    except InputsError as exc:
        raise ModelError(f"{where}: {exc}") from None
    for kind, name, shape in (("input", INPUT_NAME, input_shape(channels)),
                              ("output", OUTPUT_NAME, OUTPUT_SHAPE)):
        recorded = card.get(kind) if isinstance(card.get(kind), dict) else {}
        found = (recorded.get("name"), recorded.get("shape"))
        if found != (name, shape):
            raise ModelError(f"{where} records the {kind} {found[0]!r} of shape {found[1]}, not "
                             f"{name!r} of shape {shape}; it describes another kind of model: "
                             f"{_REEXPORT}.")
    if version >= 2 and card.get("onnx_sha256") != onnx_digest(path):
        raise ModelError(f"{where} was written for another model file than {path.name} (the "
                         "checksums differ); put the model's own card beside it or "
                         f"{_REEXPORT}.")
    if card.get("mean_pose") is None:
        return card, channels, None
    try:
        mean_pose = np.asarray(card["mean_pose"], np.float32)
        usable = mean_pose.shape in ((3 * N_JOINTS,), (N_JOINTS, 3)) and np.isfinite(mean_pose).all()
    except (TypeError, ValueError):  # ragged lists, text
        usable = False
    if not usable:
        raise ModelError(f"{where} has a mean pose that is not {N_JOINTS} x 3 finite numbers; "
                         f"{_REEXPORT}.")
    return card, channels, mean_pose.reshape(3 * N_JOINTS)


class PoseModel:
    """An onnxruntime session on an exported model, with its model card (``card``), the
    features it reads (``inputs``, ``channels``) and the card's training mean pose
    (``mean_pose``, (63,) float32, or None)."""

    def __init__(self, path: str | Path, threads: int = 1):
        self.path = Path(path)
        require_file(self.path, "model file", f"{_HOW_TO_MAKE}.", ModelError)
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
        _check_interface(self._session, self.path)
        self.card, self.channels, self.mean_pose = _read_card(self.path)
        self.inputs = inputs_of(self.channels)
        if self._session.get_inputs()[0].shape[1] != len(self.channels):
            raise ModelError(f"model {self.path} reads {self._session.get_inputs()[0].shape[1]} feature channels "
                             f"but its card lists {len(self.channels)}; {_REEXPORT}.")

    def predict(self, base: np.ndarray) -> np.ndarray:
        """Features (B, C, 12, 128) or (C, 12, 128) -> poses (B, 12, 21, 3) or (12, 21, 3)."""
        base = np.asarray(base)
        single = base.ndim == 3
        if single:
            base = base[None]
        c = len(self.channels)
        if base.ndim != 4 or list(base.shape[1:]) != input_shape(self.channels)[1:] or base.shape[0] == 0:
            raise ModelError(f"features have shape {base.shape}; expected the model's '{self.inputs}' "
                             f"inputs, (B, {c}, 12, 128) or ({c}, 12, 128).")
        feed = np.ascontiguousarray(base, dtype=np.float32)
        poses = self._session.run([OUTPUT_NAME], {INPUT_NAME: feed})[0]
        poses = poses.reshape(len(feed), FRAMES_PER_WINDOW, N_JOINTS, 3)
        return poses[0] if single else poses
