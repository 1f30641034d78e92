"""The one interface every audio backend offers, and the audio devices PortAudio can see.

A backend plays a ``Player`` on two speakers and records a 4-channel B-format microphone:
- ``player.callback_fill`` produces each played block and writes it into ``player.reference``;
- ``recorded`` (a ``SampleRing`` of 4 channels, internal B-format W X Y Z, see ``bformat``)
  receives every recorded block, so recorded sample n and reference sample m are paired by
  index arithmetic (``aligner``). Both rings count from the backend's first callback.

Implementations: ``backend_duplex.DuplexBackend`` (one PortAudio device, one duplex stream),
``backend_split.SplitBackend`` (an output and an input device, one stream each, on clocks of
their own; the same rtmixer rings and pump) and ``backend_virtual.VirtualBackend`` (the
simulated rig in this process, with ground truth).
The virtual rig as a JACK client (``virtual_room``) is a *device* for ``DuplexBackend``.

The player's decoder (``Player.start`` or ``pump``) belongs to the caller: a backend only calls
``callback_fill``. Lost samples, player underflows and a device that stops are counted in
``stats()``; what was recorded stays in ``recorded`` whatever happens.

PortAudio reads the device list only when it initialises: a JACK client that appears later
(the virtual room) is visible after ``refresh_devices()``, which must run while no stream is
open (it closes them all).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.player import Player
from bgm2pose.sensing.ring import SampleRing

MIC_CHANNELS = 4
SPEAKER_CHANNELS = 2


class BackendError(UserError, RuntimeError):
    """An audio device or backend setting that cannot be used."""


@dataclass(frozen=True)
class BackendStats:
    callbacks: int  # blocks played and recorded
    input_overflows: int  # input samples the device dropped (before a block)
    input_underflows: int  # blocks the device padded with zeros
    output_underflows: int  # gaps the device inserted into the played audio
    output_overflows: int  # played samples the device discarded
    player_underflows: int  # blocks the player had no decoded audio for (see Player)
    late_blocks: int  # virtual rig: blocks rendered after their real-time deadline
    error: str | None  # why the backend stopped on its own (device gone, render failure)

    @property
    def xruns(self) -> int:
        """Device-side losses: every over- and underflow of the device."""
        return (self.input_overflows + self.input_underflows
                + self.output_underflows + self.output_overflows)


class AudioBackend(ABC):
    """Plays ``player`` and records ``recorded``; see the module docstring."""

    name: str
    sample_rate: int
    player: Player
    recorded: SampleRing

    @abstractmethod
    def start(self) -> None:
        """Open the device (or start the rig) and begin playing and recording."""

    @abstractmethod
    def stop(self) -> None:
        """Stop playing and recording; safe to call twice and after the device is gone."""

    @abstractmethod
    def stats(self) -> BackendStats:
        """Counters since ``start``."""

    @property
    @abstractmethod
    def running(self) -> bool:
        """Started, not stopped, and the device (or rig) still delivering blocks."""

    def ground_truth(self, start_sample: int, n: int) -> np.ndarray | None:
        """Poses (frames, 21, 3) of the frames whose time lies in recorded samples
        [start_sample, start_sample + n); None for a real room, where nobody knows them."""
        return None

    def __enter__(self) -> AudioBackend:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    host_api: str
    max_input_channels: int
    max_output_channels: int
    default_sample_rate: float

    @property
    def can_duplex(self) -> bool:
        """Enough channels for ``DuplexBackend``: a B-format mic in, two speakers out."""
        return (self.max_input_channels >= MIC_CHANNELS
                and self.max_output_channels >= SPEAKER_CHANNELS)


def list_devices() -> list[DeviceInfo]:
    """Every audio device PortAudio knows (as of its last initialisation)."""
    import sounddevice as sd

    apis = sd.query_hostapis()
    return [DeviceInfo(index=d["index"], name=d["name"], host_api=apis[d["hostapi"]]["name"],
                       max_input_channels=d["max_input_channels"],
                       max_output_channels=d["max_output_channels"],
                       default_sample_rate=d["default_samplerate"])
            for d in sd.query_devices()]


def refresh_devices() -> None:
    """Re-initialise PortAudio so it sees devices (JACK clients) that appeared since; closes
    every open stream, so call it only while none is open."""
    import sounddevice as sd

    sd._terminate()
    sd._initialize()
