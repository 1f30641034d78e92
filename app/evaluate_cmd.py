"""``bgm2pose evaluate``: an exported model's metrics on a data set, next to the mean-pose
predictor's (the training mean pose from the model card)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bgm2pose.models.data import load_windows, model_features, select
from bgm2pose.models.evaluation import compare, markdown
from bgm2pose.models.export import card_path
from bgm2pose.models.inference import PoseModel
from bgm2pose.sensing.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="NAME.onnx with NAME.json beside it")
    p.add_argument("data", type=Path, help="folder of session folders or an AMPL CSV")
    p.add_argument("--subjects", nargs="*", help="only these subjects")
    p.add_argument("--tracks", nargs="*", help="only these tracks")
    p.add_argument("--out", type=Path, help="write the tables here as markdown (and .json beside)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    if args.out and {args.out.resolve(), args.out.with_suffix(".json").resolve()} & {
            args.model.resolve(), card_path(args.model).resolve()}:
        raise UserError(f"--out {args.out} would overwrite the model or its card "
                        f"{card_path(args.model)} (evaluate writes {args.out.stem}.md and "
                        f"{args.out.stem}.json); name the report differently.")
    model = PoseModel(args.model, threads=args.threads)
    windows = load_windows(args.data)
    index = select(windows, subjects=args.subjects, tracks=args.tracks)
    if not len(index):
        raise UserError("no window of the data set matches --subjects and --tracks; widen the selection.")
    pred = np.concatenate([model.predict(model_features(windows, index[i : i + 256], model.inputs))
                           for i in range(0, len(index), 256)])
    truth = windows.poses[index]
    mean_pose, source = model.mean_pose, "training mean pose (model card)"
    if mean_pose is None:
        mean_pose, source = truth.mean(axis=(0, 1)), "mean pose of the evaluated windows (card has none)"
    results = compare(pred.reshape(len(index), 12, 63), truth, mean_pose)
    text = (f"# Evaluation of {args.model.name} on {args.data}\n\n{len(index)} windows; "
            f"mean-pose predictor: {source}.\n\n{markdown(results)}")
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"evaluate: wrote {args.out}")
    return 0
