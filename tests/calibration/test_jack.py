"""Calibration through a real JACK server (dummy driver) and the virtual-room client: the
duplex loopback measures the room's known delay plus two periods plus the flight time, the
same in every repeat; the split backend (two streams) measures one clock."""

from __future__ import annotations


import numpy as np
import pytest

from bgm2pose.calibration.latency import measure_latency
from bgm2pose.sensing.backend_duplex import DuplexBackend
from bgm2pose.sensing.backend_split import SplitBackend
from bgm2pose.sensing.backends import refresh_devices
from bgm2pose.sensing.sim.rig import SPEED_OF_SOUND, Rig

FS = 48_000


@pytest.fixture(scope="module")
def room(virtual_room):
    """An empty virtual room as its own process; yields its ready line."""
    with virtual_room("--subject", "none") as (ready, _):
        refresh_devices()
        yield ready


def flight() -> np.ndarray:
    rig = Rig()
    return np.linalg.norm(rig.speakers - rig.mic_position, axis=1) / SPEED_OF_SOUND * FS


def test_duplex_loopback_latency_is_the_room_delay_plus_two_periods_plus_flight(room):
    result = measure_latency(lambda p: DuplexBackend(p, "room", mic_convention="internal"),
                             repeats=3)
    loopback = room["delay_samples"] + 2 * room["period"]
    print(f"\nJACK duplex: latency {result.latency_samples}, device "
          f"{result.device_latency_samples:.3f}, spread {result.spread_samples:.4f}, "
          f"SNR {result.snr_db:.0f} dB")
    np.testing.assert_allclose(result.latency_samples, loopback + flight(), atol=0.25)
    assert result.spread_samples < 0.05  # the same value in all 3 repeats
    assert result.warnings == ()


def test_split_streams_on_one_jack_clock_measure_no_drift(room):
    result = measure_latency(lambda p: SplitBackend(p, "room", "room", convention="internal"),
                             repeats=2)
    print(f"\nJACK split: latency {result.latency_samples}, clock ratio "
          f"{result.clock_ratio:.9f}, spread {result.spread_samples:.4f}")
    assert abs(result.clock_ratio - 1) < 2e-6
    assert result.latency_samples[0] > flight()[0]
    assert result.spread_samples < 0.5 and result.warnings == ()
