"""The torch side of ``features.network_inputs``: raw base features -> standardised (X, M).

``NetworkInputs`` holds a ``FeatureStats`` as buffers and forms, from base features
(B, 9, 12, 128) in ``features.CHANNELS`` order, X (B, 11, 12, 128) = [mic - music_left (4),
mic - music_right (4), intensity (3)] and M (B, 2, 12, 128) = [music_left, music_right],
exactly as the numpy function does. Training uses it on each batch (so the data set keeps
the 9 base channels, not the 13 derived ones), and ``PoseGraph`` puts it in front of a
network so an exported model takes raw base features.
"""

from __future__ import annotations

import torch
from torch import nn

from bgm2pose.sensing.features import FeatureStats

_N_MIC = 4
_N_LOG = 6


class NetworkInputs(nn.Module):
    """Standardise base features with fixed statistics and form X and M."""

    def __init__(self, stats: FeatureStats):
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(stats.mean.copy())[:, None, None])
        self.register_buffer("std", torch.from_numpy(stats.std.copy())[:, None, None])

    def forward(self, base: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = (base - self.mean) / self.std
        mic = z[:, :_N_MIC]
        x = torch.cat([mic - z[:, _N_MIC : _N_MIC + 1], mic - z[:, _N_MIC + 1 : _N_LOG], z[:, _N_LOG:]], dim=1)
        return x, z[:, _N_MIC:_N_LOG]


class PoseGraph(nn.Module):
    """A network behind its input standardisation: base (B, 9, 12, 128) -> poses (B, 12, 63)."""

    def __init__(self, network: nn.Module, stats: FeatureStats):
        super().__init__()
        self.inputs = NetworkInputs(stats)
        self.network = network

    def forward(self, base: torch.Tensor) -> torch.Tensor:
        return self.network(*self.inputs(base))
