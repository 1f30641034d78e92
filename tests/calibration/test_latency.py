"""Sweep latency measurement on the virtual rig with injected device latencies (truth: device
latency + direct-path flight, the renderer's only offset), and the clear refusals and
warnings for a muted mic, a clipped recording, swapped conventions and swapped speakers."""

from __future__ import annotations

import numpy as np
import pytest

from bgm2pose.calibration.latency import CalibrationError, measure_latency
from bgm2pose.calibration.peaks import subsample_peak
from bgm2pose.calibration.sweep import deconvolve, exponential_sweep
from bgm2pose.sensing.backend_virtual import VirtualBackend, VirtualScene
from bgm2pose.sensing.bformat import from_internal, to_internal
from bgm2pose.sensing.ring import Mark
from bgm2pose.sensing.sim.rig import SPEED_OF_SOUND, Rig
from bgm2pose.sensing.skew import StreamSkew

FS = 48_000
EMPTY = VirtualScene(subject=None)  # nobody in the direct path while calibrating


class Tampered:
    """A renderer whose output passes through ``change`` (a broken mic, a wrong convention)."""

    def __init__(self, renderer, change):
        self.renderer, self.change = renderer, change

    def process(self, music):
        return self.change(self.renderer.process(music)).astype(np.float32)


def virtual(scene=EMPTY, change=None, convention=None, **options):
    def make(player):
        backend = VirtualBackend(player, scene, realtime=False, **options)
        if change is not None:
            backend.renderer = Tampered(backend.renderer, change)
        if convention is not None:  # what the user set; the rig delivers something else
            backend.mic_convention = convention
        return backend
    return make


def flight(rig: Rig) -> np.ndarray:
    return np.linalg.norm(rig.speakers - rig.mic_position, axis=1) / SPEED_OF_SOUND * FS


def test_deconvolved_sweep_peaks_at_the_fractional_delay():
    sweep = exponential_sweep(1.0, FS)
    played = np.concatenate([sweep, np.zeros(FS // 2, np.float32)])
    for delay in (3.3, 250.0, 777.77):
        skew = StreamSkew(1, delay)
        recorded = np.concatenate([skew.process(played[None, a:a + 512])
                                   for a in range(0, played.size, 512)], axis=1)
        h = deconvolve(recorded, sweep, FS, length=FS // 4)[0]
        assert subsample_peak(h, int(np.argmax(h))) == pytest.approx(delay, abs=0.01)


@pytest.mark.parametrize("device_latency", [0.0, 1234.37, 9600.0])  # up to 0.2 s
def test_measured_latency_is_within_a_quarter_sample_of_the_truth(device_latency):
    rig = EMPTY.rig
    result = measure_latency(virtual(device_latency=device_latency), repeats=2, rig=rig)
    truth = device_latency + flight(rig)
    np.testing.assert_allclose(result.latency_samples, truth, atol=0.25)
    assert result.device_latency_samples == pytest.approx(device_latency, abs=0.25)
    np.testing.assert_allclose(result.distances_m,
                               np.linalg.norm(rig.speakers - rig.mic_position, axis=1),
                               atol=0.25 / FS * SPEED_OF_SOUND)
    assert result.snr_db > 40 and result.warnings == () and result.spread_samples < 0.05
    assert result.impulse_responses.shape == (2, 4, FS // 2)


def test_a_muted_mic_is_refused():
    with pytest.raises(CalibrationError, match="recorded nothing but zeros.*unmute"):
        measure_latency(virtual(change=np.zeros_like), repeats=1)
    rng = np.random.default_rng(0)
    with pytest.raises(CalibrationError, match="no clear response to the left speaker"):
        measure_latency(virtual(change=lambda y: 1e-3 * rng.standard_normal(y.shape)),
                        repeats=1)


def test_a_clipped_recording_is_refused():
    with pytest.raises(CalibrationError, match="clipped.*lower the sweep level"):
        measure_latency(virtual(change=lambda y: np.clip(30 * y, -1, 1)), repeats=1)


@pytest.mark.parametrize("delivered, configured", [("fuma", "ambix"), ("ambix", "fuma")])
def test_swapped_ambix_and_fuma_channels_are_named_with_the_fix(delivered, configured):
    # The mic delivers one convention, the backend converts it as the other.
    def misread(y):
        return to_internal(from_internal(y, delivered), configured)
    result = measure_latency(virtual(change=misread, convention=configured), repeats=1)
    assert result.warnings == ((f"the microphone's channels fit the {delivered} convention, "
                                f"not {configured} as set; select {delivered} "
                                f"(--convention {delivered})"),)
    # W is channel 0 in both conventions: the latency itself is still right.
    np.testing.assert_allclose(result.latency_samples, flight(EMPTY.rig), atol=0.25)


def test_left_and_right_speakers_swapped_are_named():
    nominal = Rig()
    swapped = Rig(speaker_left=nominal.speaker_right, speaker_right=nominal.speaker_left)
    result = measure_latency(virtual(scene=VirtualScene(rig=swapped, subject=None)),
                             repeats=1, rig=nominal)
    assert len(result.warnings) == 1
    assert "speaker outputs are swapped" in result.warnings[0]
    # A correct rig gives no warning (the test above), so the warning is about the swap.


def test_an_inverted_front_axis_is_named():
    def invert_x(y):
        return y * np.array([1, -1, 1, 1], np.float32)[:, None]
    result = measure_latency(virtual(change=invert_x), repeats=1)
    assert result.warnings and "X (front) is inverted" in result.warnings[0]


class LosesSamples:
    """A renderer whose device loses ``lost`` samples at its ``at``-th block and marks it, as a
    split device's capture stream does after an xrun: every later sample comes that much early."""

    def __init__(self, backend, at: int, lost: int = 256):
        self.renderer, self.backend, self.at, self.lost = backend.renderer, backend, at, lost
        self.calls = 0

    def process(self, music):
        out = self.renderer.process(music)
        self.calls += 1
        if self.calls != self.at:
            return out
        recorded = self.backend.recorded
        recorded.events.mark(recorded.end, Mark.XRUN, self.lost)
        return out[:, self.lost:]


def glitching(takes: int):
    """A factory whose first ``takes`` backends lose samples halfway through the take."""
    made = []

    def make(player):
        backend = VirtualBackend(player, EMPTY, realtime=False)
        if len(made) < takes:
            backend.renderer = LosesSamples(backend, at=500)
        made.append(backend)
        return backend
    return make


def test_a_take_in_which_the_audio_glitched_is_measured_again():
    said = []
    result = measure_latency(glitching(1), repeats=2,
                             progress=lambda fraction, text: said.append(text))
    np.testing.assert_allclose(result.latency_samples, flight(EMPTY.rig), atol=0.25)
    assert result.spread_samples < 0.05
    assert "the audio glitched (1 xruns) and the sweeps disagree; measuring again" in said


def test_audio_that_glitches_in_every_take_is_refused_with_the_cause():
    with pytest.raises(CalibrationError, match=r"glitched in each of 3 takes \(1, 1, 1 xruns"
                                               r".*close other programs"):
        measure_latency(glitching(3), repeats=2)
