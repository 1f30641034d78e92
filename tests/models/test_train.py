"""Training: overfitting, checkpoints and resume, DistributedDataParallel across 2 processes,
Shibata's adversarial subject discriminator."""

import os
import subprocess
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pytest
import torch

from bgm2pose.models.baselines import build_model
from bgm2pose.models.data import WindowSet
from bgm2pose.models.export import export_onnx
from bgm2pose.models.inference import PoseModel
from bgm2pose.models.losses import loss_weights
from bgm2pose.models.metrics import mae
from bgm2pose.models.networks import preset
from bgm2pose.sensing.skeleton import normalise
from bgm2pose.models.train import (
    CHECKPOINT, MIN_IMPROVEMENT, TERMS, SubjectDiscriminator, TrainConfig, TrainError, TrainStep,
    _start_at_mean_pose, load_checkpoint, model_from_checkpoint, predict, train,
)
from bgm2pose.sensing.features import FeatureStats
from bgm2pose.sensing.sim.motion import SUBJECTS, generate_motion

torch.set_num_threads(1)
# Small widths so a few dozen steps take seconds; the topology is the cpu preset's.
TINY = {"branch_widths": [8, 16], "block_widths": [16, 16, 16], "trunk_width": 32, "baseline_width": 32}


def _windows(n: int, seed: int = 0, subjects: int = 2) -> WindowSet:
    """n windows of real procedural motion (consecutive 0.6 s of each subject) with base
    features at the scale of real ones; each excerpt shared by all the subjects."""
    k = n // subjects
    poses = []
    for subject in SUBJECTS[:subjects]:
        joints = generate_motion(subject, 0.6 * k + 0.1, seed=seed)
        t = np.arange(k)[:, None] * 72 + np.linspace(0, 71, 12)[None].round().astype(int)
        poses.append(normalise(joints[t]).reshape(k, 12, 63))
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 9, 12, 128)).astype(np.float32)
    base[:, :6] = base[:, :6] * 10 - 60
    return WindowSet(
        base=base, channel=rng.standard_normal((n, 17, 12, 128)).astype(np.float32),
        poses=np.concatenate(poses).astype(np.float32),
        subject=np.repeat([f"S{i + 1}" for i in range(subjects)], k), track=np.full(n, "ambient-0000"),
        genre=np.full(n, "ambient"), excerpt=np.tile([f"ambient-0000@{i * 28800}" for i in range(k)], subjects),
    )


def _learnable(n: int = 48, noise: float = 2.0) -> WindowSet:
    """``_windows`` of 3 subjects whose base features are a fixed random projection of the
    centred poses plus noise: pose is recoverable for an unseen subject up to the noise, so the
    validation loss on S3 falls for some epochs and then flattens."""
    w = _windows(n, subjects=3)
    rng = np.random.default_rng(1)
    z = (w.poses - w.poses.mean(axis=(0, 1))) @ (rng.standard_normal((63, 9 * 128)).astype(np.float32) / 8)
    w.base = (z.reshape(n, 12, 9, 128).transpose(0, 2, 1, 3) + noise * rng.standard_normal((n, 9, 12, 128))).astype(np.float32)
    return w


# Learns the projection in ~15 epochs of 4 batches, ~0.1 s each.
STOPPING = {"method": "jiang", "switches": TINY, "epochs": 40, "patience": 3, "batch_size": 8, "lr": 1e-2,
            "lr_min": 3e-3}


def _fit_and_validation(w: WindowSet) -> tuple[np.ndarray, np.ndarray]:
    return np.flatnonzero(w.subject != "S3"), np.flatnonzero(w.subject == "S3")


def test_early_stopping_stops_on_a_plateau_and_keeps_the_best_weights(tmp_path):
    w = _learnable()
    fit, val = _fit_and_validation(w)
    result = train(w, fit, TrainConfig(**STOPPING), tmp_path, val_index=val, progress=False)
    record = result.record
    best = record["best_epoch"]
    assert record["stop"] == "plateau" and record["epochs_run"] == best + 3 < 40
    losses = [h["val_pose"] for h in result.history]
    assert [h["epoch"] for h in result.history] == list(range(1, best + 4))
    assert best > 3 and losses[best - 1] < 0.8 * losses[0]  # it learned before it stopped
    assert all(v >= losses[best - 1] * (1 - MIN_IMPROVEMENT) for v in losses[best:])
    # The weights kept are the ones the best validation loss was measured on.
    pred = predict(result.model, result.stats, w.base[val])
    assert np.mean(np.square(pred - w.poses[val], dtype=np.float64)) == pytest.approx(losses[best - 1], rel=1e-5)
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    assert ckpt["record"] == record and record["wall_seconds"] > 0 and record["max_epochs"] == 40
    assert record["validation"]["subjects"] == ["S3"] and record["validation"]["windows"] == len(val)
    # The card's data names the validation subject too, so the demo never calls it unseen.
    assert ckpt["data"]["subjects"] == ["S1", "S2", "S3"]
    with pytest.raises(TrainError, match="also training windows"):
        train(w, np.arange(len(w)), TrainConfig(**STOPPING), val_index=val, progress=False)


def test_without_validation_a_run_ends_at_the_cap_with_the_last_average():
    w = _learnable()
    result = train(w, np.arange(len(w)), TrainConfig(**{**STOPPING, "epochs": 3}), progress=False)
    assert result.record["stop"] == "cap" and result.record["epochs_run"] == result.record["best_epoch"] == 3
    assert result.record["validation"] is None and "val_pose" not in result.history[-1]


def test_resume_of_an_early_stopped_run_ends_where_the_uninterrupted_one_did(tmp_path, monkeypatch):
    w = _learnable()
    fit, val = _fit_and_validation(w)
    config = TrainConfig(**STOPPING)
    full = train(w, fit, config, tmp_path / "full", val_index=val, progress=False)
    resumed = _interrupted_then_resumed(w, config, tmp_path / "resumed", monkeypatch, fit, val)
    assert resumed.history == full.history
    assert {**resumed.record, "wall_seconds": 0} == {**full.record, "wall_seconds": 0}
    for key, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0, msg=key)
    # Resuming a finished run trains no further and keeps the same weights.
    again = train(w, fit, config, tmp_path / "resumed", val_index=val, resume=True, progress=False)
    assert again.history == full.history
    torch.testing.assert_close(again.model.state_dict(), full.model.state_dict(), rtol=0, atol=0)
    with pytest.raises(TrainError, match="other training or validation windows"):
        train(w, np.flatnonzero(w.subject != "S2"), config, tmp_path / "resumed",
              val_index=np.flatnonzero(w.subject == "S2"), resume=True, progress=False)


@pytest.mark.parametrize("method, lr", [("bgm2pose", 3e-3), ("jiang", 1e-2)])
def test_overfits_16_windows(method, lr):
    w = _windows(16)
    # 100 steps: the pose terms fall 10x within 60, BGM2Pose's CLIP term (matching random
    # audio to poses) takes longer on some draws of the motion.
    config = TrainConfig(method=method, preset="cpu", switches=TINY, epochs=100, batch_size=16,
                         lr=lr, lr_min=lr, average_last=1)
    result = train(w, np.arange(16), config, progress=False)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 100  # one step per epoch
    assert losses[-1] < losses[0] / 10
    pred = predict(result.model, result.stats, w.base)
    mean_pose = np.broadcast_to(w.poses.mean(axis=0), w.poses.shape)
    assert mae(pred, w.poses) < 0.75 * mae(mean_pose, w.poses)  # eval mode learned it too
    if method == "bgm2pose":
        assert result.history[-1]["clip"] < 0.5 * result.history[0]["clip"]


def test_checkpoint_loads_weights_only_and_resume_repeats_the_run(tmp_path, monkeypatch):
    w = _windows(24)
    config = TrainConfig(method="bgm2pose", switches=TINY, epochs=3, batch_size=6, average_last=2)
    full = train(w, np.arange(24), config, tmp_path / "full", progress=False)
    ckpt = torch.load(tmp_path / "full" / CHECKPOINT, weights_only=True)
    assert ckpt["epoch"] == 2 and len(ckpt["snapshots"]) == 2 and ckpt["record"]["stop"] == "cap"
    model, stats, loaded_config = model_from_checkpoint(ckpt)
    assert loaded_config == config
    np.testing.assert_array_equal(predict(model, stats, w.base[:4]), predict(full.model, full.stats, w.base[:4]))
    # The averaged model is the mean of the last two epochs' weights.
    key = "decoder.head.conv.weight"
    np.testing.assert_allclose(ckpt["kept"][key], (ckpt["snapshots"][0][key] + ckpt["snapshots"][1][key]) / 2)

    resumed = _interrupted_then_resumed(w, config, tmp_path / "resumed", monkeypatch)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    for a, b in zip(resumed.model.state_dict().values(), full.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(TrainError, match="other options"):
        train(w, np.arange(24), TrainConfig(method="bgm2pose", switches=TINY, epochs=4, batch_size=6),
              tmp_path / "resumed", resume=True, progress=False)


def _interrupted_then_resumed(w: WindowSet, config: TrainConfig, out, monkeypatch, fit=None, val=()):
    """A run interrupted right after its second checkpoint, then resumed from it."""
    fit = np.arange(len(w)) if fit is None else fit
    import bgm2pose.models.train as train_module
    save = train_module._save

    def save_then_stop(path, ckpt):
        save(path, ckpt)
        if ckpt["epoch"] == 1:  # epoch index
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(w, fit, config, out, val_index=val, progress=False)
    assert load_checkpoint(out / CHECKPOINT)["epoch"] == 1
    monkeypatch.setattr(train_module, "_save", save)
    return train(w, fit, config, out, val_index=val, resume=True, progress=False)


def test_bad_options_raise_user_errors(tmp_path):
    with pytest.raises(TrainError):
        TrainConfig(method="nope")
    with pytest.raises(TrainError):
        TrainConfig(lr=1e-3, lr_min=3e-3)
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(TrainError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(TrainError, match="is a folder, not a file; pass the file itself"):
        load_checkpoint(tmp_path)
    if not torch.cuda.is_available():
        with pytest.raises(TrainError, match="CUDA"):
            train(_windows(8), np.arange(8), TrainConfig(device="cuda", switches=TINY, epochs=1, batch_size=4),
                  progress=False)


SUBJECTS_D = {"method": "shibata", "subject_discriminator": True, "switches": TINY, "batch_size": 8,
              "average_last": 1}


def _initial_shibata(n_subjects: int, seed: int = 0):
    """The weights train() starts from (it seeds, then builds; only the pose head's bias moves)."""
    torch.manual_seed(seed)
    return build_model("shibata", preset("cpu", **TINY, n_subjects=n_subjects))


def test_subject_discriminator_trains_and_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    w = _windows(24, subjects=3)
    config = TrainConfig(**SUBJECTS_D, epochs=3)
    full = train(w, np.arange(24), config, tmp_path / "full", progress=False)
    assert full.net_config.n_subjects == 3
    start = _initial_shibata(3).subject_head.state_dict()
    for key, value in full.model.subject_head.state_dict().items():
        assert not torch.equal(value, start[key]), key
    for h in full.history:
        assert h["confusion"] > 0 and h["discriminator"] > 0 and 0 <= h["discriminator_accuracy"] <= 1
    ckpt = load_checkpoint(tmp_path / "full" / CHECKPOINT)  # weights_only=True
    assert ckpt["net_config"]["n_subjects"] == 3
    # Each optimiser holds Adam moments for its own parameters only: 4 discriminator tensors.
    n_parameters = len(list(full.model.parameters()))
    assert len(ckpt["discriminator"]["optimiser"]["state"]) == 4
    assert len(ckpt["optimiser"]["state"]) == n_parameters - 4

    resumed = _interrupted_then_resumed(w, config, tmp_path / "resumed", monkeypatch)
    assert resumed.history == full.history
    for key, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0, msg=key)
    torch.testing.assert_close(load_checkpoint(tmp_path / "resumed" / CHECKPOINT)["discriminator"],
                               ckpt["discriminator"], rtol=0, atol=0)


def test_each_optimiser_moves_only_its_own_parameters(monkeypatch):
    """Checked around every discriminator step: the pose step before it left the discriminator's
    weights where its last step put them, though the confusion term gave them gradients; and
    the step itself changes no pose weight nor pose gradient (it sees detached features)."""
    real_step = SubjectDiscriminator.step
    after: list[tuple[list, list]] = []

    def checked_step(self, features, batch):
        own = self.parameters
        pose = [p for p in self.network.parameters() if all(p is not q for q in own)]
        for i, p in enumerate(own):
            assert p.grad is not None and p.grad.abs().sum() > 0
            if after:
                assert torch.equal(p, after[-1][0][i]), "the pose step moved the discriminator"
                assert not torch.equal(p.grad, after[-1][1][i]), "no confusion gradient reached it"
        before = [(p.detach().clone(), p.grad.clone()) for p in pose]
        values = real_step(self, features, batch)
        for p, (value, grad) in zip(pose, before):
            assert torch.equal(p, value) and torch.equal(p.grad, grad), "the discriminator step reached the encoder"
        after.append(([p.detach().clone() for p in own], [p.grad.clone() for p in own]))
        return values

    monkeypatch.setattr(SubjectDiscriminator, "step", checked_step)
    result = train(_windows(24, subjects=3), np.arange(24), TrainConfig(**SUBJECTS_D, epochs=2), progress=False)
    assert len(after) == 2 * 3  # every batch of both epochs
    assert result.history[-1]["discriminator"] > 0


def test_confusion_term_trains_the_encoder():
    w = _windows(8)
    network = _initial_shibata(2)
    step = TrainStep(network, FeatureStats.fit(w.base), loss_weights("shibata", preset("cpu", n_subjects=2)),
                     w.poses.mean(axis=(0, 1)))
    confusion = step(torch.from_numpy(w.base), torch.from_numpy(w.poses))[TERMS.index("confusion")]
    (grad,) = torch.autograd.grad(confusion, network.encoder[0][0].weight)
    assert grad.abs().sum() > 0


def test_subject_discriminator_is_a_user_error_outside_shibata(tmp_path, capsys):
    with pytest.raises(TrainError, match="--method shibata"):
        TrainConfig(method="bgm2pose", subject_discriminator=True)
    with pytest.raises(TrainError, match="subject_discriminator"):
        TrainConfig(method="shibata", switches={"n_subjects": 3})
    w = _windows(8)
    with pytest.raises(TrainError, match="at least two subjects"):
        train(w, np.flatnonzero(w.subject == "S1"), TrainConfig(**SUBJECTS_D, epochs=1), progress=False)
    from bgm2pose.app.cli import main

    args = ["train", str(tmp_path), "--out", str(tmp_path / "run"), "--method", "jiang", "--subject-discriminator"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "--method shibata" in err and len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_export_of_a_model_trained_with_the_discriminator_maps_base_to_poses_only(tmp_path):
    import onnx

    w = _windows(24, subjects=3)
    train(w, np.arange(24), TrainConfig(**SUBJECTS_D, epochs=1), tmp_path, progress=False)
    model, stats, _ = model_from_checkpoint(load_checkpoint(tmp_path / CHECKPOINT))
    assert model.subject_head is not None
    path = tmp_path / "shibata.onnx"
    assert export_onnx(model, stats, path, {})["parity_max_abs"] < 1e-4
    graph = onnx.load(path).graph
    assert [v.name for v in graph.input] == ["base"] and [v.name for v in graph.output] == ["poses"]
    assert not [t.name for t in graph.initializer if "subject" in t.name]
    expected = predict(model, stats, w.base[:5])
    got = PoseModel(path).predict(w.base[:5]).reshape(expected.shape)
    assert expected.std() > 0.3
    assert np.abs(got - expected).max() < 1e-4


# label -> (TrainConfig options, a weight that must differ from a one-process run, whether
# S2 validates). The discriminator's step runs outside DDP's forward, so its weights agreeing
# across ranks checks the hand-made gradient averaging; rank 0's validation loss must reach
# rank 1.
DDP_RUNS = {
    "bgm2pose": ({"method": "bgm2pose"}, "decoder.head.conv.weight", True),
    "shibata_subjects": ({"method": "shibata", "subject_discriminator": True}, "subject_head.2.weight", False),
}
DDP_COMMON = {"switches": TINY, "epochs": 2, "batch_size": 4, "average_last": 1, "device": "cpu"}

WORKER = """
import sys
import numpy as np
import torch
import torch.distributed as dist
sys.path.insert(0, {here!r})
torch.set_num_threads(1)
from bgm2pose.models.train import TrainConfig, train
import test_train_worker_data as d
w = d.windows()
for label, (options, validate) in {runs!r}.items():
    fit, val = d.split(w, validate)
    result = train(w, fit, TrainConfig(**options), val_index=val, progress=False)
    torch.save({{"state": result.model.state_dict(), "world": dist.get_world_size(),
                "history": result.history[-1]}}, {out!r} + f"/{{label}}_rank{{dist.get_rank()}}.pt")
dist.destroy_process_group()
"""


def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path, monkeypatch):
    w = _windows(32)
    np.savez(tmp_path / "windows.npz", **{f: getattr(w, f) for f in w.__dataclass_fields__})
    (tmp_path / "test_train_worker_data.py").write_text(textwrap.dedent(f"""
        import numpy as np
        from bgm2pose.models.data import WindowSet
        def windows():
            z = np.load({str(tmp_path / 'windows.npz')!r})
            return WindowSet(**{{k: z[k] for k in z.files}})
        def split(w, validate):
            val = np.flatnonzero(w.subject == "S2") if validate else np.array([], np.int64)
            return np.setdiff1d(np.arange(len(w)), val), val
    """))
    runs = {label: ({**options, **DDP_COMMON}, validate) for label, (options, _, validate) in DDP_RUNS.items()}
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(here=str(tmp_path), runs=runs, out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    monkeypatch.syspath_prepend(tmp_path)
    import test_train_worker_data as d

    for label, (_, moved, validate) in DDP_RUNS.items():
        ranks = [torch.load(tmp_path / f"{label}_rank{r}.pt", weights_only=True) for r in (0, 1)]
        assert ranks[0]["world"] == ranks[1]["world"] == 2
        # Each rank saw different batches (different losses) yet holds the same weights.
        assert ranks[0]["history"]["loss"] != ranks[1]["history"]["loss"]
        for key, value in ranks[0]["state"].items():
            torch.testing.assert_close(value, ranks[1]["state"][key], rtol=0, atol=0, msg=f"{label}: {key}")
        assert ranks[0]["history"].get("val_pose") == ranks[1]["history"].get("val_pose")
        assert ("val_pose" in ranks[0]["history"]) == validate
        # And they moved away from where one process alone would have gone with its share.
        options = runs[label][0]
        fit, val = d.split(w, validate)
        alone = train(w, fit, TrainConfig(**options), val_index=val, progress=False)
        assert not torch.equal(alone.model.state_dict()[moved], ranks[0]["state"][moved]), label
        assert ("discriminator" in ranks[0]["history"]) == options.get("subject_discriminator", False)


def test_mean_pose_goes_to_the_pose_head_even_with_63_subjects():
    # The discriminator then has 63 outputs too; it must not be mistaken for the pose head.
    net = build_model("shibata", replace(preset("cpu"), n_subjects=63))
    mean_pose = np.linspace(-1, 10, 63).astype(np.float32)
    _start_at_mean_pose(net, mean_pose)
    x, m = torch.zeros(1, 11, 12, 128), torch.zeros(1, 2, 12, 128)
    heads = [mod for mod in net.modules() if getattr(mod, "bias", None) is not None
             and mod.bias.shape == (63,)]
    assert len(heads) == 2
    assert sum(torch.equal(h.bias, torch.from_numpy(mean_pose)) for h in heads) == 1
    assert not torch.equal(net.subject_head[-1].bias, torch.from_numpy(mean_pose))
    assert net(x, m).shape == (1, 12, 63)
