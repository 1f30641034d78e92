"""The live estimator on the in-process virtual rig (fast mode) with a real exported network:
one update per hop with the right times, poses that are the model's on the aligned audio,
ground truth and live metrics as an offline computation gives them; the output policies."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from bgm2pose.app.live_engine import LiveEngine, LiveOptions, virtual_scene
from bgm2pose.models.baselines import build_model
from bgm2pose.models.estimator import CaptureClock, EstimatorError, overlap_average, pose_times
from bgm2pose.models.export import export_onnx
from bgm2pose.models.metrics import mae, pckh
from bgm2pose.models.networks import preset
from bgm2pose.models.posefeed import LiveStats, PoseFeed, PoseUpdate
from bgm2pose.sensing.features import window_features
from bgm2pose.sensing.sim.subjects import SUBJECTS
from bgm2pose.sensing.skeleton import normalise

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
FS = 48_000
HOP = 2_400
WINDOW = 28_800
# The card's mean pose: the average subject's rest pose, normalised as the poses are.
MEAN_POSE = normalise(SUBJECTS[0].rest_pose())


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    """The cpu preset, untrained, exported as the live engine loads models."""
    from bgm2pose.sensing.features import FeatureStats

    torch.manual_seed(0)
    torch.set_num_threads(1)
    stats = FeatureStats(mean=np.array([-60, -63, -64, -62, -50, -51, 0.1, -0.05, 0.2]),
                         std=np.array([12, 11, 11, 12, 15, 15, 0.4, 0.3, 0.5]))
    path = tmp_path_factory.mktemp("model") / "cpu.onnx"
    export_onnx(_varied(build_model("bgm2pose", preset("cpu")), stats), stats, path,
                {"mean_pose": MEAN_POSE.reshape(63).tolist()})
    return path


def _varied(model: torch.nn.Module, stats) -> torch.nn.Module:
    """Batch-norm statistics from inputs of the features' scale and an O(1) output layer:
    a freshly initialised network gives the same pose (to 1e-8) whatever it hears."""
    from bgm2pose.models.graph import NetworkInputs

    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    z = torch.randn(16, len(stats.channels), 12, 128)
    inputs = NetworkInputs(stats)(z * torch.tensor(stats.std, dtype=torch.float32)[:, None, None]
                                  + torch.tensor(stats.mean, dtype=torch.float32)[:, None, None])
    with torch.no_grad():
        model.train()
        model(*inputs)
        model.eval()
        head = [m for m in model.modules() if getattr(m, "out_channels", 0) == 63
                or getattr(m, "out_features", 0) == 63][-1]
        head.weight.div_(model(*inputs).std())
    return model


def run_fast(model_path: Path, seconds: float, **options) -> LiveEngine:
    engine = LiveEngine(LiveOptions(model=model_path, realtime=False, seed=2, seconds=seconds,
                                    **options))
    engine.start()
    try:
        while engine.running:
            time.sleep(0.05)
    finally:
        engine.stop()
    return engine


def offline_truth(engine: LiveEngine, end_samples: np.ndarray) -> np.ndarray:
    """Each window's 12 poses from a fresh motion source of the same scene: the frames at
    the window's 12 pose times (whole frames here: hop and window are multiples of 400)."""
    frames = virtual_scene(engine.options).motion().next(int(end_samples.max()) // 400 + 1)
    steps = np.linspace(0, 71, 12)  # 12 evenly spaced from the first frame to the 72nd
    out = []
    for end in end_samples:
        t = (end - WINDOW) / 400 + steps
        lo = np.floor(t).astype(int)
        frac = (t - lo)[:, None, None]
        out.append((1 - frac) * frames[lo] + frac * frames[np.minimum(lo + 1, len(frames) - 1)])
    return normalise(np.stack(out))


def test_fast_virtual_rig_publishes_every_window_with_its_times_poses_truth_and_metrics(
        model_path):
    engine = run_fast(model_path, 3.0)
    updates = engine.feed.history(1000)
    _, stats = engine.feed.latest()
    recorded_end = engine.backend.recorded.end

    # One update per hop, from the first complete window to the last, none skipped.
    assert recorded_end == 3 * FS
    assert len(updates) == (recorded_end - WINDOW) // HOP + 1
    assert [u.seq for u in updates] == list(range(1, len(updates) + 1))
    ends = np.array([round(u.capture_time * FS) for u in updates])
    np.testing.assert_array_equal(ends, WINDOW + HOP * np.arange(len(updates)))
    for u in updates:
        # 12 poses from the window's first pose frame to its last (1/120 s before its end).
        np.testing.assert_allclose(u.times, np.linspace(u.capture_time - 0.6,
                                                        u.capture_time - 1 / 120, 12))
    assert all(b.published >= a.published for a, b in zip(updates, updates[1:]))

    # The poses are the model's on the aligned audio of each window (latency 0 here).
    mic = engine.backend.recorded.read(0, recorded_end)
    music = engine.player.reference.read(0, recorded_end)
    for u, end in list(zip(updates, ends))[::7]:
        base = window_features(mic[:, end - WINDOW:end], music[:, end - WINDOW:end])
        np.testing.assert_allclose(u.poses, engine.model.predict(base), atol=1e-5)
    assert np.ptp(np.stack([u.poses for u in updates]), axis=0).max() > 1e-3  # not constant

    # Ground truth is the scene's motion at the pose times, normalised; metrics pool it all.
    truth = offline_truth(engine, ends)
    np.testing.assert_allclose(np.stack([u.truth for u in updates]), truth, atol=1e-5)
    poses = np.stack([u.poses for u in updates])
    assert stats.mae == pytest.approx(mae(poses, truth), rel=1e-6)
    assert stats.pckh == pytest.approx(pckh(poses, truth), abs=1e-9)
    assert stats.mae > 0.1
    # The mean-pose predictor's MAE pools the same windows' truth.
    assert stats.mean_pose_mae == pytest.approx(
        mae(np.broadcast_to(MEAN_POSE, truth.shape), truth), rel=1e-6)

    assert (stats.windows, stats.dropped, stats.flagged, stats.xruns) == (len(updates), 0, 0, 0)
    assert stats.features_ms > 0 and stats.inference_ms > 0 and stats.e2e_ms > 0
    assert stats.latency_samples == 0.0 and stats.drift_ppm is None and stats.status == ""
    assert stats.backend == "virtual rig" and not engine.running


def test_a_model_reading_both_inputs_gets_the_recordings_channel_features_live(tmp_path):
    from bgm2pose.models.inputs import input_channels
    from bgm2pose.sensing.channel import channel_frames
    from bgm2pose.sensing.features import FeatureStats

    torch.manual_seed(0)
    torch.set_num_threads(1)
    stats = FeatureStats(
        mean=np.concatenate([[-60, -63, -64, -62, -50, -51, 0.1, -0.05, 0.2], np.zeros(8), np.full(8, -30), [0.5]]),
        std=np.concatenate([[12, 11, 11, 12, 15, 15, 0.4, 0.3, 0.5], np.full(8, 0.1), np.full(8, 10), [0.5]]),
        channels=input_channels("both"))
    path = tmp_path / "both.onnx"
    export_onnx(_varied(build_model("bgm2pose", preset("cpu", inputs="both")), stats), stats, path,
                {"mean_pose": MEAN_POSE.reshape(63).tolist()})
    engine = run_fast(path, 4.0)
    updates = engine.feed.history(1000)
    assert engine.model.inputs == "both"
    assert len(updates) == (4 * FS - WINDOW) // HOP + 1
    mic = engine.backend.recorded.read(0, 4 * FS)
    music = engine.player.reference.read(0, 4 * FS)
    channel = channel_frames(mic, music)
    assert channel[-1, -1, 0] == 1.0  # the channel estimate has settled: not all neutral
    for u in updates[::5]:
        end = round(u.capture_time * FS)
        features = np.concatenate([window_features(mic[:, end - WINDOW:end], music[:, end - WINDOW:end]),
                                   channel[:, end // HOP - 12 : end // HOP]])
        np.testing.assert_allclose(u.poses, engine.model.predict(features), atol=1e-4)


def test_average_policy_is_the_mean_of_the_overlapping_windows_at_each_time(model_path):
    engine = run_fast(model_path, 1.5, policy="average")
    updates = engine.feed.history(1000)
    end = engine.backend.recorded.end
    mic = engine.backend.recorded.read(0, end)
    music = engine.player.reference.read(0, end)
    raw = []  # (times, poses) of each window as the model gives them
    for u in updates:
        stop = round(u.capture_time * FS)
        base = window_features(mic[:, stop - WINDOW:stop], music[:, stop - WINDOW:stop])
        raw.append((u.times, engine.model.predict(base).astype(np.float64)))
    assert len(updates) >= 15
    np.testing.assert_allclose(updates[0].poses, raw[0][1], atol=1e-5)
    counts = []
    for k in (5, 14):
        for j, t in enumerate(updates[k].times):
            covering = [np.array([[np.interp(t, times, poses[:, i, c]) for c in range(3)]
                                  for i in range(21)])
                        for times, poses in raw[:k + 1]
                        if times[0] - 1e-9 <= t <= times[-1] + 1e-9]
            counts.append(len(covering))
            np.testing.assert_allclose(updates[k].poses[j], np.mean(covering, axis=0),
                                       atol=1e-5)
    assert max(counts) == 12  # an early time of a late window: every overlapping window


def test_overlap_average_and_interpolation_on_known_tracks():
    times_a = np.array([0.0, 1.0, 2.0])
    times_b = np.array([1.0, 2.0, 3.0])
    a = np.full((3, 21, 3), 1.0)
    b = np.arange(3, dtype=float)[:, None, None] * np.ones((3, 21, 3))  # 0, 1, 2 at 1, 2, 3
    at = np.array([0.5, 1.5, 3.0])
    out = overlap_average([(times_a, a), (times_b, b)], at)
    # 0.5: only a covers it; 1.5: mean of a (1) and b (0.5); 3.0: only b (2).
    np.testing.assert_allclose(out[:, 0, 0], [1.0, 0.75, 2.0])


def test_capture_clock_assigns_real_time_arrival_to_each_sample():
    clock = CaptureClock(FS)
    # Blocks of 512 arrive every 512 / FS s from t = 10; the worker looks at irregular times.
    for k, look in [(1, 0.0), (3, 0.004), (7, 0.001), (9, 0.0)]:
        clock.observe(512 * k, 10 + 512 * k / FS + look)
    # Sample 1000 is in the 2nd block; seen first at k = 3 (its 1536th sample just in).
    assert clock.captured(1000) == pytest.approx(10 + 1536 / FS + 0.004 - 535 / FS)
    assert clock.captured(512 * 9) is None  # not arrived yet
    clock.forget_before(3000)
    assert clock.captured(3000) == pytest.approx(10 + 7 * 512 / FS + 0.001 - 583 / FS)


def test_pose_times_span_the_window_first_to_last_frame():
    t = pose_times(48_000, WINDOW, FS)
    assert t[0] == 1.0 and t[-1] == pytest.approx(1.6 - 1 / 120) and len(t) == 12


def test_pose_feed_hands_over_latest_and_ordered_history_across_threads():
    feed = PoseFeed(history=50)
    assert feed.latest() == (None, None) and feed.history(5) == []
    stats = LiveStats(windows=0, windows_per_s=0, features_ms=0, inference_ms=0, e2e_ms=0,
                      xruns=0, dropped=0, flagged=0, latency_samples=0, drift_ppm=None,
                      mae=None, pckh=None, mean_pose_mae=None, backend="x", status="")

    def publish():
        for seq in range(1, 201):
            feed.publish(PoseUpdate(seq, np.zeros((12, 21, 3), np.float32), np.zeros(12),
                                    None, seq * 0.05, float(seq)), stats)

    seen = []
    writer = threading.Thread(target=publish)
    writer.start()
    while writer.is_alive():
        update, _ = feed.latest()
        seen.append(0 if update is None else update.seq)
    writer.join()
    assert seen == sorted(seen)  # the latest never goes back
    assert [u.seq for u in feed.history(10)] == list(range(191, 201))
    assert len(feed.history(1000)) == 50 and feed.latest()[0].seq == 200


def test_bad_policy_and_smoothing_are_refused_with_the_fix(model_path):
    with pytest.raises(EstimatorError, match="policy 'median' is unknown.*latest, average"):
        LiveEngine(LiveOptions(model=model_path, policy="median"))
    with pytest.raises(EstimatorError, match=r"smoothing 1.5 is outside \[0, 1\)"):
        LiveEngine(LiveOptions(model=model_path, smoothing=1.5))


def test_smoothing_blends_the_previous_published_track_at_the_new_times():
    from types import SimpleNamespace

    from bgm2pose.models.estimator import Estimator

    estimator = Estimator(SimpleNamespace(mean_pose=None, inputs="paper"), SimpleNamespace(sample_rate=FS),
                          SimpleNamespace(window=WINDOW, hop=HOP), PoseFeed(), smoothing=0.25)
    first_times = pose_times(0, WINDOW, FS)
    ramp = first_times[:, None, None] * np.ones((12, 21, 3))  # value = its time
    assert np.array_equal(estimator._apply_policy(first_times, ramp), ramp)  # nothing before
    later = pose_times(HOP, WINDOW, FS)
    out = estimator._apply_policy(later, np.zeros((12, 21, 3)))
    # The previous track at the new times is the time itself, held at its last pose after it.
    previous = np.minimum(later, first_times[-1])
    np.testing.assert_allclose(out[:, 0, 0], 0.25 * previous)
