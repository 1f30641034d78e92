"""``bgm2pose train`` end to end on session folders: it stops on a plateau of the loss of a
validation subject that is never a test subject, metrics.json and the exported model card
record the run, a run killed mid-way resumes to the uninterrupted result, and a fine-tuning
(``--init``) starts from an exported model's weights."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bgm2pose.app.cli import main
from bgm2pose.models.baselines import build_model
from bgm2pose.models.networks import PRESETS
from bgm2pose.models.inference import PoseModel
from bgm2pose.models.start import StartError, load_start, starting_point
from bgm2pose.models.train import CHECKPOINT, load_checkpoint
from bgm2pose.sensing.session import SessionInfo, write_session
from bgm2pose.sensing.sim.motion import SUBJECTS, generate_motion

torch.set_num_threads(1)
SR = 48_000
SECONDS = 6.0  # 10 windows per session
TRACKS = ("ambient-0000", "jazz-0000")
# The cpu preset's topology at small widths, so an epoch takes a fraction of a second.
TINY = {"branch_widths": (8, 16), "block_widths": (16, 16, 16), "trunk_width": 32, "baseline_width": 32}
DEMO = Path(__file__).resolve().parents[2] / "models" / "pretrained" / "demo.onnx"
ARGS = ["--method", "jiang", "--batch-size", "8", "--lr", "1e-2", "--epochs", "30", "--test-subjects", "S4"]


def _write(root, subject, track, seed):
    """One session: noise "recording", the track's shared music, the subject's real motion."""
    n = int(SECONDS * SR)
    music = 0.1 * np.random.default_rng(TRACKS.index(track)).standard_normal((2, n)).astype(np.float32)
    mic = 0.1 * np.random.default_rng(seed).standard_normal((4, n)).astype(np.float32)
    poses = generate_motion(subject, SECONDS, seed=seed)
    write_session(root / f"{subject.name}_{track}", SessionInfo(subject={"name": subject.name}, track=track),
                  mic, music, poses)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """4 subjects x 2 tracks; S4 is the test subject."""
    root = tmp_path_factory.mktemp("data")
    for si, subject in enumerate(SUBJECTS[:4]):
        for ti, track in enumerate(TRACKS):
            _write(root, subject, track, seed=10 * ti + si)
    return root


@pytest.fixture(scope="module")
def tiny_preset():
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(PRESETS, "cpu", replace(PRESETS["cpu"], **TINY))
        yield


def _train(data, out, *extra) -> dict:
    assert main(["train", str(data), "--out", str(out), *ARGS, *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(dataset, tiny_preset, tmp_path_factory):
    """(out folder, metrics) of a run with patience 6, long enough to be killed mid-way."""
    out = tmp_path_factory.mktemp("uninterrupted")
    return out, _train(dataset, out, "--patience", "6")


def test_stop_epoch_and_losses_ignore_the_test_subject(dataset, tiny_preset, tmp_path, capsys):
    first = _train(dataset, tmp_path / "first", "--patience", "2")
    training = first["training"]
    assert training["stop"] == "plateau" and training["epochs_run"] == training["best_epoch"] + 2 < 30
    assert training["validation"]["subjects"] == ["S3"]  # the last training subject, not S4
    assert all("val_pose" in h and "loss" in h for h in training["history"])
    # The test subject's sessions replaced by other noise and another person's motion.
    other = shutil.copytree(dataset, tmp_path / "other", ignore=shutil.ignore_patterns(".windows"))
    for ti, track in enumerate(TRACKS):
        shutil.rmtree(other / f"S4_{track}")
        _write(other, replace(SUBJECTS[6], name="S4"), track, seed=99 + ti)
    second = _train(other, tmp_path / "second", "--patience", "2")
    assert second["training"]["history"] == training["history"]  # every train and val loss
    assert second["model"]["mae"] != first["model"]["mae"]  # while the test did see the new S4
    capsys.readouterr()
    assert main(["train", str(dataset), "--out", str(tmp_path / "bad"), *ARGS, "--val-subjects", "S4"]) == 2
    err = capsys.readouterr().err  # after the loading bar, one sentence
    assert "Traceback" not in err and err.splitlines()[-1].startswith("bgm2pose train: error: validation subjects")
    assert "not training subjects" in err.splitlines()[-1]


WORKER = """
import sys
from dataclasses import replace
from pathlib import Path
import torch
torch.set_num_threads(1)
from bgm2pose.models.networks import PRESETS
PRESETS["cpu"] = replace(PRESETS["cpu"], **{tiny!r})
from bgm2pose.app.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_run_resumes_to_the_uninterrupted_result(dataset, uninterrupted, tmp_path):
    full_out, full = uninterrupted
    out = tmp_path / "killed"
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER.format(tiny=TINY)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), "train", str(dataset), "--out", str(out), *ARGS,
                             "--patience", "6"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / CHECKPOINT).is_file():
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert load_checkpoint(out / CHECKPOINT)["record"]["stop"] is None  # killed mid-run
    resumed = _train(dataset, out, "--patience", "6", "--resume")
    for name in ("history", "epochs_run", "best_epoch", "stop"):
        assert resumed["training"][name] == full["training"][name], name
    assert resumed["model"] == pytest.approx(full["model"])
    kept = load_checkpoint(out / CHECKPOINT)["kept"]
    for key, value in load_checkpoint(full_out / CHECKPOINT)["kept"].items():
        torch.testing.assert_close(kept[key], value, msg=key)


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_export_copies_the_run_record_into_the_card(uninterrupted, tmp_path):
    out, metrics = uninterrupted
    assert main(["export", str(out / CHECKPOINT), str(tmp_path / "m.onnx")]) == 0
    card = json.loads((tmp_path / "m.json").read_text())
    training = card["training"]
    assert {k: training[k] for k in metrics["training"]} == metrics["training"]
    assert training["stop"] in ("plateau", "cap") and training["wall_seconds"] > 0
    assert training["patience"] == 6 and training["max_epochs"] == 30
    assert "training" not in card["metrics"] and card["metrics"]["model"] == metrics["model"]


def test_the_shipped_model_is_a_start_with_every_weight_inference_uses():
    start = starting_point(DEMO)
    network = build_model(start.method, start.net_config)
    # Loading checks that the rebuilt network predicts what the file does; what starts fresh
    # is what only training uses (the contrastive embeddings of music and poses).
    fresh = {name for name in network.state_dict() if name not in start.weights}
    assert load_start(network, start) == len(fresh)
    contrastive = ("audio_embedding.", "pose_encoder.", "pose_summary.")
    assert fresh and all(name.endswith("num_batches_tracked") or name.startswith(contrastive)
                         for name in fresh), fresh
    assert start.source["kind"] == "onnx" and start.stats.channels == PoseModel(DEMO).channels


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_an_exported_model_that_renamed_weights_is_refused_with_the_way_out(uninterrupted, tmp_path):
    out, _ = uninterrupted
    model = tmp_path / "m.onnx"  # Jiang's LSTM: the exporter stores its gates under other names
    assert main(["export", str(out / CHECKPOINT), str(model)]) == 0
    start = starting_point(model)
    with pytest.raises(StartError, match="fine-tune from the checkpoint.pt it was exported from"):
        load_start(build_model(start.method, start.net_config), start)


def test_fine_tuning_starts_from_the_model_and_the_card_says_so(dataset, uninterrupted, tmp_path, capsys):
    out, _ = uninterrupted
    tuned = _train(dataset, tmp_path / "tuned", "--init", str(out / CHECKPOINT), "--epochs", "1",
                   "--lr", "1e-6", "--lr-min", "1e-6", "--export", str(tmp_path / "t.onnx"))["training"]
    # One epoch of tiny steps leaves every weight where the start had it (a fresh network's
    # are ~0.1 away).
    start = load_checkpoint(out / CHECKPOINT)["kept"]
    for name, value in load_checkpoint(tmp_path / "tuned" / CHECKPOINT)["kept"].items():
        if "running" not in name and "num_batches" not in name:
            torch.testing.assert_close(value, start[name], atol=1e-4, rtol=0, msg=name)
    assert tuned["init"]["path"] == str(out / CHECKPOINT) and tuned["init"]["kind"] == "checkpoint"
    assert tuned["init"]["data"]["subjects"] == ["S1", "S2", "S3"]
    # --export wrote the model and its card as the export verb does.
    assert json.loads((tmp_path / "t.json").read_text())["training"]["init"] == tuned["init"]
    # What the model cannot be is refused in one sentence.
    capsys.readouterr()
    assert main(["train", str(dataset), "--out", str(tmp_path / "x"), "--init", str(out / CHECKPOINT),
                 "--inputs", "channel"]) == 2
    err = capsys.readouterr().err
    assert "--inputs channel differs from the --init model's (paper)" in err and "Traceback" not in err
