"""Training losses (REFERENCE.md, "Network" and "Baselines").

Poses are (B, 12, 63) tensors in normalised units. Terms:

- pose: MSE over all coordinates of all frames.
- velocity: MSE of the frame-to-frame differences pose[t + 1] - pose[t] (blind to an error
  that is constant over the window); weight 100 for BGM2Pose, 1 for Shibata's smoothness.
- clip: symmetric cross-entropy between the unit audio and pose embeddings of a batch, with
  the fixed logit scale 1 / 0.07; the i-th audio and i-th pose embedding are the positives.
- confusion: Shibata's adversarial term, the standard deviation over subjects of the
  discriminator's softmax (0 when it cannot tell subjects apart), averaged over the batch.
  The discriminator itself is trained with ``discriminator_loss`` on detached features.

Jiang and Ginosar are trained with BGM2Pose's pose and velocity terms (the paper names no
other loss for them), without CPE.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bgm2pose.models.networks import NetConfig
from bgm2pose.sensing.errors import UserError

CLIP_LOGIT_SCALE = 1.0 / 0.07


class LossError(UserError, ValueError):
    """Loss inputs that do not fit together."""


@dataclass(frozen=True)
class LossWeights:
    velocity: float = 100.0
    clip: float = 1.0
    confusion: float = 0.0


@dataclass
class LossTerms:
    """The weighted total and each unweighted term (0-d tensors; absent terms are 0)."""

    total: torch.Tensor
    pose: torch.Tensor
    velocity: torch.Tensor
    clip: torch.Tensor
    confusion: torch.Tensor


def loss_weights(method: str, config: NetConfig) -> LossWeights:
    """The weights REFERENCE.md gives ``method``; CLIP only with CPE, confusion only with a
    discriminator."""
    if method == "bgm2pose":
        return LossWeights(velocity=100.0, clip=1.0 if config.use_cpe else 0.0)
    if method == "shibata":
        return LossWeights(velocity=1.0, clip=0.0, confusion=1.0 if config.n_subjects else 0.0)
    if method in ("jiang", "ginosar"):
        return LossWeights(velocity=100.0, clip=0.0)
    raise LossError(f"unknown method {method!r}; choose bgm2pose, jiang, ginosar or shibata.")


def _check_poses(pred: torch.Tensor, gt: torch.Tensor) -> None:
    if pred.shape != gt.shape or pred.dim() != 3 or pred.shape[1] < 2:
        raise LossError(
            f"predicted poses {tuple(pred.shape)} and ground truth {tuple(gt.shape)} must both be "
            "(B, T >= 2, 63)."
        )


def velocity_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """MSE of the frame-to-frame velocities of (B, T, D) sequences."""
    _check_poses(pred, gt)
    return F.mse_loss(pred.diff(dim=1), gt.diff(dim=1))


def pose_loss(pred: torch.Tensor, gt: torch.Tensor, velocity_weight: float = 100.0) -> torch.Tensor:
    """MSE(pose) + velocity_weight * MSE(velocity)."""
    _check_poses(pred, gt)
    return F.mse_loss(pred, gt) + velocity_weight * velocity_loss(pred, gt)


def clip_loss(
    audio_emb: torch.Tensor, pose_emb: torch.Tensor, logit_scale: float = CLIP_LOGIT_SCALE
) -> torch.Tensor:
    """Symmetric cross-entropy of the (B, B) similarity matrix of unit embeddings (B, E)."""
    if audio_emb.dim() != 2 or audio_emb.shape != pose_emb.shape:
        raise LossError(
            f"audio embeddings {tuple(audio_emb.shape)} and pose embeddings {tuple(pose_emb.shape)} "
            "must both be (B, E)."
        )
    logits = logit_scale * audio_emb @ pose_emb.t()
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def subject_confusion_loss(subject_logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of std over subjects of softmax(logits): low when D is confused."""
    return torch.softmax(subject_logits, dim=1).std(dim=1).mean()


def discriminator_loss(subject_logits: torch.Tensor, subjects: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the discriminator's logits (B, S) against subject indices (B,)."""
    return F.cross_entropy(subject_logits, subjects)


def total_loss(
    pred: torch.Tensor,
    gt: torch.Tensor,
    weights: LossWeights,
    audio_emb: torch.Tensor | None = None,
    pose_emb: torch.Tensor | None = None,
    subject_logits: torch.Tensor | None = None,
) -> LossTerms:
    """pose + w_v velocity + w_c clip + w_s confusion; a term with a nonzero weight needs
    its inputs."""
    velocity = velocity_loss(pred, gt)
    pose = F.mse_loss(pred, gt)
    zero = pred.new_zeros(())
    clip = confusion = zero
    if weights.clip:
        if audio_emb is None or pose_emb is None:
            raise LossError("the CLIP term needs audio and pose embeddings; pass both or set its weight to 0.")
        clip = clip_loss(audio_emb, pose_emb)
    if weights.confusion:
        if subject_logits is None:
            raise LossError("the confusion term needs discriminator logits; pass them or set its weight to 0.")
        confusion = subject_confusion_loss(subject_logits)
    total = pose + weights.velocity * velocity + weights.clip * clip + weights.confusion * confusion
    return LossTerms(total=total, pose=pose, velocity=velocity, clip=clip, confusion=confusion)
