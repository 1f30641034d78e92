"""Opening a model checks it: a model of another interface, and a card of an unknown format,
of another model or with a malformed mean pose, are one ModelError sentence at load time."""

import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from bgm2pose.models.export import export_onnx
from bgm2pose.models.inference import ModelError, PoseModel, card_path, demo_model_path
from bgm2pose.sensing.features import FeatureStats

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


class _Constant(nn.Module):
    """A network of the project's interface whose poses do not depend on the audio."""

    def __init__(self):
        super().__init__()
        self.pose = nn.Parameter(torch.linspace(-1, 1, 63))

    def forward(self, x, m):
        return self.pose.expand(x.shape[0], 12, 63) + 0 * x.mean()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model path, card) of an exported network, as 'bgm2pose export' writes them."""
    torch.manual_seed(0)
    stats = FeatureStats(mean=np.full(9, -60.0), std=np.full(9, 12.0))
    path = tmp_path_factory.mktemp("model") / "constant.onnx"
    card = export_onnx(_Constant(), stats, path, {"mean_pose": np.zeros((21, 3)).tolist()})
    return path, card


def _copy(exported, folder, **changes):
    """The exported model in ``folder`` with its card changed by ``changes``."""
    path, card = exported
    copy = folder / path.name
    shutil.copy(path, copy)
    card_path(copy).write_text(json.dumps({**card, **changes}))
    return copy


def _slicing_model(path, mels: int, outputs: int) -> None:
    """An ONNX model 'base' (B, 9, 12, mels) -> 'poses' (B, 12, outputs): the first channel's
    first ``outputs`` mel bands."""
    base = helper.make_tensor_value_info("base", TensorProto.FLOAT, ["batch", 9, 12, mels])
    poses = helper.make_tensor_value_info("poses", TensorProto.FLOAT, ["batch", 12, outputs])
    constants = [helper.make_tensor(name, TensorProto.INT64, [len(v)], v) for name, v in
                 (("starts", [0, 0]), ("ends", [1, outputs]), ("axes", [1, 3]),
                  ("channel", [1]))]
    nodes = [helper.make_node("Slice", ["base", "starts", "ends", "axes"], ["sliced"]),
             helper.make_node("Squeeze", ["sliced", "channel"], ["poses"])]
    graph = helper.make_graph(nodes, "slice", [base], [poses], initializer=constants)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.mark.parametrize("mels, outputs, which", [(64, 63, "input"), (128, 60, "output")])
def test_a_model_of_another_interface_is_refused_when_opened(tmp_path, mels, outputs, which):
    path = tmp_path / "other.onnx"
    _slicing_model(path, mels, outputs)
    shutil.copy(demo_model_path().with_suffix(".json"), card_path(path))
    with pytest.raises(ModelError, match=rf"has the {which} .* not a model of this project"):
        PoseModel(path)


def test_a_folder_given_as_the_model_is_called_a_folder(tmp_path):
    with pytest.raises(ModelError, match="is a folder, not a file; pass the file itself"):
        PoseModel(tmp_path)


def test_an_exported_model_opens_with_its_card_and_mean_pose(exported):
    path, card = exported
    model = PoseModel(path)
    assert model.card == card and card["format"] == 2
    assert model.mean_pose.shape == (63,)
    assert model.predict(np.zeros((9, 12, 128), np.float32)).shape == (12, 21, 3)


def test_a_card_of_an_unknown_format_is_refused(exported, tmp_path):
    with pytest.raises(ModelError, match="has format 99, which this bgm2pose does not read"):
        PoseModel(_copy(exported, tmp_path, format=99))


def test_a_card_written_for_another_model_file_is_refused(exported, tmp_path):
    other = tmp_path / "other.onnx"
    shutil.copy(demo_model_path(), other)
    card_path(other).write_text(card_path(exported[0]).read_text())
    with pytest.raises(ModelError, match="written for another model file than other.onnx"):
        PoseModel(other)


def test_a_card_recording_another_interface_is_refused(exported, tmp_path):
    output = {**exported[1]["output"], "shape": ["B", 12, 60]}
    with pytest.raises(ModelError, match=r"records the output 'poses' of shape \['B', 12, 60\]"):
        PoseModel(_copy(exported, tmp_path, output=output))


@pytest.mark.parametrize("mean_pose", [[0.0] * 62, [[1, 2], [3]], [float("nan")] * 63, "rest"])
def test_a_card_with_a_malformed_mean_pose_is_refused(exported, tmp_path, mean_pose):
    with pytest.raises(ModelError, match="mean pose that is not 21 x 3 finite numbers"):
        PoseModel(_copy(exported, tmp_path, mean_pose=mean_pose))
