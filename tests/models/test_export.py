"""Export to ONNX with the standardisation inside, and inference through PoseModel."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from bgm2pose.models.baselines import METHODS, build_model
from bgm2pose.models.export import ExportError, card_path, export_onnx
from bgm2pose.models.graph import NetworkInputs
from bgm2pose.models.inference import ModelError, PoseModel, demo_model_path
from bgm2pose.models.inputs import WindowFeatures, input_channels
from bgm2pose.models.networks import preset
from bgm2pose.sensing.channel import CHANNELS as CHANNEL_CHANNELS
from bgm2pose.sensing.errors import UserError
from bgm2pose.sensing.features import FeatureStats, network_inputs

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


def _stats() -> FeatureStats:
    # Log-mel channels around -60 dB, intensity around 0: the scale of real features.
    mean = np.array([-60, -63, -64, -62, -50, -51, 0.1, -0.05, 0.2])
    std = np.array([12, 11, 11, 12, 15, 15, 0.4, 0.3, 0.5])
    return FeatureStats(mean=mean, std=std)


def _base(stats: FeatureStats, batch: int, seed: int) -> np.ndarray:
    z = np.random.default_rng(seed).standard_normal((batch, len(stats.channels), 12, 128)).astype(np.float32)
    return z * stats.std[:, None, None] + stats.mean[:, None, None]


def _trained_like(model: nn.Module, stats: FeatureStats) -> nn.Module:
    """Batch-norm statistics from real-scale inputs and O(1) output weights, as after
    training: a fresh network's outputs are too small for parity to mean anything."""
    for mod in model.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.reset_running_stats()
            mod.momentum = None
    inputs = NetworkInputs(stats)(torch.from_numpy(_base(stats, 8, seed=99)))
    model.train()
    with torch.no_grad():
        model(*inputs)
        model.eval()
        head = [m for m in model.modules() if getattr(m, "out_channels", getattr(m, "out_features", 0)) == 63]
        head[-1].weight.div_(model(*inputs).std())
    return model


@pytest.mark.parametrize("method", METHODS)
def test_onnx_matches_torch_from_raw_base_features(tmp_path, method):
    torch.manual_seed(0)
    stats = _stats()
    model = _trained_like(build_model(method, preset("cpu")), stats)
    path = tmp_path / f"{method}.onnx"
    card = export_onnx(model, stats, path, {"method": method, "data": {"sessions": 3}})
    assert card["parity_max_abs"] < 1e-4
    pm = PoseModel(path)
    base = _base(stats, 5, seed=7)
    # torch reference built independently: numpy standardisation + the bare network.
    x, m = network_inputs(base, stats)
    with torch.no_grad():
        expected = model(torch.from_numpy(x), torch.from_numpy(m)).numpy().reshape(5, 12, 21, 3)
    got = pm.predict(base)
    assert got.shape == (5, 12, 21, 3) and got.dtype == np.float32
    assert expected.std() > 0.3
    assert np.abs(got - expected).max() < 1e-4
    assert np.abs(pm.predict(base[2]) - expected[2]).max() < 1e-4


@pytest.mark.parametrize("method, inputs", [("bgm2pose", "channel"), ("bgm2pose", "both"), ("shibata", "both")])
def test_onnx_with_the_channel_branch_matches_torch_and_reads_what_its_card_lists(tmp_path, method, inputs):
    torch.manual_seed(0)
    paper = _stats()
    rng = np.random.default_rng(3)
    channel = FeatureStats(mean=rng.normal(size=17) * 5, std=rng.uniform(0.5, 5, 17), channels=CHANNEL_CHANNELS)
    stats = channel if inputs == "channel" else FeatureStats(
        mean=np.concatenate([paper.mean, channel.mean]), std=np.concatenate([paper.std, channel.std]),
        channels=input_channels("both"))
    model = _trained_like(build_model(method, preset("cpu", inputs=inputs)), stats)
    path = tmp_path / f"{inputs}.onnx"
    card = export_onnx(model, stats, path, {})
    assert card["parity_max_abs"] < 1e-4
    assert card["input"]["channels"] == list(input_channels(inputs))
    pm = PoseModel(path)
    assert pm.inputs == inputs
    features = (rng.standard_normal((4, len(stats.channels), 12, 128)) * stats.std[:, None, None]
                + stats.mean[:, None, None]).astype(np.float32)
    z = (features - stats.mean[:, None, None]) / stats.std[:, None, None]
    c = torch.from_numpy(z[:, -17:])
    x, m = network_inputs(features[:, :9], paper) if inputs == "both" else (None, None)
    with torch.no_grad():
        expected = model(None if x is None else torch.from_numpy(x), None if m is None else torch.from_numpy(m),
                         c).numpy().reshape(4, 12, 21, 3)
    assert expected.std() > 0.3
    assert np.abs(pm.predict(features) - expected).max() < 1e-4
    with pytest.raises(ModelError, match="17, 12, 128|26, 12, 128"):
        pm.predict(features[:, :9])


def test_card_records_config_stats_and_caller_fields(tmp_path):
    stats = _stats()
    path = tmp_path / "m.onnx"
    export_onnx(build_model("bgm2pose", preset("cpu", use_fa=False)), stats, path,
                {"data": {"windows": 12}, "metrics": {"mae": 0.5}})
    card = json.loads(card_path(path).read_text())
    assert card["method"] == "bgm2pose" and card["preset"] == "cpu"
    assert card["config"]["use_fa"] is False
    assert card["data"] == {"windows": 12} and card["metrics"] == {"mae": 0.5}
    assert FeatureStats.from_dict(card["feature_stats"]).mean.tolist() == stats.mean.tolist()
    assert card["input"]["name"] == "base" and card["output"]["name"] == "poses"
    assert "created" in card and "git_revision" in card
    assert PoseModel(path).card == card


def test_bad_paths_and_inputs_raise_user_errors(tmp_path):
    stats = _stats()
    with pytest.raises(ExportError):
        export_onnx(build_model("jiang", preset("cpu")), stats, tmp_path / "m.bin", {})
    with pytest.raises(ModelError, match="does not exist"):
        PoseModel(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(ModelError, match="cannot load"):
        PoseModel(tmp_path / "junk.onnx")
    path = tmp_path / "ok.onnx"
    export_onnx(build_model("ginosar", preset("cpu")), stats, path, {})
    model = PoseModel(path)
    with pytest.raises(ModelError, match="expected"):
        model.predict(np.zeros((2, 9, 12, 64), np.float32))
    card_path(path).unlink()
    with pytest.raises(ModelError, match="card"):
        PoseModel(path)


def test_demo_model_is_package_data_or_explains_how_to_make_it():
    path = demo_model_path()
    assert path.name == "demo.onnx" and path.parent.name == "pretrained"
    if path.is_file():
        model = PoseModel(path)
        # Whatever it reads, as the live engine computes it for a window.
        silence = np.zeros((4, 28_800), np.float32)
        features = WindowFeatures(model.inputs)(silence, silence[:2], 28_800)
        assert model.predict(features).shape == (12, 21, 3)
    else:
        with pytest.raises(UserError, match="bgm2pose export"):
            PoseModel(path)
