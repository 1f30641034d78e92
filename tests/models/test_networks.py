import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from bgm2pose.models.baselines import METHODS, Shibata, build_model
from bgm2pose.models.losses import (
    LossError,
    LossWeights,
    clip_loss,
    loss_weights,
    pose_loss,
    subject_confusion_loss,
    total_loss,
    velocity_loss,
)
from bgm2pose.models.networks import (
    N_C,
    N_M,
    N_X,
    BGM2Pose,
    NetConfig,
    NetworkError,
    Trunk1d,
    count_macs,
    preset,
)
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.features import CHANNELS, FeatureStats, network_inputs

torch.set_num_threads(1)

ABLATIONS = [
    {},
    {"use_cpe": False},
    {"use_fa": False},
    {"music_conditioning": False},
    {"use_fa": False, "music_conditioning": False},
    {"fa_variant": "code"},
    {"fa_variant": "code", "music_conditioning": False},
]


def _inputs(b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 11, 12, 128, generator=g), torch.randn(b, 2, 12, 128, generator=g)


def _smooth_poses(b: int, seed: int = 1) -> torch.Tensor:
    """A random pose per window drifting slowly over its 12 frames."""
    g = torch.Generator().manual_seed(seed)
    base, drift = torch.randn(b, 1, 63, generator=g), 0.05 * torch.randn(b, 1, 63, generator=g)
    return base + drift * torch.arange(12.0).view(1, 12, 1)


def _check_maps_to_poses(model: nn.Module, embed_width: int | None) -> None:
    for b in (1, 3):
        x, m = _inputs(b)
        model.train()
        poses, emb = model.forward_train(x, m)
        assert poses.shape == (b, 12, 63) and torch.isfinite(poses).all()
        if embed_width is None:
            assert emb is None
        else:
            assert emb.shape == (b, embed_width)
            torch.testing.assert_close(emb.norm(dim=1), torch.ones(b))
        model.eval()
        with torch.no_grad():
            inferred = model(x, m)
            trained_path, _ = model.forward_train(x, m)
        assert inferred.shape == (b, 12, 63)
        # In eval mode the inference path is exactly the training path's pose output.
        torch.testing.assert_close(inferred, trained_path)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_maps_windows_to_12_poses(method):
    torch.manual_seed(0)
    config = preset("cpu")
    embed = config.trunk_width if method == "bgm2pose" else None
    _check_maps_to_poses(build_model(method, config), embed)


@pytest.mark.parametrize("switches", ABLATIONS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "full")
def test_every_bgm2pose_ablation_maps_windows_to_12_poses(switches):
    torch.manual_seed(0)
    config = preset("cpu", **switches)
    model = BGM2Pose(config)
    _check_maps_to_poses(model, config.trunk_width if config.use_cpe else None)
    if config.use_cpe:
        emb = model.pose_embedding(_smooth_poses(3))
        assert emb.shape == (3, config.trunk_width)
        torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    else:
        with pytest.raises(NetworkError):
            model.pose_embedding(_smooth_poses(3))


def test_music_switch_controls_whether_music_reaches_the_output():
    x, m = _inputs(2)
    _, other_m = _inputs(2, seed=5)
    for conditioned in (True, False):
        torch.manual_seed(0)
        model = _calibrated(BGM2Pose(preset("cpu", music_conditioning=conditioned, use_cpe=False)))
        with torch.no_grad():
            changed = (model(x, m) - model(x, other_m)).abs().max().item()
        assert changed > 1e-2 if conditioned else changed == 0.0


def test_paper_preset_has_the_published_widths_and_maps_a_window():
    torch.manual_seed(0)
    model = BGM2Pose(preset("paper")).eval()
    convs = [mod for mod in model.modules() if isinstance(mod, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (11, 64), (64, 64), (64, 128), (128, 128),  # recorded branch
        (2, 64), (64, 64), (64, 128), (128, 128),  # music branch
        (128, 256), (256, 256), (256, 256), (256, 256), (256, 256), (256, 256),
    ]
    assert model.freq_embedding.shape == (128, 128)
    trunk = model.trunk[1]
    assert (trunk.in_channels, trunk.out_channels, trunk.kernel_size) == (256 * 16, 256, (2,))
    x, m = _inputs(1)
    with torch.no_grad():
        assert model(x, m).shape == (1, 12, 63)


def test_trunk_keeps_12_frames_and_frame_t_sees_frames_t_minus_1_and_t():
    trunk = Trunk1d(8, 4).eval()
    h = torch.randn(1, 8, 12)
    h2 = h.clone()
    h2[..., 5] += 1.0
    with torch.no_grad():
        changed = (trunk(h) - trunk(h2)).abs().amax(dim=1)[0]
    assert changed.shape == (12,)
    assert set(torch.nonzero(changed > 1e-6).flatten().tolist()) == {5, 6}


def test_bad_inputs_and_configs_raise_user_errors():
    model = build_model("ginosar", preset("cpu"))
    x, m = _inputs(2)
    with pytest.raises(NetworkError, match="expected"):
        model(x[:, :, :, :64], m)
    with pytest.raises(NetworkError):
        model(x, m[:, :1])
    with pytest.raises(UserError):
        preset("cpu", fa_variant="fancy")
    with pytest.raises(UserError):
        preset("gpu")
    with pytest.raises(UserError):
        build_model("resnet", preset("cpu"))
    with pytest.raises(UserError):
        NetConfig.from_dict({**preset("cpu").to_dict(), "depth": 3})


def test_config_round_trips_through_json():
    config = preset("cpu", fa_variant="code", use_cpe=False, n_subjects=7)
    back = NetConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config
    assert back.branch_widths == (16, 32) and back.d == 32


def test_shibata_sees_the_standardised_mic_log_mel_and_intensity():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, len(CHANNELS), 12, 128)) * 5 + rng.normal(size=(1, len(CHANNELS), 1, 1)) * 20
    stats = FeatureStats.fit(base)
    x, m = network_inputs(base, stats)
    z = (base - stats.mean[:, None, None]) / stats.std[:, None, None]
    expected = np.concatenate([z[:, :4], z[:, 6:9]], axis=1)
    got = Shibata(preset("cpu")).paper(torch.from_numpy(x), torch.from_numpy(m)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("inputs", ["channel", "both"])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_reads_the_channel_features_and_they_matter(method, inputs):
    torch.manual_seed(0)
    model = build_model(method, preset("cpu", inputs=inputs)).eval()
    x, m = torch.randn(2, N_X, 12, 128), torch.randn(2, N_M, 12, 128)
    c = torch.randn(2, N_C, 12, 128, requires_grad=True)
    paper = (x, m) if inputs == "both" else (None, None)
    poses = model(*paper, c)
    assert poses.shape == (2, 12, 63)
    poses.square().sum().backward()
    assert c.grad.abs().sum() > 0  # the channel features reach the output
    with pytest.raises(NetworkError, match="channel input"):
        model(*paper, None)


def test_shibata_discriminator_and_confusion_term():
    torch.manual_seed(0)
    config = preset("cpu", n_subjects=5)
    model = build_model("shibata", config)
    x, m = _inputs(3)
    features = model.features(x, m)
    logits = model.discriminator(features)
    assert logits.shape == (3, 5)
    terms = total_loss(model.decoder(features), _smooth_poses(3), loss_weights("shibata", config),
                       subject_logits=logits)
    terms.total.backward()
    assert model.encoder[0][0].weight.grad.abs().sum() > 0
    assert subject_confusion_loss(torch.zeros(4, 5)).item() == pytest.approx(0.0, abs=1e-7)
    peaked = torch.tensor([[20.0, 0, 0, 0, 0]])
    assert subject_confusion_loss(peaked).item() == pytest.approx(np.std([1, 0, 0, 0, 0], ddof=1), rel=1e-4)
    with pytest.raises(NetworkError):
        build_model("shibata", preset("cpu")).discriminator(features)


def test_velocity_term_ignores_a_constant_offset_and_sees_jitter():
    gt = _smooth_poses(4)
    offset = torch.randn(4, 1, 63)
    assert velocity_loss(gt + offset, gt).item() == pytest.approx(0.0, abs=1e-10)
    assert pose_loss(gt + offset, gt).item() == pytest.approx((offset**2).mean().item(), rel=1e-5)
    jitter = 0.1 * (-1.0) ** torch.arange(12.0).view(1, 12, 1)
    # Differences of +-0.1 alternating are +-0.2: velocity MSE 0.04, pose MSE 0.01.
    assert velocity_loss(gt + jitter, gt).item() == pytest.approx(0.04, rel=1e-5)
    assert pose_loss(gt + jitter, gt).item() == pytest.approx(0.01 + 100 * 0.04, rel=1e-5)


def test_clip_loss_is_log_batch_for_random_and_zero_for_matched_embeddings():
    g = torch.Generator().manual_seed(0)
    b = 64
    a = nn.functional.normalize(torch.randn(b, 2048, generator=g), dim=1)
    p = nn.functional.normalize(torch.randn(b, 2048, generator=g), dim=1)
    # Random unit vectors in 2048-d: cosines ~ N(0, 1/2048), logits ~ N(0, 0.1): ~ log B.
    assert clip_loss(a, p).item() == pytest.approx(np.log(b), abs=0.15)
    onehot = torch.eye(b, 128)
    assert clip_loss(onehot, onehot).item() < 1e-3
    # A wrong pairing costs the full logit scale.
    assert clip_loss(onehot, onehot.roll(1, dims=0)).item() > 14.0
    torch.testing.assert_close(clip_loss(a, p), clip_loss(p, a))


def test_total_loss_needs_the_inputs_of_its_weighted_terms():
    gt = _smooth_poses(2)
    with pytest.raises(LossError):
        total_loss(gt, gt, LossWeights(clip=1.0))
    with pytest.raises(LossError):
        total_loss(gt, gt, LossWeights(clip=0.0, confusion=1.0))
    with pytest.raises(LossError):
        total_loss(gt[:, :6], gt, LossWeights(clip=0.0))
    assert loss_weights("bgm2pose", preset("cpu", use_cpe=False)).clip == 0.0
    assert loss_weights("shibata", preset("cpu")).velocity == 1.0


def _overfit(model: nn.Module, steps: int, lr: float, weights: LossWeights) -> tuple[list, list]:
    torch.manual_seed(0)
    x, m = _inputs(16, seed=3)
    gt = _smooth_poses(16)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    history = []
    for _ in range(steps):
        poses, emb = model.forward_train(x, m)
        pose_emb = model.pose_embedding(gt) if emb is not None else None
        terms = total_loss(poses, gt, weights, emb, pose_emb)
        opt.zero_grad()
        terms.total.backward()
        opt.step()
        history.append(terms)
    return history[0], history[-1]


# The paper's 100x velocity weight spends the first few dozen steps smoothing; weight 1
# keeps the test about fitting (every term, CPE included, must fall).
OVERFIT_WEIGHTS = LossWeights(velocity=1.0, clip=1.0)


def test_bgm2pose_cpu_with_cpe_overfits_16_windows():
    torch.manual_seed(0)
    first, last = _overfit(BGM2Pose(preset("cpu")), steps=30, lr=3e-3, weights=OVERFIT_WEIGHTS)
    assert last.total.item() < first.total.item() / 10
    assert last.pose.item() < first.pose.item() / 3
    assert last.clip.item() < first.clip.item() / 10


def test_jiang_baseline_overfits_16_windows():
    torch.manual_seed(0)
    weights = LossWeights(velocity=1.0, clip=0.0)
    first, last = _overfit(build_model("jiang", preset("cpu")), steps=80, lr=3e-3, weights=weights)
    assert last.total.item() < first.total.item() / 10


def _jiang_macs(w: int) -> int:
    """By hand: per frame a 4-stage Conv1d k3 encoder over mel (13 -> w/4 -> w/2 -> w -> w,
    halving 128 bins each stage), Linear(8 w -> w); a 3-layer LSTM(w); Linear(w -> 63)."""
    widths, c_in, bins, per_frame = (w // 4, w // 2, w, w), 13, 128, 0
    for c in widths:
        per_frame += c_in * c * 3 * bins
        c_in, bins = c, bins // 2
    per_frame += 8 * w * w + 3 * 4 * w * (w + w) + w * 63
    return 12 * per_frame


def test_count_macs_counts_lstm_and_attention():
    assert count_macs(build_model("jiang", preset("cpu"))) == _jiang_macs(64)
    assert count_macs(build_model("jiang", preset("paper"))) == _jiang_macs(256)
    paper = count_macs(BGM2Pose(preset("cpu")))
    code = count_macs(BGM2Pose(preset("cpu", fa_variant="code")))
    # The code variant's attention has one more d x d projection (the output one) over the
    # 12 x 128 tokens; its fused attention kernel must count like the paper's matmuls.
    assert code - paper == 12 * 128 * 32 * 32
    assert paper <= 0.3e9 < count_macs(BGM2Pose(preset("paper")))


def _calibrated(model: nn.Module) -> nn.Module:
    """Eval mode with batch-norm statistics from a batch of inputs and an O(1) pose head, as
    after training; a fresh network's identity statistics shrink every layer's output."""
    for mod in model.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.reset_running_stats()
            mod.momentum = None  # cumulative average: one batch sets the statistics
    model.train()
    with torch.no_grad():
        model(*_inputs(8, seed=99))
        head = model.decoder.head.conv
        nn.init.normal_(head.weight, std=head.in_channels**-0.5)
    return model.eval()


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore:.*axis name:UserWarning")
def test_bgm2pose_cpu_onnx_export_matches_torch(tmp_path):
    torch.manual_seed(0)
    model = _calibrated(BGM2Pose(preset("cpu")))
    x, m = _inputs(2)
    batch = torch.export.Dim("batch", min=1, max=1024)
    path = tmp_path / "bgm2pose.onnx"
    torch.onnx.export(
        model, (x, m), str(path), dynamo=True, external_data=False,
        dynamic_shapes={"x": {0: batch}, "m": {0: batch}},
        input_names=["x", "m"], output_names=["poses"], verbose=False,
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for b in (1, 3):
        x, m = _inputs(b, seed=10 + b)
        with torch.no_grad():
            expected = model(x, m).numpy()
        got = session.run(["poses"], {"x": x.numpy(), "m": m.numpy()})[0]
        assert got.shape == (b, 12, 63)
        assert expected.std() > 0.3  # a real signal, not a near-constant output
        assert np.abs(got - expected).max() < 1e-4
