"""``bgm2pose train``: train BGM2Pose or a baseline on a data set, optionally holding out
subjects and tracks for a test, until the validation loss (one training subject held out)
stops improving or ``--epochs`` is reached; under ``torchrun`` it trains with
DistributedDataParallel. metrics.json records the run (epochs, wall time, stop reason,
learning curves) and, with a test split, the test metrics. ``--export NAME.onnx`` exports the
kept weights as ``bgm2pose export`` does, in the same process (torch loads once: the app's
Teach workflow trains this way)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


from bgm2pose.app.export_cmd import export_checkpoint
from bgm2pose.models.baselines import METHODS
from bgm2pose.models.data import hold_out, load_windows, model_features, validation_split
from bgm2pose.models.evaluation import compare, markdown
from bgm2pose.models.inputs import INPUTS
from bgm2pose.models.networks import PRESETS
from bgm2pose.models.start import check_options, starting_point
from bgm2pose.models.train import CHECKPOINT, TrainConfig, predict, train

METRICS_FILE = "metrics.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", type=Path, help="folder of session folders (bgm2pose simulate) or an AMPL CSV")
    p.add_argument("--out", type=Path, required=True, help="folder for checkpoint.pt and metrics.json")
    p.add_argument("--method", choices=METHODS, default=None,
                   help="(default: bgm2pose, or the --init model's)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="network size (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=30,
                   help="the most epochs to train; a plateau of the validation loss stops sooner "
                        "(default: %(default)s)")
    p.add_argument("--patience", type=int, default=5,
                   help="stop after this many epochs without a better validation loss; the weights "
                        "kept are the average of the last 3 epochs up to the best one (default: %(default)s)")
    p.add_argument("--val-subjects", nargs="*", default=None, metavar="SUBJECT",
                   help="training subjects held out to validate on, never a test subject (default: the "
                        "last training subject in sorted order: a person the network never trains on, as "
                        "the test asks, chosen the same for every method and seed); with no names, no "
                        "validation: train to --epochs")
    p.add_argument("--batch-size", type=int, default=64, help="per process (default: %(default)s)")
    p.add_argument("--lr", type=float, default=3e-3, help="initial learning rate (default: %(default)s)")
    p.add_argument("--lr-min", type=float, default=1e-3, help="cosine end (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("--hop-frames", type=int, default=12,
                   help="window hop in 50 ms frames; 12 = non-overlapping (default: %(default)s)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="(default: %(default)s)")
    p.add_argument("--test-subjects", nargs="*", default=[], help="subjects held out of training")
    p.add_argument("--test-tracks", nargs="*", default=[], help="tracks held out of training")
    p.add_argument("--inputs", choices=INPUTS, default=None,
                   help="what the network reads: the paper's log-mel and intensity features, the channel "
                        "estimate (how the room and the body filter the music, whatever the music), or "
                        "both, for every method (default: paper, or the --init model's)")
    p.add_argument("--init", type=Path, metavar="MODEL",
                   help="fine-tune: start from this exported model (e.g. models/pretrained/demo.onnx) or "
                        "a run's checkpoint.pt, with its network, config and feature statistics, on the "
                        "labelled windows of DATA (e.g. sessions recorded with 'run --teacher'); the "
                        "preset and ablation flags are the model's")
    p.add_argument("--export", type=Path, metavar="NAME.onnx",
                   help="after training, export the kept weights to this model file (as "
                        "'bgm2pose export' does), in the same process")
    p.add_argument("--no-cpe", action="store_true", help="ablation: no contrastive pose extraction")
    p.add_argument("--no-fa", action="store_true", help="ablation: no frequency-wise attention")
    p.add_argument("--no-music", action="store_true", help="ablation: no music branch (FA as self-attention)")
    p.add_argument("--no-hard-negatives", action="store_true", help="ablation: random batches")
    p.add_argument("--fa-variant", choices=("paper", "code"), default="paper",
                   help="frequency attention as the paper or the public code has it (default: %(default)s)")
    p.add_argument("--subject-discriminator", action="store_true",
                   help="shibata only: train adversarially against a discriminator of the training "
                        "subjects, so the encoder features hide who is moving")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from --out/checkpoint.pt (same data and options); "
                        "it ends where the uninterrupted run would have")


def switches(args: argparse.Namespace) -> dict:
    """NetConfig overrides from the ablation flags."""
    out: dict = {}
    if args.inputs not in (None, "paper"):
        out["inputs"] = args.inputs
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

    start = None
    if args.init is not None:
        start = starting_point(args.init)
        check_options(start, args.method, args.inputs)
        args.method, args.inputs = start.method, start.net_config.inputs
        print(f"train: fine-tuning {args.init} ({start.method}, {args.inputs} inputs)")
    args.method, args.inputs = args.method or "bgm2pose", args.inputs or "paper"
    config = TrainConfig(
        method=args.method, preset=args.preset, switches=switches(args), epochs=args.epochs,
        patience=args.patience, batch_size=args.batch_size, lr=args.lr, lr_min=args.lr_min, seed=args.seed,
        hard_negatives=False if args.no_hard_negatives else None, device=args.device,
        subject_discriminator=args.subject_discriminator,
    )
    windows = load_windows(args.data, hop_frames=args.hop_frames)
    train_index, test_index = hold_out(windows, args.test_subjects, args.test_tracks)
    fit_index, val_index = validation_split(windows, train_index, args.val_subjects)
    validating = ", ".join(sorted(set(windows.subject[val_index].tolist()))) or "none"
    print(f"train: {len(fit_index)} windows; validation ({validating}): {len(val_index)}; "
          f"test: {len(test_index)}")
    result = train(windows, fit_index, config, args.out, val_index=val_index, resume=args.resume,
                   start=start)
    if dist.is_initialized() and dist.get_rank() != 0:
        return 0
    record = result.record
    print(f"train: {record['epochs_run']} epochs in {record['wall_seconds'] / 60:.1f} min, stopped by "
          f"{record['stop']}; best epoch {record['best_epoch']}; wrote {args.out / CHECKPOINT}")
    metrics: dict = {"training": record}
    if len(test_index):
        pred = predict(result.model, result.stats, model_features(windows, test_index, args.inputs))
        results = compare(pred, windows.poses[test_index], result.mean_pose)
        metrics |= {"test": windows.describe(test_index), **results}
        print(markdown(results))
        ratio = results["model"]["mae"] / results["mean_pose"]["mae"]
        print(f"train: test MAE {results['model']['mae']:.3f} = {ratio:.2f} x the mean-pose predictor's")
    (args.out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"train: wrote {args.out / METRICS_FILE}", flush=True)
    if args.export is not None:
        export_checkpoint(args.out / CHECKPOINT, args.export)
    return 0
