"""BGM2Pose (REFERENCE.md, "Network") and the building blocks the baselines share with it.

Conventions:

- Inputs are standardised network features in (batch, channel, time, mel) order:
  X (B, 11, 12, 128) = [mic - music_left (4), mic - music_right (4), intensity (3)] and
  M (B, 2, 12, 128) = [music_left, music_right] (``bgm2pose.sensing.features.network_inputs``).
  Every model maps ``forward(x, m)`` to poses (B, 12, 63): 12 frames of 21 joints x (x, y, z).
- BGM2Pose can also read the channel features C (B, 17, 12, 128) (``sensing.channel``;
  ``NetConfig.inputs``, ``models.inputs``): ``forward(x, m, c)``, with x and m None when it
  reads the channel alone. The channel branch is a 2D block stack with pooling like the one
  after the attention, at half its widths (its 128 values are delay taps, not mel bins, so the music cannot
  attend to them); its flattened features join the paper branch's before the trunk.
- Every model also has ``forward_train(x, m) -> (poses, audio_embedding | None)``; only
  BGM2Pose with contrastive pose extraction (CPE) returns an embedding, (B, E) unit length.
- Time: the trunk's Conv1d(k=2) is padded by one frame on the *left*, so frame t sees frames
  t-1 and t, the sequence stays 12 frames long (the U-Net halves it to 6 and 3 and doubles
  it back to 12), and the newest frame of a live window never sees padding.
- Blocks are ordered as the paper states them: conv -> LeakyReLU -> BatchNorm.
- ``forward`` never computes CPE and traces with ``torch.onnx.export(dynamo=True)`` with a
  dynamic batch axis.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bgm2pose.models.inputs import INPUTS
from bgm2pose.sensing.skeleton import N_JOINTS
from bgm2pose.sensing.channel import CHANNELS as CHANNEL_CHANNELS
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.features import FRAMES_PER_WINDOW, N_MELS

N_X = 11
N_M = 2
N_C = len(CHANNEL_CHANNELS)
POSE_DIM = 3 * N_JOINTS
FA_VARIANTS = ("paper", "code")


class NetworkError(UserError, ValueError):
    """A network configuration or input that the networks cannot use."""


@dataclass(frozen=True)
class NetConfig:
    """Widths and ablation switches shared by BGM2Pose and the baselines.

    ``branch_widths[-1]`` is the attention width d; ``block_widths`` are the 2D blocks after
    the attention, each followed by MaxPool(1, 2) over mel; ``baseline_width`` sizes the
    baselines (Jiang's LSTM, the encoders of Ginosar and Shibata).
    """

    name: str = "paper"
    branch_widths: tuple[int, ...] = (64, 128)
    block_widths: tuple[int, ...] = (256, 256, 256)
    trunk_width: int = 256
    baseline_width: int = 256
    fa_heads: int = 8  # the code variant's multi-head attention
    embed_heads: int = 4  # CPE self-attention
    dropout: float = 0.1
    use_cpe: bool = True
    use_fa: bool = True
    # False: no music branch; the frequency attention attends the recorded branch to itself.
    music_conditioning: bool = True
    fa_variant: str = "paper"
    # Shibata's subject discriminator: number of training subjects, 0 = no discriminator.
    n_subjects: int = 0
    inputs: str = "paper"  # models.inputs: paper | channel | both

    def __post_init__(self) -> None:
        for key in ("branch_widths", "block_widths"):
            object.__setattr__(self, key, tuple(int(w) for w in getattr(self, key)))
        if self.inputs not in INPUTS:
            raise NetworkError(f"inputs {self.inputs!r} are unknown; choose one of {INPUTS}.")
        if self.fa_variant not in FA_VARIANTS:
            raise NetworkError(f"fa_variant is {self.fa_variant!r}; choose one of {FA_VARIANTS}.")
        widths = (*self.branch_widths, *self.block_widths, self.trunk_width, self.baseline_width)
        if not self.branch_widths or not self.block_widths or min(widths) < 1:
            raise NetworkError(f"network widths must be positive and non-empty; got {widths}.")
        if N_MELS % 2 ** len(self.block_widths):
            raise NetworkError(
                f"{len(self.block_widths)} frequency poolings do not divide {N_MELS} mel bins; "
                "use at most 7 blocks."
            )
        if self.d % self.fa_heads or self.trunk_width % self.embed_heads:
            raise NetworkError(
                f"attention width {self.d} must be a multiple of fa_heads={self.fa_heads} and "
                f"trunk_width {self.trunk_width} of embed_heads={self.embed_heads}."
            )
        if self.baseline_width % 4:
            raise NetworkError(f"baseline_width {self.baseline_width} must be a multiple of 4.")
        if not 0.0 <= self.dropout < 1.0 or self.n_subjects < 0:
            raise NetworkError("dropout must lie in [0, 1) and n_subjects must be >= 0.")

    @property
    def d(self) -> int:
        return self.branch_widths[-1]

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> NetConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise NetworkError(
                f"network config has unknown keys {sorted(unknown)}; it must come from NetConfig.to_dict."
            )
        return cls(**d)


PRESETS: dict[str, NetConfig] = {
    "paper": NetConfig(),
    # Same topology at 1/4 of the channels: ~0.2 GMAC per window, for one CPU core.
    "cpu": NetConfig(
        name="cpu", branch_widths=(16, 32), block_widths=(64, 64, 64), trunk_width=64,
        baseline_width=64,
    ),
}


def preset(name: str, **switches) -> NetConfig:
    """The named preset ("paper" or "cpu"), with any field overridden, e.g. use_fa=False."""
    if name not in PRESETS:
        raise NetworkError(f"unknown network preset {name!r}; choose one of {sorted(PRESETS)}.")
    try:
        return replace(PRESETS[name], **switches)
    except TypeError as exc:
        raise NetworkError(f"bad network switch: {exc}; see NetConfig for the fields.") from None


def check_inputs(x: torch.Tensor, m: torch.Tensor) -> None:
    """Raise NetworkError unless x is (B, 11, 12, 128) and m is (B, 2, 12, 128)."""
    want_x, want_m = (N_X, FRAMES_PER_WINDOW, N_MELS), (N_M, FRAMES_PER_WINDOW, N_MELS)
    if x.dim() != 4 or m.dim() != 4 or tuple(x.shape[1:]) != want_x or tuple(m.shape[1:]) != want_m:
        raise NetworkError(
            f"network inputs have shapes {tuple(x.shape)} and {tuple(m.shape)}; expected "
            f"(B, {', '.join(map(str, want_x))}) and (B, {', '.join(map(str, want_m))}) "
            "from features.network_inputs."
        )


def check_channel(c: torch.Tensor | None) -> None:
    """Raise NetworkError unless c is (B, 17, 12, 128)."""
    want = (N_C, FRAMES_PER_WINDOW, N_MELS)
    if c is None or c.dim() != 4 or tuple(c.shape[1:]) != want:
        raise NetworkError(
            f"channel input has shape {None if c is None else tuple(c.shape)}; expected "
            f"(B, {', '.join(map(str, want))}) from sensing.channel."
        )


class ConvBlock2d(nn.Sequential):
    """[Conv2d k3 'same' -> LeakyReLU -> BatchNorm] x 2."""

    def __init__(self, c_in: int, c_out: int):
        layers: list[nn.Module] = []
        for c in (c_in, c_out):
            layers += [nn.Conv2d(c, c_out, 3, padding=1), nn.LeakyReLU(0.2), nn.BatchNorm2d(c_out)]
        super().__init__(*layers)


def conv_stack2d(c_in: int, widths: tuple[int, ...], pool: bool) -> nn.Sequential:
    """ConvBlock2d per width, each followed by MaxPool(1, 2) over mel when ``pool``."""
    layers: list[nn.Module] = []
    for w in widths:
        layers.append(ConvBlock2d(c_in, w))
        if pool:
            layers.append(nn.MaxPool2d((1, 2)))
        c_in = w
    return nn.Sequential(*layers)


def conv1d_block(c_in: int, c_out: int) -> nn.Sequential:
    """Conv1d k3 'same' over time -> LeakyReLU -> BatchNorm."""
    return nn.Sequential(nn.Conv1d(c_in, c_out, 3, padding=1), nn.LeakyReLU(0.2), nn.BatchNorm1d(c_out))


def flatten_mel(features: torch.Tensor) -> torch.Tensor:
    """(B, C, T, F) -> (B, C * F, T): the channels and mel bins of each frame as one vector."""
    b, c, t, f = features.shape
    return features.permute(0, 1, 3, 2).reshape(-1, c * f, t)


class Trunk1d(nn.Sequential):
    """Conv1d(k=2) from the flattened 2D features to ``width``, padded one frame on the left."""

    def __init__(self, c_in: int, width: int):
        super().__init__(
            nn.ConstantPad1d((1, 0), 0.0), nn.Conv1d(c_in, width, 2), nn.LeakyReLU(0.2),
            nn.BatchNorm1d(width),
        )


class PoseHead(nn.Module):
    """(B, width, 12) -> poses (B, 12, 63) by Conv1d k1."""

    def __init__(self, width: int):
        super().__init__()
        self.conv = nn.Conv1d(width, POSE_DIM, 1)
        # A fresh network predicts nearly the same pose in every frame, so the 100x velocity
        # term does not swamp the pose term at the start of training.
        with torch.no_grad():
            self.conv.weight.mul_(0.1)
        nn.init.zeros_(self.conv.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv(features).transpose(1, 2)


class TemporalUNet(nn.Module):
    """1D U-Net over time 12 -> 6 -> 3 -> 6 -> 12 with skip concatenation, then four
    Conv1d k3 blocks and the pose head: (B, width, 12) -> (B, 12, 63)."""

    def __init__(self, width: int):
        super().__init__()

        def down() -> nn.Sequential:
            return nn.Sequential(nn.Conv1d(width, width, 4, 2, 1), nn.LeakyReLU(0.2), nn.BatchNorm1d(width))

        self.down1, self.down2 = down(), down()
        self.up2 = nn.ConvTranspose1d(width, width, 4, 2, 1)
        self.merge2 = conv1d_block(2 * width, width)
        self.up1 = nn.ConvTranspose1d(width, width, 4, 2, 1)
        self.merge1 = conv1d_block(2 * width, width)
        self.refine = nn.Sequential(*(conv1d_block(width, width) for _ in range(4)))
        self.head = PoseHead(width)

    def forward(self, h12: torch.Tensor) -> torch.Tensor:
        h6 = self.down1(h12)
        h3 = self.down2(h6)
        u6 = self.merge2(torch.cat([self.up2(h3), h6], dim=1))
        u12 = self.merge1(torch.cat([self.up1(u6), h12], dim=1))
        return self.head(self.refine(u12))


class FrequencyAttention(nn.Module):
    """Attention across mel bins within each time frame (tokens = mel bins, width d).

    "paper": softmax(Q K^T / sqrt(d)) V with Q = W_q rec, K = W_k ctx, V = W_v rec, no
    residual. "code": 8-head attention with query = ctx, key = value = rec, dropout, plus a
    residual to rec. ``ctx`` is the music branch, or the recorded branch itself when there
    is no music conditioning.
    """

    def __init__(self, d: int, variant: str, heads: int, dropout: float):
        super().__init__()
        self.variant = variant
        if variant == "paper":
            self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
            self.scale = 1.0 / math.sqrt(d)
        else:
            self.mha = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)

    def forward(self, rec: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        b, d, t, f = rec.shape
        r = rec.permute(0, 2, 3, 1).reshape(-1, f, d)  # (B * T, F, d)
        c = ctx.permute(0, 2, 3, 1).reshape(-1, f, d)
        if self.variant == "paper":
            weights = torch.softmax(self.q(r) @ self.k(c).transpose(1, 2) * self.scale, dim=-1)
            out = weights @ self.v(r)
        else:
            out = self.mha(c, r, r, need_weights=False)[0] + r
        return out.reshape(-1, t, f, d).permute(0, 3, 1, 2)


class SequenceEmbedding(nn.Module):
    """A learned summary token + time embedding, one self-attention layer, the token's output
    projected and L2-normalised: (B, width, T) -> (B, width)."""

    def __init__(self, width: int, steps: int, heads: int, dropout: float):
        super().__init__()
        self.token = nn.Parameter(0.02 * torch.randn(1, 1, width))
        self.time = nn.Parameter(0.02 * torch.randn(1, steps + 1, width))
        self.attend = nn.TransformerEncoderLayer(
            width, heads, 2 * width, dropout, batch_first=True, norm_first=True
        )
        self.project = nn.Linear(width, width)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([self.token.expand(seq.shape[0], -1, -1), seq.transpose(1, 2)], dim=1)
        summary = self.attend(tokens + self.time)[:, 0]
        return F.normalize(self.project(summary), dim=-1)


class BGM2Pose(nn.Module):
    """Recorded and music 2D branches, frequency embedding, frequency-wise attention, 2D
    blocks with mel pooling, Conv1d trunk, temporal U-Net; CPE embeddings for training."""

    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        bins = N_MELS // 2 ** len(config.block_widths)
        trunk_in = 0
        self.channel = None
        if config.inputs != "paper":
            # Half the widths of the blocks after the attention: 17 input channels, not d.
            widths = tuple(max(1, w // 2) for w in config.block_widths)
            self.channel = conv_stack2d(N_C, widths, pool=True)
            trunk_in += widths[-1] * bins
        if config.inputs != "channel":
            self._paper_branches(config)
            trunk_in += config.block_widths[-1] * bins
        self.trunk = Trunk1d(trunk_in, config.trunk_width)
        self.decoder = TemporalUNet(config.trunk_width)
        if config.use_cpe:
            w = config.trunk_width
            self.audio_embedding = SequenceEmbedding(w, FRAMES_PER_WINDOW, config.embed_heads, config.dropout)
            self.pose_encoder = nn.Conv1d(POSE_DIM, w, 3, padding=1)
            self.pose_summary = SequenceEmbedding(w, FRAMES_PER_WINDOW, config.embed_heads, config.dropout)

    def _paper_branches(self, config: NetConfig) -> None:
        d = config.d
        self.recorded = conv_stack2d(N_X, config.branch_widths, pool=False)
        self.music = conv_stack2d(N_M, config.branch_widths, pool=False) if config.music_conditioning else None
        # Shared by both branches: tells the attention which mel bin a token is.
        self.freq_embedding = nn.Parameter(0.02 * torch.randn(N_MELS, d))
        if config.use_fa:
            self.attention = FrequencyAttention(d, config.fa_variant, config.fa_heads, config.dropout)
        elif config.music_conditioning:
            # Without attention the music still enters, fused per bin by a 1x1 conv, so the
            # ablation removes the attention and nothing else.
            self.fuse = nn.Conv2d(2 * d, d, 1)
        self.blocks = conv_stack2d(d, config.block_widths, pool=True)

    def features(self, x: torch.Tensor | None, m: torch.Tensor | None, c: torch.Tensor | None = None) -> torch.Tensor:
        """Trunk features (B, trunk_width, 12)."""
        parts = []
        if self.config.inputs != "channel":
            parts.append(self._paper_features(x, m))
        if self.config.inputs != "paper":
            check_channel(c)
            parts.append(flatten_mel(self.channel(c)))
        return self.trunk(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])

    def _paper_features(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        check_inputs(x, m)
        embedding = self.freq_embedding.t()[None, :, None, :]  # (1, d, 1, F)
        rec = self.recorded(x) + embedding
        music = self.music(m) + embedding if self.music is not None else None
        if self.config.use_fa:
            h = self.attention(rec, music if music is not None else rec)
        elif music is not None:
            h = self.fuse(torch.cat([rec, music], dim=1))
        else:
            h = rec
        return flatten_mel(self.blocks(h))

    def forward(self, x: torch.Tensor | None, m: torch.Tensor | None, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(self.features(x, m, c))

    def forward_train(self, x: torch.Tensor | None, m: torch.Tensor | None,
                      c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.features(x, m, c)
        embedding = self.audio_embedding(h) if self.config.use_cpe else None
        return self.decoder(h), embedding

    def pose_embedding(self, poses: torch.Tensor) -> torch.Tensor:
        """Ground-truth poses (B, 12, 63) -> unit-length pose embedding (B, trunk_width)."""
        if not self.config.use_cpe:
            raise NetworkError("this model was built with use_cpe=False; it has no pose embedding.")
        if poses.dim() != 3 or tuple(poses.shape[1:]) != (FRAMES_PER_WINDOW, POSE_DIM):
            raise NetworkError(
                f"poses have shape {tuple(poses.shape)}; expected (B, {FRAMES_PER_WINDOW}, {POSE_DIM})."
            )
        return self.pose_summary(self.pose_encoder(poses.transpose(1, 2)))


def count_macs(model: nn.Module) -> int:
    """Multiply-accumulates of one inference window (batch 1, eval mode) = FLOPs / 2.

    Counts convolutions, matrix products (linear layers, LSTM gates, attention) as torch's
    flop counter does; elementwise work (activations, norms, softmax) is left out.
    """
    was_training = model.training
    model.eval()
    x = torch.zeros(1, N_X, FRAMES_PER_WINDOW, N_MELS)
    m = torch.zeros(1, N_M, FRAMES_PER_WINDOW, N_MELS)
    inputs = getattr(getattr(model, "config", None), "inputs", "paper")
    args = (x, m) if inputs == "paper" else (x, m, torch.zeros(1, N_C, FRAMES_PER_WINDOW, N_MELS))
    counter = FlopCounterMode(
        display=False,
        custom_mapping={torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops},
    )
    try:
        # oneDNN runs an LSTM as one opaque kernel; without it the LSTM is plain matmuls.
        with warnings.catch_warnings():
            # Toggling oneDNN warns about Intel-GPU TF32, which does not concern a count.
            warnings.simplefilter("ignore")
            with torch.backends.mkldnn.flags(enabled=False), counter:
                model(*args)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def _attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of softmax(Q K^T) V for torch's CPU attention kernel, which the counter lacks."""
    b, h, n_q, e = query_shape
    return 2 * b * h * n_q * key_shape[-2] * (e + value_shape[-1])
