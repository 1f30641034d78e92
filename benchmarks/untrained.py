"""The model the benchmarks time when no trained one is given: BGM2Pose, "cpu" preset,
untrained (inference costs the same as trained), exported to ONNX in ``folder``.

Imported by the benchmark scripts (``python benchmarks/<name>.py`` puts this folder on
``sys.path``)."""

from __future__ import annotations

from pathlib import Path


def untrained_model(folder: Path) -> Path:
    import numpy as np
    import torch

    from bgm2pose.models.baselines import build_model
    from bgm2pose.models.export import export_onnx
    from bgm2pose.models.networks import preset
    from bgm2pose.sensing.features import FeatureStats

    torch.manual_seed(0)
    # Typical feature levels, so the untrained network sees inputs of the usual scale.
    stats = FeatureStats(mean=np.array([-60, -63, -64, -62, -50, -51, 0.1, -0.05, 0.2]),
                         std=np.array([12, 11, 11, 12, 15, 15, 0.4, 0.3, 0.5]))
    path = folder / "untrained-cpu.onnx"
    export_onnx(build_model("bgm2pose", preset("cpu")).eval(), stats, path,
                {"note": "untrained cpu preset, for benchmarks"})
    return path
