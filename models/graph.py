"""The torch side of ``features.network_inputs``: raw features -> standardised network inputs.

``NetworkInputs`` holds a ``FeatureStats`` as buffers. The stats' channels say which inputs
the model reads (``models.inputs``):

- paper: from base features (B, 9, 12, 128) in ``features.CHANNELS`` order it forms X (B, 11,
  12, 128) = [mic - music_left (4), mic - music_right (4), intensity (3)] and M (B, 2, 12,
  128) = [music_left, music_right], exactly as the numpy function does, and returns (X, M);
- channel: the standardised channel features C (B, 17, 12, 128), returned as (None, None, C);
- both: the base channels then the channel ones, returned as (X, M, C).

A paper model is thus called ``network(X, M)`` as it always was. Training uses it on each
batch (so the data set keeps the 9 base channels, not the 13 derived ones), and ``PoseGraph``
puts it in front of a network so an exported model takes raw features.
"""

from __future__ import annotations

import torch
from torch import nn

from bgm2pose.models.inputs import inputs_of
from bgm2pose.sensing.features import CHANNELS, FeatureStats

_N_MIC = 4
_N_LOG = 6


class NetworkInputs(nn.Module):
    """Standardise features with fixed statistics and form the network's inputs."""

    def __init__(self, stats: FeatureStats):
        super().__init__()
        self.inputs = inputs_of(stats.channels)
        self.register_buffer("mean", torch.from_numpy(stats.mean.copy())[:, None, None])
        self.register_buffer("std", torch.from_numpy(stats.std.copy())[:, None, None])

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        z = (features - self.mean) / self.std
        if self.inputs == "channel":
            return None, None, z
        mic = z[:, :_N_MIC]
        x = torch.cat([mic - z[:, _N_MIC : _N_MIC + 1], mic - z[:, _N_MIC + 1 : _N_LOG], z[:, _N_LOG : len(CHANNELS)]],
                      dim=1)
        m = z[:, _N_MIC:_N_LOG]
        return (x, m) if self.inputs == "paper" else (x, m, z[:, len(CHANNELS):])


class PoseGraph(nn.Module):
    """A network behind its input standardisation: features (B, C, 12, 128) -> poses (B, 12, 63)."""

    def __init__(self, network: nn.Module, stats: FeatureStats):
        super().__init__()
        self.inputs = NetworkInputs(stats)
        self.network = network

    def forward(self, base: torch.Tensor) -> torch.Tensor:
        # Named as the ONNX input, whatever the channels: export's dynamic shapes go by it.
        return self.network(*self.inputs(base))
