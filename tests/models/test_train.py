"""Training: overfitting, checkpoints and resume, DistributedDataParallel across 2 processes."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from bgm2pose.models.data import WindowSet
from bgm2pose.models.metrics import mae
from bgm2pose.models.skeleton import normalise
from bgm2pose.models.train import (
    CHECKPOINT, TrainConfig, TrainError, load_checkpoint, model_from_checkpoint, predict, train,
)
from bgm2pose.sensing.sim.motion import SUBJECTS, generate_motion

torch.set_num_threads(1)
# Small widths so a few dozen steps take seconds; the topology is the cpu preset's.
TINY = {"branch_widths": [8, 16], "block_widths": [16, 16, 16], "trunk_width": 32, "baseline_width": 32}


def _windows(n: int, seed: int = 0) -> WindowSet:
    """n windows of real procedural motion (consecutive 0.6 s of 2 subjects) with base
    features at the scale of real ones; excerpts shared in pairs across the subjects."""
    poses = []
    for subject in SUBJECTS[:2]:
        joints = generate_motion(subject, 0.6 * (n // 2) + 0.1, seed=seed)
        t = np.arange(n // 2)[:, None] * 72 + np.linspace(0, 71, 12)[None].round().astype(int)
        poses.append(normalise(joints[t]).reshape(n // 2, 12, 63))
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 9, 12, 128)).astype(np.float32)
    base[:, :6] = base[:, :6] * 10 - 60
    return WindowSet(
        base=base, poses=np.concatenate(poses).astype(np.float32),
        subject=np.repeat(["S1", "S2"], n // 2), track=np.full(n, "ambient-0000"), genre=np.full(n, "ambient"),
        excerpt=np.tile([f"ambient-0000@{i * 28800}" for i in range(n // 2)], 2),
    )


@pytest.mark.parametrize("method, lr", [("bgm2pose", 3e-3), ("jiang", 1e-2)])
def test_overfits_16_windows(method, lr):
    w = _windows(16)
    config = TrainConfig(method=method, preset="cpu", switches=TINY, epochs=60, batch_size=16,
                         lr=lr, lr_min=lr, average_last=1)
    result = train(w, np.arange(16), config, progress=False)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 60  # one step per epoch: 60 steps
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
    assert ckpt["epoch"] == 2 and len(ckpt["snapshots"]) == 2 and ckpt["averaged"] is not None
    model, stats, loaded_config = model_from_checkpoint(ckpt)
    assert loaded_config == config
    np.testing.assert_array_equal(predict(model, stats, w.base[:4]), predict(full.model, full.stats, w.base[:4]))
    # The averaged model is the mean of the last two epochs' weights.
    key = "decoder.head.conv.weight"
    np.testing.assert_allclose(ckpt["averaged"][key], (ckpt["snapshots"][0][key] + ckpt["snapshots"][1][key]) / 2)

    # Interrupt a second run right after its second checkpoint, then resume it.
    import bgm2pose.models.train as train_module
    save = train_module._save

    def save_then_stop(path, *args):
        save(path, *args)
        if args[8] == 1:  # epoch index
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(w, np.arange(24), config, tmp_path / "resumed", progress=False)
    assert load_checkpoint(tmp_path / "resumed" / CHECKPOINT)["epoch"] == 1
    monkeypatch.setattr(train_module, "_save", save)
    resumed = train(w, np.arange(24), config, tmp_path / "resumed", resume=True, progress=False)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    for a, b in zip(resumed.model.state_dict().values(), full.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(TrainError, match="other options"):
        train(w, np.arange(24), TrainConfig(method="bgm2pose", switches=TINY, epochs=4, batch_size=6),
              tmp_path / "resumed", resume=True, progress=False)


def test_bad_options_raise_user_errors(tmp_path):
    with pytest.raises(TrainError):
        TrainConfig(method="nope")
    with pytest.raises(TrainError):
        TrainConfig(lr=1e-3, lr_min=3e-3)
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(TrainError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    if not torch.cuda.is_available():
        with pytest.raises(TrainError, match="CUDA"):
            train(_windows(8), np.arange(8), TrainConfig(device="cuda", switches=TINY, epochs=1, batch_size=4),
                  progress=False)


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
config = TrainConfig(method="bgm2pose", switches={tiny!r}, epochs=2, batch_size=4, average_last=1, device="cpu")
result = train(w, np.arange(len(w)), config, progress=False)
rank = dist.get_rank()
torch.save({{"state": result.model.state_dict(), "world": dist.get_world_size(),
            "loss": result.history[-1]["loss"]}}, {out!r} + f"/rank{{rank}}.pt")
dist.destroy_process_group()
"""


def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path):
    w = _windows(32)
    np.savez(tmp_path / "windows.npz", **{f: getattr(w, f) for f in w.__dataclass_fields__})
    (tmp_path / "test_train_worker_data.py").write_text(textwrap.dedent(f"""
        import numpy as np
        from bgm2pose.models.data import WindowSet
        def windows():
            z = np.load({str(tmp_path / 'windows.npz')!r})
            return WindowSet(**{{k: z[k] for k in z.files}})
    """))
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(here=str(tmp_path), tiny=TINY, out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    # Each rank saw different batches (different losses) yet holds the same weights.
    assert ranks[0]["loss"] != ranks[1]["loss"]
    for key, value in ranks[0]["state"].items():
        torch.testing.assert_close(value, ranks[1]["state"][key], rtol=0, atol=0, msg=key)
    # And they moved away from where one process alone would have gone with its share.
    alone = train(w, np.arange(32), TrainConfig(method="bgm2pose", switches=TINY, epochs=2, batch_size=4,
                                                average_last=1, device="cpu"), progress=False)
    head = "decoder.head.conv.weight"
    assert not torch.equal(alone.model.state_dict()[head], ranks[0]["state"][head])
