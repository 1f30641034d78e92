"""The model a fine-tuning starts from (``bgm2pose train --init MODEL``): an exported model
(``NAME.onnx`` with its card, e.g. the shipped demo model) or a training checkpoint.

It gives the method, the network config and the feature statistics the model was trained
with (fine-tuning keeps them: the network learned on features standardised so) and its
weights. An exported graph holds every weight inference uses under its torch name
(``network.<parameter>``); what only training uses (the contrastive pose encoder, a
discriminator) is not in it and starts fresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from bgm2pose.models.inference import ModelError, PoseModel, onnx_digest
from bgm2pose.models.inputs import input_channels
from bgm2pose.models.networks import NetConfig
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.features import FeatureStats

_PREFIX = "network."


class StartError(UserError, ValueError):
    """A model that fine-tuning cannot start from."""


@dataclass(frozen=True)
class Start:
    method: str
    net_config: NetConfig
    stats: FeatureStats
    weights: dict[str, torch.Tensor]  # state-dict entries of the network
    source: dict  # for the run record and the card: path, kind, checksum, its training data


def starting_point(path: str | Path) -> Start:
    """The model at ``path`` (``.onnx`` beside its card, or a ``bgm2pose train`` checkpoint)."""
    path = Path(path)
    if not path.is_file():
        raise StartError(f"--init {path} does not exist; point it at an exported model "
                         "(e.g. models/pretrained/demo.onnx) or a run's checkpoint.pt")
    if path.suffix.lower() == ".onnx":
        return _from_onnx(path)
    from bgm2pose.models.train import load_checkpoint

    ckpt = load_checkpoint(path)
    net_config = NetConfig.from_dict(ckpt["net_config"])
    method = ckpt["train_config"]["method"]
    stats = FeatureStats.from_dict(ckpt["stats"], input_channels(net_config.inputs))
    kept = ckpt["kept"] if ckpt.get("kept") is not None else ckpt["model"]
    return Start(method, net_config, stats, dict(kept),
                 {"path": str(path), "kind": "checkpoint", "data": ckpt.get("data")})


def _from_onnx(path: Path) -> Start:
    import onnx
    from onnx import numpy_helper

    try:
        card = PoseModel(path).card
    except ModelError as exc:
        raise StartError(f"--init {path}: {exc}") from None
    if not isinstance(card.get("config"), dict) or not card.get("method"):
        raise StartError(f"--init {path}: its card does not record the network's method and "
                         "config (exported before they were recorded); re-export it from its "
                         "checkpoint or start from the checkpoint itself")
    net_config = NetConfig.from_dict(card["config"])
    stats = FeatureStats.from_dict(card["feature_stats"], input_channels(net_config.inputs))
    weights = {init.name[len(_PREFIX):]: torch.from_numpy(numpy_helper.to_array(init).copy())
               for init in onnx.load(str(path)).graph.initializer
               if init.name.startswith(_PREFIX)}
    return Start(card["method"], net_config, stats, weights,
                 {"path": str(path), "kind": "onnx", "onnx_sha256": onnx_digest(path),
                  "data": card.get("data")})


def load_start(network: torch.nn.Module, start: Start) -> int:
    """Copy ``start``'s weights into ``network`` (built from ``start.net_config``); returns
    how many of the network's entries start fresh."""
    own = network.state_dict()
    wrong = [name for name, value in start.weights.items()
             if name not in own or tuple(own[name].shape) != tuple(value.shape)]
    if wrong:
        raise StartError(f"--init {start.source['path']} holds weights this network does not "
                         f"have or shapes it does not fit ({', '.join(wrong[:3])}"
                         f"{', ...' if len(wrong) > 3 else ''}); it was made by another version "
                         "of bgm2pose: fine-tune from a model this version trained")
    network.load_state_dict(start.weights, strict=False)
    if start.source["kind"] == "onnx":
        # Weights the exporter renamed or folded would start fresh unnoticed: the rebuilt
        # network must predict what the file does.
        from bgm2pose.models.export import PARITY_TOLERANCE, parity
        from bgm2pose.models.graph import PoseGraph

        worst = parity(PoseGraph(network, start.stats).eval(), Path(start.source["path"]),
                       start.stats)
        network.train()
        if worst > PARITY_TOLERANCE:
            raise StartError(f"--init {start.source['path']} does not hold all its weights under "
                             f"their names (rebuilt, it predicts up to {worst:.2g} off); "
                             "fine-tune from the checkpoint.pt it was exported from")
    return len(set(own) - set(start.weights))


def check_options(start: Start, method: str | None, inputs: str | None) -> None:
    """A method or inputs asked for on the command line must be the start model's."""
    for what, asked, have in (("--method", method, start.method),
                              ("--inputs", inputs, start.net_config.inputs)):
        if asked is not None and asked != have:
            raise StartError(f"{what} {asked} differs from the --init model's ({have}); "
                             f"fine-tuning keeps the model's network: drop {what} or pass {have}")
