"""The three baselines of REFERENCE.md ("Baselines") with BGM2Pose's input and output layers,
and ``build_model`` for every method.

All take the standardised (x, m) of ``bgm2pose.models.networks`` and return poses
(B, 12, 63); ``forward_train`` returns (poses, None) because none of them has CPE. Widths
come from ``NetConfig.baseline_width`` (w): 256 in the "paper" preset, 64 in "cpu".

Inputs (``NetConfig.inputs``): each baseline stacks its own paper channels (below) as 2D
input channels; with the channel features C (B, 17, 12, 128) they are appended to that
stack ("both") or replace it ("channel"), so every method can be compared on every input.

- Jiang: each frame's (13 channels x 128 mel) spectrum through a Conv1d encoder over mel,
  a 3-layer LSTM(w) over the 12 frames, a linear layer to 63 per frame.
- Ginosar: a 2D CNN over the 13-channel spectrogram with mel pooling, flattened per frame,
  then BGM2Pose's temporal U-Net to (12, 63).
- Shibata: 7 channels, the 4 mic log-mel and the 3 intensity channels, no music. X holds
  standardised mic minus standardised music-left, and M[:, 0] is the standardised
  music-left, so ``X[:, :4] + M[:, :1]`` is exactly the standardised mic log-mel. A 2D CNN
  with mel pooling, then a plain 1D conv decoder (no skips). With ``n_subjects > 0`` it has
  a subject discriminator on the time-pooled encoder features, for adversarial training
  (``losses.subject_confusion_loss``).
"""

from __future__ import annotations

import torch
from torch import nn

from bgm2pose.models.networks import (
    N_M,
    N_X,
    POSE_DIM,
    BGM2Pose,
    NetConfig,
    NetworkError,
    N_C,
    PoseHead,
    TemporalUNet,
    Trunk1d,
    check_channel,
    check_inputs,
    conv1d_block,
    conv_stack2d,
    flatten_mel,
)
from bgm2pose.sensing.features import FRAMES_PER_WINDOW, N_MELS

METHODS = ("bgm2pose", "jiang", "ginosar", "shibata")
N_SHIBATA = 7


def _encoder_widths(w: int) -> tuple[int, ...]:
    """Four stages, each halving the mel axis: 128 -> 8 bins."""
    return (w // 4, w // 2, w, w)


class _Baseline(nn.Module):
    PAPER_CHANNELS = N_X + N_M

    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        self.n_in = (self.PAPER_CHANNELS if config.inputs != "channel" else 0) + (N_C if config.inputs != "paper" else 0)

    def paper(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """The method's own stack of the paper's channels: (B, PAPER_CHANNELS, 12, 128)."""
        return torch.cat([x, m], dim=1)

    def stack(self, x: torch.Tensor | None, m: torch.Tensor | None, c: torch.Tensor | None) -> torch.Tensor:
        """(B, n_in, 12, 128): the paper stack, the channel features, or both."""
        parts = []
        if self.config.inputs != "channel":
            check_inputs(x, m)
            parts.append(self.paper(x, m))
        if self.config.inputs != "paper":
            check_channel(c)
            parts.append(c)
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def forward_train(self, x, m, c=None) -> tuple[torch.Tensor, None]:
        return self(x, m, c), None


class Jiang(_Baseline):
    def __init__(self, config: NetConfig):
        super().__init__(config)
        w = config.baseline_width
        layers: list[nn.Module] = []
        c_in = self.n_in
        for c in _encoder_widths(w):
            layers += [nn.Conv1d(c_in, c, 3, padding=1), nn.LeakyReLU(0.2), nn.BatchNorm1d(c), nn.MaxPool1d(2)]
            c_in = c
        self.frame_encoder = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * (N_MELS // 16), w))
        self.lstm = nn.LSTM(w, w, num_layers=3, batch_first=True)
        self.head = nn.Linear(w, POSE_DIM)

    def forward(self, x, m, c=None) -> torch.Tensor:
        spectra = self.stack(x, m, c).transpose(1, 2)  # (B, T, C, F)
        frames = self.frame_encoder(spectra.reshape(-1, self.n_in, N_MELS))
        sequence, _ = self.lstm(frames.reshape(-1, FRAMES_PER_WINDOW, frames.shape[-1]))
        return self.head(sequence)


class Ginosar(_Baseline):
    def __init__(self, config: NetConfig):
        super().__init__(config)
        w = config.baseline_width
        widths = _encoder_widths(w)
        self.encoder = conv_stack2d(self.n_in, widths, pool=True)
        self.trunk = Trunk1d(widths[-1] * (N_MELS // 2 ** len(widths)), w)
        self.decoder = TemporalUNet(w)

    def forward(self, x, m, c=None) -> torch.Tensor:
        return self.decoder(self.trunk(flatten_mel(self.encoder(self.stack(x, m, c)))))


class Shibata(_Baseline):
    PAPER_CHANNELS = N_SHIBATA

    def __init__(self, config: NetConfig):
        super().__init__(config)
        w = config.baseline_width
        widths = _encoder_widths(w)
        self.encoder = conv_stack2d(self.n_in, widths, pool=True)
        self.trunk = Trunk1d(widths[-1] * (N_MELS // 2 ** len(widths)), w)
        self.decoder = nn.Sequential(*(conv1d_block(w, w) for _ in range(4)), PoseHead(w))
        self.subject_head = (
            nn.Sequential(nn.Linear(w, w), nn.LeakyReLU(0.2), nn.Linear(w, config.n_subjects))
            if config.n_subjects
            else None
        )

    def paper(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """(B, 7, 12, 128): standardised mic log-mel W, X, Y, Z and intensity Ix, Iy, Iz."""
        return torch.cat([x[:, :4] + m[:, :1], x[:, 8:]], dim=1)

    def features(self, x, m, c=None) -> torch.Tensor:
        """Encoder features (B, w, 12), what the discriminator sees."""
        return self.trunk(flatten_mel(self.encoder(self.stack(x, m, c))))

    def forward_features(self, x, m, c=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(poses, encoder features) from one encoder pass, for adversarial training."""
        features = self.features(x, m, c)
        return self.decoder(features), features

    def forward(self, x, m, c=None) -> torch.Tensor:
        return self.forward_features(x, m, c)[0]

    def discriminator(self, features: torch.Tensor) -> torch.Tensor:
        """Subject logits (B, n_subjects) from encoder features (B, w, 12)."""
        if self.subject_head is None:
            raise NetworkError("this Shibata model has no discriminator; build it with n_subjects > 0.")
        return self.subject_head(features.mean(dim=2))


def build_model(method: str, config: NetConfig) -> nn.Module:
    """A fresh network for ``method`` (one of METHODS) sized by ``config``."""
    builders = {"bgm2pose": BGM2Pose, "jiang": Jiang, "ginosar": Ginosar, "shibata": Shibata}
    if method not in builders:
        raise NetworkError(f"unknown method {method!r}; choose one of {METHODS}.")
    return builders[method](config)
