"""Which features a model reads: the paper's, the channel estimate's, or both.

- ``paper``: the 9 base channels of ``sensing.features`` (log-mel W X Y Z, music left and right,
  intensity directions), from which the network forms "mic minus music" (REFERENCE.md).
- ``channel``: the 17 channels of ``sensing.channel``, how the room and the body filter the
  music, which does not depend on the music played.
- ``both``: the base channels followed by the channel channels.

A model's input is one (B, C, 12, 128) array of these channels in this order; its card lists
them, so the live engine computes exactly what the model reads.
"""

from __future__ import annotations

import numpy as np

from bgm2pose.sensing.channel import CHANNELS as CHANNEL_CHANNELS
from bgm2pose.sensing.channel import ChannelStream
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.features import CHANNELS as PAPER_CHANNELS
from bgm2pose.sensing.features import FeatureStream

INPUTS = ("paper", "channel", "both")
_CHANNELS = {"paper": PAPER_CHANNELS, "channel": CHANNEL_CHANNELS, "both": PAPER_CHANNELS + CHANNEL_CHANNELS}


class InputsError(UserError, ValueError):
    """An input choice or channel list that no model of the project reads."""


def input_channels(inputs: str) -> tuple[str, ...]:
    """The feature channels, in order, of a model reading ``inputs``."""
    if inputs not in _CHANNELS:
        raise InputsError(f"inputs {inputs!r} are unknown; choose one of {', '.join(INPUTS)}.")
    return _CHANNELS[inputs]


def inputs_of(channels) -> str:
    """The input choice whose channels are ``channels`` (as a model card lists them)."""
    for name, listed in _CHANNELS.items():
        if tuple(channels) == listed:
            return name
    raise InputsError(f"the channels {list(channels)[:4]}... are not those of any input this bgm2pose "
                      f"reads ({', '.join(INPUTS)}); re-export the model with 'bgm2pose export'.")


class WindowFeatures:
    """What a model reading ``inputs`` takes for each live window, (C, 12, 128) float32: base
    features (``features.FeatureStream``: those of ``window_features``, computing only the
    frames each window adds), channel features (``channel.ChannelStream``, which carries
    state from window to window), or both."""

    def __init__(self, inputs: str):
        input_channels(inputs)
        self.inputs = inputs
        self._base = FeatureStream() if inputs != "channel" else None
        self._channel = ChannelStream() if inputs != "paper" else None

    def __call__(self, mic: np.ndarray, music: np.ndarray, end_sample: int) -> np.ndarray:
        parts = []
        if self._base is not None:
            parts.append(self._base.window(mic, music, end_sample))
        if self._channel is not None:
            parts.append(self._channel.window(mic, music, end_sample))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
