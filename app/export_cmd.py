"""``bgm2pose export``: a training checkpoint -> ONNX model + JSON model card."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bgm2pose.models.export import export_onnx
from bgm2pose.models.train import load_checkpoint, model_from_checkpoint

METRICS_FILE = "metrics.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, help="checkpoint.pt written by 'bgm2pose train'")
    p.add_argument("out", type=Path, help="model file to write, NAME.onnx (the card goes to NAME.json)")
    p.add_argument("--description", default="", help="free text for the model card")


def run(args: argparse.Namespace) -> int:
    export_checkpoint(args.checkpoint, args.out, args.description)
    return 0


def export_checkpoint(checkpoint: Path, out: Path, description: str = "") -> dict:
    """Export ``checkpoint`` (with the metrics.json beside it) to ``out``; returns the card."""
    ckpt = load_checkpoint(checkpoint)
    model, stats, config = model_from_checkpoint(ckpt)
    metrics_path = checkpoint.parent / METRICS_FILE
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    # The checkpoint's record (epochs run, wall time, stop reason, learning curves) is the one
    # metrics.json repeats, and it also describes a run that has not finished.
    metrics.pop("training", None)
    card = {
        "description": description,
        "method": config.method,
        "preset": config.preset,
        "training": {**config.to_dict(), **ckpt["record"]},
        "config": ckpt["net_config"],
        "data": ckpt["data"],
        "mean_pose": ckpt["mean_pose"].tolist(),
        "metrics": metrics or None,
    }
    written = export_onnx(model, stats, out, card)
    print(f"export: wrote {out} and {out.with_suffix('.json').name} "
          f"(torch/onnxruntime max difference {written['parity_max_abs']:.1e})", flush=True)
    return written
