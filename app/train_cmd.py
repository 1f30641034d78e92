"""``bgm2pose train``: train BGM2Pose or a baseline on a data set, optionally holding out
subjects and tracks for a test; under ``torchrun`` it trains with DistributedDataParallel."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


from bgm2pose.models.baselines import METHODS
from bgm2pose.models.data import hold_out, load_windows
from bgm2pose.models.evaluation import compare, markdown
from bgm2pose.models.networks import PRESETS
from bgm2pose.models.train import CHECKPOINT, TrainConfig, predict, train

METRICS_FILE = "metrics.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", type=Path, help="folder of session folders (bgm2pose simulate) or an AMPL CSV")
    p.add_argument("--out", type=Path, required=True, help="folder for checkpoint.pt and metrics.json")
    p.add_argument("--method", choices=METHODS, default="bgm2pose", help="(default: %(default)s)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="network size (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=30, help="(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="per process (default: %(default)s)")
    p.add_argument("--lr", type=float, default=3e-3, help="initial learning rate (default: %(default)s)")
    p.add_argument("--lr-min", type=float, default=1e-3, help="cosine end (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("--hop-frames", type=int, default=12,
                   help="window hop in 50 ms frames; 12 = non-overlapping (default: %(default)s)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="(default: %(default)s)")
    p.add_argument("--test-subjects", nargs="*", default=[], help="subjects held out of training")
    p.add_argument("--test-tracks", nargs="*", default=[], help="tracks held out of training")
    p.add_argument("--no-cpe", action="store_true", help="ablation: no contrastive pose extraction")
    p.add_argument("--no-fa", action="store_true", help="ablation: no frequency-wise attention")
    p.add_argument("--no-music", action="store_true", help="ablation: no music branch (FA as self-attention)")
    p.add_argument("--no-hard-negatives", action="store_true", help="ablation: random batches")
    p.add_argument("--fa-variant", choices=("paper", "code"), default="paper",
                   help="frequency attention as the paper or the public code has it (default: %(default)s)")
    p.add_argument("--subject-discriminator", action="store_true",
                   help="shibata only: train adversarially against a discriminator of the training "
                        "subjects, so the encoder features hide who is moving")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")


def switches(args: argparse.Namespace) -> dict:
    """NetConfig overrides from the ablation flags."""
    out: dict = {}
    if args.method == "bgm2pose":
        if args.no_cpe:
            out["use_cpe"] = False
        if args.no_fa:
            out["use_fa"] = False
        if args.no_music:
            out["music_conditioning"] = False
        if args.fa_variant != "paper":
            out["fa_variant"] = args.fa_variant
    return out


def run(args: argparse.Namespace) -> int:
    import torch.distributed as dist

    config = TrainConfig(
        method=args.method, preset=args.preset, switches=switches(args), epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, lr_min=args.lr_min, seed=args.seed,
        hard_negatives=False if args.no_hard_negatives else None, device=args.device,
        subject_discriminator=args.subject_discriminator,
    )
    windows = load_windows(args.data, hop_frames=args.hop_frames)
    train_index, test_index = hold_out(windows, args.test_subjects, args.test_tracks)
    print(f"train: {len(train_index)} windows; test: {len(test_index)} windows")
    result = train(windows, train_index, config, args.out, resume=args.resume)
    if dist.is_initialized() and dist.get_rank() != 0:
        return 0
    print(f"train: wrote {args.out / CHECKPOINT}")
    if len(test_index):
        pred = predict(result.model, result.stats, windows.base[test_index])
        results = compare(pred, windows.poses[test_index], result.mean_pose)
        test = windows.subset(test_index).describe()
        (args.out / METRICS_FILE).write_text(json.dumps({"test": test, **results}, indent=2) + "\n")
        print(markdown(results))
        ratio = results["model"]["mae"] / results["mean_pose"]["mae"]
        print(f"train: test MAE {results['model']['mae']:.3f} = {ratio:.2f} x the mean-pose predictor's; "
              f"wrote {args.out / METRICS_FILE}")
    return 0
