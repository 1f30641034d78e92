"""The model the benchmarks time when no trained one is given: BGM2Pose, "cpu" preset, reading
the paper's features, the channel estimate or both (``models.inputs``), untrained (inference costs the same as trained), exported to ONNX in ``folder``.

Imported by the benchmark scripts (``python benchmarks/<name>.py`` puts this folder on
``sys.path``)."""

from __future__ import annotations

from pathlib import Path


def untrained_model(folder: Path, inputs: str = "paper") -> Path:
    import numpy as np
    import torch

    from bgm2pose.models.baselines import build_model
    from bgm2pose.models.export import export_onnx
    from bgm2pose.models.inputs import input_channels
    from bgm2pose.models.networks import preset
    from bgm2pose.sensing.features import FeatureStats

    torch.manual_seed(0)
    # Typical feature levels, so the untrained network sees inputs of the usual scale: base
    # features, then channel features (near taps, far energy in dB, valid).
    typical = {"paper": ([-60, -63, -64, -62, -50, -51, 0.1, -0.05, 0.2], [12, 11, 11, 12, 15, 15, 0.4, 0.3, 0.5]),
               "channel": ([0] * 8 + [-30] * 8 + [0.9], [0.1] * 8 + [10] * 8 + [0.3])}
    parts = [typical[part] for part in ("paper", "channel") if inputs in (part, "both")]
    stats = FeatureStats(mean=np.concatenate([m for m, _ in parts]), std=np.concatenate([s for _, s in parts]),
                         channels=input_channels(inputs))
    path = folder / f"untrained-cpu-{inputs}.onnx"
    export_onnx(build_model("bgm2pose", preset("cpu", inputs=inputs)).eval(), stats, path,
                {"note": "untrained cpu preset, for benchmarks"})
    return path
